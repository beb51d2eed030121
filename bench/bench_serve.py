"""Serving benchmark: ``python -m components.serve`` (v1 and v2) vs a FastAPI + uvicorn server
(``bench.serve_baseline``, v1 only) -- the same model directory, encoder and one torch thread.

Each round starts each server fresh (alternating, baseline first), records its time to first
answer (process start to the first 200 on ``:predict``), drives every case at it with
``bench.serve_load`` (keep-alive connections, a separate process), and reads its peak RSS
(``VmHWM``) at the end. Cases: concurrency 1, 16 and 64 x 1 and 100 trips per request; for
fareflow both the v1 body and the v2 JSON tensors of the same trips. Medians over ``repeat``
rounds. Both servers run without per-request logging (fareflow ``--request-logging false``,
uvicorn ``access_log=False``); fareflow runs as deployed otherwise (gRPC port open, every check
of the request on).

A record: ``case`` ("serve v1 c16 x100"; v2 cases compare against the baseline's v1 figure),
``impl``, ``rows`` (trips per request), ``rows_per_s`` (trips/s), ``rps``, ``p50_ms``/``p99_ms``
(medians over rounds), ``first_answer_s`` and ``peak_rss_mb`` (of the server process).

    python -m bench.run --suite bench.bench_serve [--repeat 3]
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench.common import REPO_ROOT

MODEL = "taxi-fare"
CONCURRENCY = (1, 16, 64)
TRIPS = (1, 100)
SECONDS = 2.0
WARMUP = 0.3
V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"


def make_model_dir(directory: Path) -> Path:
    """A model directory of the train step's default architecture (128, 64, 32), as training
    writes it; its weights are an untrained initialisation (speed does not depend on them)."""
    import torch

    from components.common import contract, features
    from components.common import model_dir as fare_model

    if (directory / fare_model.META_FILE).exists():
        return directory
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 10_000
    cols = {
        "origin_lat": rng.uniform(*contract.DC_LAT_RANGE, n),
        "origin_lon": rng.uniform(*contract.DC_LON_RANGE, n),
        "dest_lat": rng.uniform(*contract.DC_LAT_RANGE, n),
        "dest_lon": rng.uniform(*contract.DC_LON_RANGE, n),
        "year": rng.integers(2015, 2020, n).astype(float),
        "month": rng.integers(1, 13, n).astype(float),
        "weekday": rng.integers(0, 7, n).astype(float),
        "hour": rng.integers(0, 24, n).astype(float),
    }
    cols["distance_km"] = features.haversine_km(
        cols["origin_lat"], cols["origin_lon"], cols["dest_lat"], cols["dest_lon"]
    )
    arch = fare_model.Architecture()
    extent = {"lat": list(contract.DC_LAT_RANGE), "lon": list(contract.DC_LON_RANGE), "year": [2015, 2019]}
    return fare_model.save(
        directory, fare_model.build(arch).eval(), features.FeatureSpec.fit(cols), arch, extent=extent
    )


def trips(n: int, seed: int = 1) -> list[dict]:
    from components.common import contract

    rng = np.random.default_rng(seed)
    return [
        {
            "ORIGIN_BLOCK_LATITUDE": round(float(rng.uniform(*contract.DC_LAT_RANGE)), 4),
            "ORIGIN_BLOCK_LONGITUDE": round(float(rng.uniform(*contract.DC_LON_RANGE)), 4),
            "DESTINATION_BLOCK_LATITUDE": round(float(rng.uniform(*contract.DC_LAT_RANGE)), 4),
            "DESTINATION_BLOCK_LONGITUDE": round(float(rng.uniform(*contract.DC_LON_RANGE)), 4),
            "ORIGINDATETIME_TR": f"{1 + i % 12:02d}/{1 + i % 28:02d}/201{5 + i % 4} {i % 24:02d}:00",
        }
        for i in range(n)
    ]


def v1_body(records: list[dict]) -> bytes:
    return json.dumps({"instances": records}).encode()


def v2_body(records: list[dict]) -> bytes:
    inputs = [
        {
            "name": name,
            "shape": [len(records)],
            "datatype": "BYTES" if name == "ORIGINDATETIME_TR" else "FP64",
            "data": [r[name] for r in records],
        }
        for name in records[0]
    ]
    return json.dumps({"inputs": inputs}).encode()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _commands(impl: str, model_dir: Path, port: int) -> list[str]:
    if impl == "fastapi":
        return [
            sys.executable,
            "-m",
            "bench.serve_baseline",
            "--model-dir",
            str(model_dir),
            "--port",
            str(port),
        ]
    return [
        sys.executable, "-m", "components.serve", f"--model-name={MODEL}", f"--model-dir={model_dir}",
        f"--http-port={port}", f"--grpc-port={_free_port()}", "--host=127.0.0.1",
        "--request-logging=false", "--torch-threads=1",
    ]  # fmt: skip


def _start(impl: str, model_dir: Path, port: int, log: Path, probe: bytes) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    started = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _commands(impl, model_dir, port), cwd=REPO_ROOT, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}{V1}"
    while time.perf_counter() - started < 120:
        if proc.poll() is not None:
            raise RuntimeError(f"{impl} server exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            req = urllib.request.Request(url, data=probe, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=1) as r:
                if r.status == 200:
                    return proc, time.perf_counter() - started
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"{impl} server gave no answer in 120 s:\n{log.read_text()[-2000:]}")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _load(port: int, path: str, body_file: Path, connections: int, seconds: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.serve_load", "--port", str(port), "--path", path, "--body", str(body_file),
         "--connections", str(connections), "--seconds", str(seconds), "--warmup", str(WARMUP)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=seconds * 10 + 60,
    )  # fmt: skip
    result = json.loads(out.stdout)
    if result["errors"]:
        raise RuntimeError(f"{path}: {result['errors']} failed answers, e.g. {result['first_error']}")
    return result


def run(
    workdir: Path,
    rows: int = 0,
    repeat: int = 3,
    *,
    concurrency=CONCURRENCY,
    trip_counts=TRIPS,
    seconds: float = SECONDS,
) -> list[dict]:
    """Records for ``bench.run`` (``rows`` is unused: the cases fix the trips per request)."""
    workdir = Path(workdir) / "serve"
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = make_model_dir(workdir / "model")
    bodies = {}
    for n in trip_counts:
        records = trips(n)
        for proto, make in (("v1", v1_body), ("v2", v2_body)):
            bodies[proto, n] = workdir / f"{proto}-{n}.json"
            bodies[proto, n].write_bytes(make(records))
    probe = v1_body(trips(1))
    runs: dict[tuple, list[dict]] = {}
    starts: dict[str, list[float]] = {}
    rss: dict[str, list[float]] = {}
    for _ in range(repeat):
        for impl, protos in (("fastapi", ("v1",)), ("fareflow", ("v1", "v2"))):
            port = _free_port()
            proc, first = _start(impl, model_dir, port, workdir / f"{impl}.log", probe)
            try:
                starts.setdefault(impl, []).append(first)
                for proto in protos:
                    for n in trip_counts:
                        for c in concurrency:
                            result = _load(port, V1 if proto == "v1" else V2, bodies[proto, n], c, seconds)
                            runs.setdefault((impl, proto, n, c), []).append(result)
                rss.setdefault(impl, []).append(_peak_rss_mb(proc.pid))
            finally:
                _stop(proc)
    records = []
    for (impl, proto, n, c), results in runs.items():
        cases = [f"serve {proto} c{c} x{n}"]
        for case in cases:
            rps = statistics.median(r["rps"] for r in results)
            records.append(
                {
                    "case": case,
                    "impl": impl,
                    "rows": n,
                    "seconds": seconds,
                    "rows_per_s": rps * n,
                    "rps": rps,
                    "runs_rps": [round(r["rps"], 1) for r in results],
                    "p50_ms": statistics.median(r["p50_ms"] for r in results),
                    "p99_ms": statistics.median(r["p99_ms"] for r in results),
                    "first_answer_s": statistics.median(starts[impl]),
                    "peak_rss_mb": max(rss[impl]),
                }
            )
    # v2 has no baseline of its own: compare it with the baseline's v1 figure for the same load.
    base = {(r["rows"], r["case"].split()[2]): r for r in records if r["impl"] == "fastapi"}
    for r in [r for r in records if r["case"].startswith("serve v2")]:
        records.append({**base[r["rows"], r["case"].split()[2]], "case": r["case"]})
    return sorted(records, key=lambda r: (r["case"], r["impl"] != "fareflow"))
