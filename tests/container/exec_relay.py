"""The host side of the container tier's ``kubectl exec``: a unix socket server that runs
``podman exec`` in a named worker container for each request from ``kubectl_standin.py``.

An MPIJob's launcher reaches its workers only through ``kubectl exec`` (the operator's
``kubexec.sh``), and Open MPI keeps each such exec open for the whole job: ``orted`` runs
inside it, and mpirun treats the exec ending as the daemon dying. So the relay streams
stdout/stderr (and stdin when asked) both ways while the process runs and answers with its exit
status when it ends; kubectl's own conventions are kept: an unknown pod is
``Error from server (NotFound)``, a non-zero exit adds ``command terminated with exit code N``.
If the stand-in goes away first (mpirun killed its agent), the ``podman exec`` is stopped.

``kubectl wait --for=condition=Ready pod/NAME...`` is answered too: a pod here is Ready when its
container is running (the workers have no probes), ``timed out waiting for the condition``
otherwise.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import socketserver
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .kubectl_standin import EXIT, FRAME, HEADER, SOCKET_NAME, STDERR, STDIN, STDIN_EOF, STDOUT, recv_exact

STANDIN = Path(__file__).with_name("kubectl_standin.py")


@dataclass
class Exec:
    """One relayed ``kubectl exec``: what ran where, and how it ended (None while running)."""

    pod: str
    argv: list[str]
    returncode: int | None = None


@dataclass
class ExecRelay:
    """Serves ``DIRECTORY/exec-relay.sock`` next to ``DIRECTORY/kubectl`` (the stand-in); mount
    DIRECTORY at ``/opt/kube`` in the launcher. ``pods`` maps a pod name to its container."""

    directory: Path
    pods: dict[str, str]
    pod_container: str = "mpi"  # the pods' one container (kubectl exec --container)
    execs: list[Exec] = field(default_factory=list)
    waits: list[Exec] = field(default_factory=list)
    _server: socketserver.ThreadingUnixStreamServer | None = None
    _procs: list[subprocess.Popen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def socket_path(self) -> Path:
        return self.directory / SOCKET_NAME

    def start(self) -> ExecRelay:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)
        kubectl = self.directory / "kubectl"
        shutil.copyfile(STANDIN, kubectl)
        kubectl.chmod(0o755)
        relay = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                relay._handle(self.request)

        self._server = socketserver.ThreadingUnixStreamServer(str(self.socket_path), Handler)
        self._server.daemon_threads = True
        self.socket_path.chmod(0o777)  # the launcher runs as the image's uid 10001
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.socket_path.unlink(missing_ok=True)

    def _wait(self, request: dict, send) -> None:
        record = Exec("", ["kubectl", "wait", *(f"pod/{p}" for p in request["pods"])])
        with self._lock:
            self.waits.append(record)
        deadline = time.monotonic() + float(request["timeout_s"])
        code = 0
        for pod in request["pods"]:
            container = self.pods.get(pod)
            if container is None:
                send(STDERR, f'Error from server (NotFound): pods "{pod}" not found\n'.encode())
                code = 1
                break
            while not self._running(container):
                if time.monotonic() > deadline:
                    send(STDERR, f"error: timed out waiting for the condition on pods/{pod}\n".encode())
                    code = 1
                    break
                time.sleep(0.5)
            if code:
                break
            send(STDOUT, f"pod/{pod} condition met\n".encode())
        record.returncode = code
        send(EXIT, struct.pack("!i", code))

    @staticmethod
    def _running(container: str) -> bool:
        proc = subprocess.run(
            ["podman", "inspect", "--format", "{{.State.Running}}", container], capture_output=True, text=True
        )
        return proc.returncode == 0 and proc.stdout.strip() == "true"

    def _handle(self, sock: socket.socket) -> None:
        send_lock = threading.Lock()

        def send(channel: int, payload: bytes = b"") -> None:
            # OSError: the stand-in is gone; the reader below stops the exec.
            with send_lock, contextlib.suppress(OSError):
                sock.sendall(FRAME.pack(channel, len(payload)) + payload)

        head = recv_exact(sock, FRAME.size)
        if head is None:
            return
        channel, length = FRAME.unpack(head)
        body = recv_exact(sock, length)
        if channel != HEADER or body is None:
            return
        request = json.loads(body)
        if request["verb"] == "wait":
            self._wait(request, send)
            return
        pod, argv = request["pod"], request["argv"]
        record = Exec(pod, argv)
        with self._lock:
            self.execs.append(record)
        container = self.pods.get(pod)
        if container is None or request.get("container") not in (None, self.pod_container):
            what = (
                f'pods "{pod}" not found'
                if container is None
                else f"container {request['container']} not found"
            )
            send(STDERR, f"Error from server (NotFound): {what}\n".encode())
            record.returncode = 1
            send(EXIT, struct.pack("!i", 1))
            return
        stdin = bool(request.get("stdin"))
        proc = subprocess.Popen(
            ["podman", "exec", *(["-i"] if stdin else []), container, *argv],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        with self._lock:
            self._procs.append(proc)

        def pump(stream, out_channel: int) -> None:
            while data := stream.read1(65536):
                send(out_channel, data)

        pumps = [
            threading.Thread(target=pump, args=(proc.stdout, STDOUT), daemon=True),
            threading.Thread(target=pump, args=(proc.stderr, STDERR), daemon=True),
        ]
        for t in pumps:
            t.start()

        def read_client() -> None:
            """stdin frames into the exec; the stand-in hanging up stops the exec."""
            while True:
                frame = recv_exact(sock, FRAME.size) if proc.poll() is None else None
                if frame is None:
                    break
                kind, size = FRAME.unpack(frame)
                data = recv_exact(sock, size) if size else b""
                if data is None:
                    break
                if kind == STDIN and proc.stdin is not None:
                    try:
                        proc.stdin.write(data)
                        proc.stdin.flush()
                    except (OSError, ValueError):  # the exec closed its stdin
                        pass
                elif kind == STDIN_EOF and proc.stdin is not None:
                    proc.stdin.close()
            if proc.poll() is None:
                proc.terminate()

        threading.Thread(target=read_client, daemon=True).start()
        for t in pumps:
            t.join()
        code = proc.wait()
        record.returncode = code
        if code != 0:
            send(STDERR, f"command terminated with exit code {code}\n".encode())
        send(EXIT, struct.pack("!i", code))
