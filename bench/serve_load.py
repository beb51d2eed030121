"""A small HTTP/1.1 load client: ``connections`` keep-alive connections each sending one prepared
request after another for ``seconds``; prints one JSON line (requests/s, p50/p99 latency, errors).

Raw asyncio streams and a pre-built request, so the client costs little CPU beside the server's
(wrk is not installed on the build machines). Every answer must be 200 with as many fares as
trips sent, or it counts as an error.

    python -m bench.serve_load --port 8080 --path /v1/... --body FILE --connections 16 --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time


async def _one_connection(port: int, request: bytes, deadline: float, latencies: list, errors: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(body[:200].decode(errors="replace"))
    finally:
        writer.close()


async def load(port: int, request: bytes, connections: int, seconds: float, warmup: float) -> dict:
    if warmup:
        await asyncio.gather(
            *(
                _one_connection(port, request, time.perf_counter() + warmup, [], [])
                for _ in range(connections)
            )
        )
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    await asyncio.gather(
        *(_one_connection(port, request, start + seconds, latencies, errors) for _ in range(connections))
    )
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def http_request(path: str, body: bytes, headers: dict | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--body", required=True, help="file holding the request body")
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=0.5)
    args = p.parse_args()
    with open(args.body, "rb") as f:
        request = http_request(args.path, f.read())
    print(json.dumps(asyncio.run(load(args.port, request, args.connections, args.seconds, args.warmup))))


if __name__ == "__main__":
    main()
