"""Shared fixtures: a local S3-compatible endpoint (moto server over real HTTP) and local
HTTP/HTTPS file servers. Anything that talks to them goes through real sockets."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import http.server
import ipaddress
import socket
import ssl
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _builtins_print_restored(request):
    """kfp.local indents a task's output by replacing ``builtins.print`` while the task runs
    (kfp/local/logging_utils.py ``indented_print``); seen in CI: after the whole unit tier, a
    later test's prints carried 12 spaces (three levels left installed). Put it back after each
    test and name the test that left it, instead of letting it leak into the next one."""
    import builtins
    import warnings

    original = builtins.print
    yield
    if builtins.print is not original:
        builtins.print = original
        warnings.warn(f"{request.node.nodeid} left builtins.print replaced; restored", stacklevel=1)


@pytest.fixture
def dead_scratch(tmp_path, monkeypatch) -> Callable[[str], Path]:
    """The temporary directory moved under ``tmp_path``; ``dead_scratch(prefix)`` puts there a
    scratch directory of ``prefix`` (components.common.scratch) that a process killed before
    removing it left, a file inside: the next scratch made with that prefix must sweep it."""
    import tempfile

    from components.common import scratch

    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    dead_pid = 2**22 + 12345  # above pid_max's default: no such process
    assert not scratch._alive(dead_pid)

    def left(prefix: str) -> Path:
        path = tmp / f"{scratch.owner_prefix(prefix, dead_pid)}left"
        path.mkdir()
        (path / "left.bin").write_bytes(b"x" * 1000)
        return path

    return left


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` different free ports: each socket stays bound until all are chosen (``free_port()``
    twice may return the same port, and a server given it twice cannot start)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


# --- S3 (moto in server mode) ------------------------------------------------------------


@dataclass
class S3Endpoint:
    endpoint: str  # http://127.0.0.1:PORT
    client: object  # boto3 S3 client bound to the endpoint

    def bucket(self, name: str) -> str:
        self.client.create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, body: bytes | Path) -> str:
        data = body.read_bytes() if isinstance(body, Path) else body
        self.client.put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 for the whole session; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    # port 0: the server binds a free port itself (a port looked up first could be taken before it binds)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Endpoint]:
    """An empty S3 endpoint: AWS_* variables point at the moto server (state reset per test)."""
    import boto3

    for var in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).close()
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    yield S3Endpoint(moto_server, client)
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).close()


# --- HTTP / HTTPS file servers -------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass


def _serve(directory: Path, context: ssl.SSLContext | None) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    scheme = "http"
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"{scheme}://127.0.0.1:{server.server_address[1]}"


def _serving(context: ssl.SSLContext | None) -> Iterator[Callable[[Path], str]]:
    """Yield ``serve(directory) -> URL`` (one file server per call); shut them all down after."""
    servers = []

    def serve(directory: Path) -> str:
        server, url = _serve(directory, context)
        servers.append(server)
        return url

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_serve() -> Iterator[Callable[[Path], str]]:
    """``serve(directory) -> "http://127.0.0.1:PORT"``: a plain HTTP file server per call."""
    yield from _serving(None)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), made with ``cryptography``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def https_serve(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], str]]:
    """``serve(directory) -> "https://127.0.0.1:PORT"``: TLS with a self-signed certificate that
    clients trust through ``SSL_CERT_FILE`` (set here), so verification stays on."""
    pytest.importorskip("cryptography")
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    yield from _serving(context)
