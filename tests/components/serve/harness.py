"""The model server as a subprocess (``python -m components.serve``) and plain HTTP helpers.

Answers are (status, parsed JSON body, raw body) so tests can check the error shape and size.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_ports

REPO = Path(__file__).resolve().parents[3]
MODEL = "taxi-fare"
STARTUP_S = 90.0


@dataclass
class Server:
    url: str
    grpc: str  # host:port of the gRPC (v2) endpoint
    process: subprocess.Popen
    log: Path


def call(request: urllib.request.Request, timeout: float = 30.0) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {"<not JSON>": raw[:200].decode(errors="replace")}
    return status, body, raw


def get(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    status, body, _ = call(urllib.request.Request(url), timeout)
    return status, body


def post(url: str, payload, timeout: float = 30.0, headers: dict | None = None) -> tuple[int, dict]:
    status, body, _ = post_raw(url, payload, timeout, headers)
    return status, body


def post_raw(url: str, payload, timeout: float = 30.0, headers: dict | None = None, method: str = "POST"):
    data = payload if isinstance(payload, bytes) or payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
        request.add_header(k, v)
    return call(request, timeout)


def wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if get(f"{url}/v2/health/ready", timeout=1.0) == (200, {"ready": True}):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not ready after {STARTUP_S}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running_server(model_dir: Path, log: Path, *flags: str, host: str = "127.0.0.1") -> Iterator[Server]:
    """The server on free ports (hyphenated flags, beside KServe's underscored ones), stopped after."""
    port, grpc_port = free_ports(2)  # two different ports
    command = [
        sys.executable, "-m", "components.serve",
        f"--model-name={MODEL}", "--model-dir", str(model_dir), f"--http-port={port}",
        f"--grpc-port={grpc_port}",  # a free port too, so parallel test workers cannot clash
        "--host", host, *flags,
    ]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://{host}:{port}"
    try:
        wait_ready(url, process, log)
        yield Server(url, f"{host}:{grpc_port}", process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
