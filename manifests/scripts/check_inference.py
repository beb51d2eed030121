"""Send inference requests to a fareflow model server and check the answers.

Both protocols KServe speaks, against the same model name (the InferenceService name):

- v1: ``POST /v1/models/NAME:predict`` with ``{"instances": [record, ...]}`` and
  ``{"predictions": [fare, ...]}`` back;
- v2 (open inference protocol): ``GET /v2/models/NAME/ready`` then
  ``POST /v2/models/NAME/infer`` with one input tensor per feature column and the fares in
  ``outputs[0].data``.

A record holds what a rider knows before the trip, under the data contract's column names.
Every answer must have one finite fare per trip inside [--min-fare, --max-fare].
Standard library only: it runs from the project venv or any python3.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.error
import urllib.request

TRIPS = [
    # Downtown to Capitol Hill, Union Station to Georgetown, short hop near the Mall.
    {
        "ORIGIN_BLOCK_LATITUDE": 38.9007,
        "ORIGIN_BLOCK_LONGITUDE": -77.0365,
        "DESTINATION_BLOCK_LATITUDE": 38.8899,
        "DESTINATION_BLOCK_LONGITUDE": -77.0091,
        "ORIGINDATETIME_TR": "03/14/2015 08:00",
    },
    {
        "ORIGIN_BLOCK_LATITUDE": 38.8973,
        "ORIGIN_BLOCK_LONGITUDE": -77.0063,
        "DESTINATION_BLOCK_LATITUDE": 38.9097,
        "DESTINATION_BLOCK_LONGITUDE": -77.0654,
        "ORIGINDATETIME_TR": "07/04/2015 22:00",
    },
    {
        "ORIGIN_BLOCK_LATITUDE": 38.8893,
        "ORIGIN_BLOCK_LONGITUDE": -77.0502,
        "DESTINATION_BLOCK_LATITUDE": 38.8881,
        "DESTINATION_BLOCK_LONGITUDE": -77.0440,
        "ORIGINDATETIME_TR": "11/30/2015 13:00",
    },
]


def trips_in(year: int) -> list[dict]:
    """TRIPS with their pick-up dates (MM/DD/YYYY HH:MM) moved to ``year``."""
    return [
        {**t, "ORIGINDATETIME_TR": f"{t['ORIGINDATETIME_TR'][:6]}{year}{t['ORIGINDATETIME_TR'][10:]}"}
        for t in TRIPS
    ]


class CheckFailed(Exception):
    pass


# Extra request headers for every call (--host-header: Knative routes by Host through Kourier).
HEADERS: dict[str, str] = {}


def _request(url: str, payload: dict | None, timeout: float) -> dict:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="GET" if payload is None else "POST")
    req.add_header("Content-Type", "application/json")
    for key, value in HEADERS.items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read().decode()
    except urllib.error.HTTPError as err:
        raise CheckFailed(f"{url}: HTTP {err.code}: {err.read().decode(errors='replace')[:500]}") from err
    except OSError as err:
        raise CheckFailed(f"{url}: {err}") from err
    try:
        return json.loads(body) if body else {}
    except json.JSONDecodeError as err:
        raise CheckFailed(f"{url}: expected a JSON body, got {body[:200]!r}") from err


def v2_inputs(trips: list[dict]) -> list[dict]:
    inputs = []
    for column in trips[0]:
        values = [t[column] for t in trips]
        datatype = "BYTES" if isinstance(values[0], str) else "FP64"
        inputs.append({"name": column, "shape": [len(values)], "datatype": datatype, "data": values})
    return inputs


def check_fares(where: str, fares, n: int, lo: float, hi: float) -> list[float]:
    if not isinstance(fares, list) or len(fares) != n:
        raise CheckFailed(f"{where}: expected a list of {n} fares, got {fares!r}")
    flat = [f[0] if isinstance(f, list) and len(f) == 1 else f for f in fares]
    for i, fare in enumerate(flat):
        if not isinstance(fare, int | float) or isinstance(fare, bool) or not math.isfinite(fare):
            raise CheckFailed(f"{where}[{i}]: expected a finite number, got {fare!r}")
        if not lo <= fare <= hi:
            raise CheckFailed(f"{where}[{i}]: fare {fare} outside [{lo}, {hi}]")
    return [float(f) for f in flat]


def check_v1(base: str, model: str, trips: list[dict], lo: float, hi: float, timeout: float) -> list[float]:
    url = f"{base}/v1/models/{model}:predict"
    answer = _request(url, {"instances": trips}, timeout)
    return check_fares(f"{url} predictions", answer.get("predictions"), len(trips), lo, hi)


def check_v2(base: str, model: str, trips: list[dict], lo: float, hi: float, timeout: float) -> list[float]:
    ready = _request(f"{base}/v2/models/{model}/ready", None, timeout)
    if ready.get("ready") is False:
        raise CheckFailed(f"{base}/v2/models/{model}/ready: model not ready: {ready}")
    url = f"{base}/v2/models/{model}/infer"
    answer = _request(url, {"id": "fareflow-check", "inputs": v2_inputs(trips)}, timeout)
    if answer.get("model_name") not in (None, model):
        raise CheckFailed(f"{url}: answered for model {answer.get('model_name')!r}, expected {model!r}")
    outputs = answer.get("outputs")
    if not isinstance(outputs, list) or not outputs or not isinstance(outputs[0], dict):
        raise CheckFailed(f"{url}: expected 'outputs' with at least one tensor, got {answer!r}")
    return check_fares(f"{url} outputs[0].data", outputs[0].get("data"), len(trips), lo, hi)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="model server base URL, e.g. http://127.0.0.1:8081")
    p.add_argument("--model", required=True, help="model name (the InferenceService name)")
    p.add_argument("--protocol", choices=["v1", "v2", "both"], default="both")
    p.add_argument("--min-fare", type=float, default=0.0)
    p.add_argument("--max-fare", type=float, default=500.0)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--host-header", help="send this Host header (a Knative route's host through its gateway)")
    p.add_argument(
        "--year",
        type=int,
        default=2015,
        help="pick-up year of the trips (a model refuses years it was not trained on; default 2015)",
    )
    ns = p.parse_args(argv)
    trips = trips_in(ns.year)
    if ns.host_header:
        HEADERS["Host"] = ns.host_header
    base = ns.url.rstrip("/")
    try:
        if ns.protocol in ("v1", "both"):
            fares = check_v1(base, ns.model, trips, ns.min_fare, ns.max_fare, ns.timeout)
            print(f"v1 ok: {fares}")
        if ns.protocol in ("v2", "both"):
            fares = check_v2(base, ns.model, trips, ns.min_fare, ns.max_fare, ns.timeout)
            print(f"v2 ok: {fares}")
    except CheckFailed as err:
        print(f"inference check failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
