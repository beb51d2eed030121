"""Bounded load on a fareflow model server, for kind-test's autoscaling checks.

Sends v1 ``POST /v1/models/NAME:predict`` requests of ``--trips`` trips from ``--concurrency``
threads until ``--duration`` seconds or ``--max-requests`` requests have passed, whichever comes
first, then prints one line: requests, errors, requests/s. Exits non-zero when more than
``--max-error-rate`` of the requests failed. Standard library only. Only the URL given is sent
to (kind-test gives a port-forward on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request

from check_inference import trips_in


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--model", required=True, help="model name (the InferenceService name)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--trips", type=int, default=100, help="trips per request (default 100)")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load at most (default 120)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="requests at most (default 200000)")
    parser.add_argument("--max-error-rate", type=float, default=0.05, help="failing share that fails the run")
    parser.add_argument("--year", type=int, default=2015, help="pick-up year of the trips (default 2015)")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.trips < 1 or args.duration <= 0 or args.max_requests < 1:
        parser.error("--concurrency, --trips, --duration and --max-requests must be positive")

    trips = trips_in(args.year)
    body = json.dumps({"instances": [trips[i % len(trips)] for i in range(args.trips)]}).encode()
    url = f"{args.url.rstrip('/')}/v1/models/{args.model}:predict"
    deadline = time.monotonic() + args.duration
    lock = threading.Lock()
    counts = {"sent": 0, "errors": 0}

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                if counts["sent"] >= args.max_requests:
                    return
                counts["sent"] += 1
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
            except (urllib.error.URLError, OSError):
                with lock:
                    counts["errors"] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - start
    sent, errors = counts["sent"], counts["errors"]
    print(
        f"load_inference: {sent} requests ({args.trips} trips each), {errors} errors, {sent / seconds:.1f} req/s over {seconds:.1f}s"
    )
    if sent and errors / sent > args.max_error_rate:
        print(f"load_inference: error rate {errors / sent:.1%} > {args.max_error_rate:.1%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
