#!/usr/bin/env python
"""A stand-in for ``/opt/kube/kubectl`` in an MPIJob launcher container (the container tier).

The Training Operator's ``/etc/mpi/kubexec.sh`` runs ``/opt/kube/kubectl exec POD -- /bin/sh
-c "CMD"``; Open MPI's mpirun uses that script as its rsh agent to start ``orted`` in each worker
pod. Here there is no API server: this script implements ``kubectl exec POD [-i] [-c C] --
ARGV...`` by asking the host's exec relay (a unix socket next to this file, see
``exec_relay.py``) to run ``podman exec`` in the worker container named POD, and relays stdout,
stderr, stdin (with ``-i`` only, like kubectl) and the exit status until the process ends. It
also plays ``kubectl wait --for=condition=Ready [--timeout=Ns] pod/NAME...`` (the launcher's
wait for its workers): the relay answers when those containers run.

Standard library only: it runs under the image's Python, copied into the launcher at
``/opt/kube/kubectl`` the way the operator's init container delivers the real kubectl there.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading

# Frames both ways: 1-byte channel, 4-byte big-endian length, payload.
HEADER, STDIN, STDOUT, STDERR, EXIT, STDIN_EOF = range(6)
FRAME = struct.Struct("!BI")
SOCKET_NAME = "exec-relay.sock"


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(code)


def parse(argv: list[str]) -> dict:
    if argv[:1] == ["exec"]:
        return parse_exec(argv[1:])
    if argv[:1] == ["wait"]:
        return parse_wait(argv[1:])
    fail(f"this kubectl stand-in plays `kubectl exec` and `kubectl wait` only, not {argv[:1]}")
    raise AssertionError  # unreachable


def parse_exec(argv: list[str]) -> dict:
    """``exec POD [-i|--stdin] [-c|--container C] [-n|--namespace N] -- ARGV...``"""
    if "--" not in argv:
        fail("kubectl exec: expected `-- COMMAND [args...]`")
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    if not command:
        fail("kubectl exec: you must specify at least one command for the container")
    pod, container, stdin = None, None, False
    i = 0
    while i < len(options):
        opt = options[i]
        if opt in ("-i", "--stdin"):
            stdin = True
        elif opt in ("-c", "--container", "-n", "--namespace"):
            if i + 1 == len(options):
                fail(f"kubectl exec: flag needs an argument: {opt}")
            if opt in ("-c", "--container"):
                container = options[i + 1]
            i += 1
        elif opt.startswith(("--container=", "--namespace=")):
            if opt.startswith("--container="):
                container = opt.split("=", 1)[1]
        elif opt.startswith("-"):
            fail(f"kubectl exec: unknown flag {opt} (the stand-in knows -i, -c, -n)")
        elif pod is None:
            pod = opt
        else:
            fail(f"kubectl exec: unexpected argument {opt!r}")
        i += 1
    if pod is None:
        fail("kubectl exec: expected a POD name")
    return {"verb": "exec", "pod": pod, "container": container, "argv": command, "stdin": stdin}


def parse_wait(argv: list[str]) -> dict:
    """``wait --for=condition=Ready [--timeout=N(s|m)] [-n N] pod/NAME...``"""
    pods, condition, timeout_s = [], None, 30.0
    i = 0
    while i < len(argv):
        opt = argv[i]
        if opt.startswith("--for="):
            condition = opt[len("--for=") :]
        elif opt.startswith("--timeout="):
            value = opt[len("--timeout=") :]
            scale = {"s": 1, "m": 60, "h": 3600}.get(value[-1:])
            timeout_s = float(value[:-1]) * scale if scale else float(value)
        elif opt in ("-n", "--namespace"):
            i += 1
        elif opt.startswith("--namespace="):
            pass
        elif opt.startswith("-"):
            fail(f"kubectl wait: unknown flag {opt} (the stand-in knows --for, --timeout, -n)")
        elif opt.startswith(("pod/", "pods/")):
            pods.append(opt.split("/", 1)[1])
        else:
            fail(f"kubectl wait: expected pod/NAME, got {opt!r}")
        i += 1
    if condition != "condition=Ready":
        fail(f"kubectl wait: the stand-in plays --for=condition=Ready only, not {condition!r}")
    if not pods:
        fail("kubectl wait: expected at least one pod/NAME")
    return {"verb": "wait", "pods": pods, "timeout_s": timeout_s}


def send(sock: socket.socket, lock: threading.Lock, channel: int, payload: bytes = b"") -> None:
    with lock:
        sock.sendall(FRAME.pack(channel, len(payload)) + payload)


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def pump_stdin(sock: socket.socket, lock: threading.Lock) -> None:
    try:
        while data := os.read(0, 65536):
            send(sock, lock, STDIN, data)
        send(sock, lock, STDIN_EOF)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    request = parse(argv)
    path = os.environ.get(
        "FAREFLOW_EXEC_RELAY", os.path.join(os.path.dirname(os.path.abspath(__file__)), SOCKET_NAME)
    )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        fail(f"cannot reach the exec relay at {path}: {exc}")
    lock = threading.Lock()
    send(sock, lock, HEADER, json.dumps(request).encode())
    if request.get("stdin"):
        threading.Thread(target=pump_stdin, args=(sock, lock), daemon=True).start()
    while True:
        head = recv_exact(sock, FRAME.size)
        if head is None:
            fail("the exec relay closed the stream before the command's exit status")
        channel, length = FRAME.unpack(head)
        payload = recv_exact(sock, length) if length else b""
        if payload is None:
            fail("the exec relay closed the stream mid-frame")
        if channel == STDOUT:
            write_all(1, payload)
        elif channel == STDERR:
            write_all(2, payload)
        elif channel == EXIT:
            return struct.unpack("!i", payload)[0]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
