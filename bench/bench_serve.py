"""Serving benchmark: ``python -m components.serve`` (v1 and v2) vs a FastAPI + uvicorn server
(``bench.serve_baseline``, v1 only) -- the same model directory, encoder and one torch thread.

Each round starts both servers fresh (one after the other, the order alternating by round) and
records each one's time to first answer (process start to the first 200 on ``:predict``); then
it drives every case at each side in turn -- baseline v1, fareflow v1, fareflow v2, the order
rotating by round -- with ``bench.serve_load`` (keep-alive connections, a separate process), so
the two sides of a comparison run seconds apart on a machine whose load drifts; and it reads
each server's peak RSS (``VmHWM``) at the end. Cases: concurrency 1, 16 and 64 x 1 and 100 trips
per request; for fareflow both the v1 body and the v2 JSON tensors of the same trips. Medians
over ``repeat`` rounds. Both servers run without per-request logging (fareflow
``--request-logging false``, uvicorn ``access_log=False``); fareflow runs as deployed otherwise
(gRPC port open, every check of the request on).

A record: ``case`` ("serve v1 c16 x100"; v2 cases compare against the baseline's v1 figure),
``impl``, ``rows`` (trips per request), ``rows_per_s`` (trips/s), ``rps`` (``runs_rps`` by
round), ``p50_ms``/``p99_ms`` (medians over rounds), ``cpu_ms_per_req`` (the server process's
CPU time per request, all its threads: what the load on a shared machine changes least),
``first_answer_s`` and ``peak_rss_mb`` (of the server process). ``summarize`` prints the ratios
round by round.

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


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _load(port: int, path: str, body_file: Path, connections: int, seconds: float, pid: int) -> dict:
    cpu = _cpu_s(pid)
    out = subprocess.run(
        [sys.executable, "-m", "bench.serve_load", "--port", str(port), "--path", path, "--body", str(body_file),
         "--connections", str(connections), "--seconds", str(seconds), "--warmup", str(WARMUP)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=seconds * 10 + 60,
    )  # fmt: skip
    cpu = _cpu_s(pid) - cpu
    result = json.loads(out.stdout)
    if result["errors"]:
        raise RuntimeError(f"{path}: {result['errors']} failed answers, e.g. {result['first_error']}")
    # the warm-up's requests are not counted in "requests": spread its CPU by its share of the time
    result["cpu_ms_per_req"] = 1000 * cpu * seconds / (seconds + WARMUP) / max(1, result["requests"])
    return result


# Each round: both servers started (one after the other, the order alternating by round), then
# every case driven at each in turn -- baseline v1, fareflow v1, fareflow v2, the order rotating
# by round -- so the two sides of a comparison run seconds apart, not a whole server's cases
# apart (the build machine's load drifts over minutes).
SIDES = (("fastapi", "v1"), ("fareflow", "v1"), ("fareflow", "v2"))


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
    for round_ in range(repeat):
        impls = ("fastapi", "fareflow") if round_ % 2 == 0 else ("fareflow", "fastapi")
        servers: dict[str, tuple[subprocess.Popen, int]] = {}
        try:
            for impl in impls:
                port = _free_port()
                proc, first = _start(impl, model_dir, port, workdir / f"{impl}.log", probe)
                servers[impl] = (proc, port)
                starts.setdefault(impl, []).append(first)
            sides = SIDES[round_ % len(SIDES) :] + SIDES[: round_ % len(SIDES)]
            for n in trip_counts:
                for c in concurrency:
                    for impl, proto in sides:
                        proc, port = servers[impl]
                        path = V1 if proto == "v1" else V2
                        result = _load(port, path, bodies[proto, n], c, seconds, proc.pid)
                        runs.setdefault((impl, proto, n, c), []).append(result)
            for impl, (proc, _) in servers.items():
                rss.setdefault(impl, []).append(_peak_rss_mb(proc.pid))
        finally:
            for proc, _ in servers.values():
                _stop(proc)
    records = []
    for (impl, proto, n, c), results in runs.items():
        rps = statistics.median(r["rps"] for r in results)
        records.append(
            {
                "case": f"serve {proto} c{c} x{n}",
                "impl": impl,
                "rows": n,
                "seconds": seconds,
                "rows_per_s": rps * n,
                "rps": rps,
                "runs_rps": [round(r["rps"], 1) for r in results],
                "p50_ms": statistics.median(r["p50_ms"] for r in results),
                "p99_ms": statistics.median(r["p99_ms"] for r in results),
                "runs_p99_ms": [round(r["p99_ms"], 1) for r in results],
                "cpu_ms_per_req": statistics.median(r["cpu_ms_per_req"] for r in results),
                "first_answer_s": statistics.median(starts[impl]),
                "peak_rss_mb": max(rss[impl]),
            }
        )
    # v2 has no baseline of its own: compare it with the baseline's v1 figure for the same load.
    base = {(r["rows"], r["case"].split()[2]): r for r in records if r["impl"] == "fastapi"}
    for r in [r for r in records if r["case"].startswith("serve v2")]:
        records.append({**base[r["rows"], r["case"].split()[2]], "case": r["case"]})
    return sorted(records, key=lambda r: (r["case"], r["impl"] != "fareflow"))


def summarize(rows: list[dict]) -> list[str]:
    """One line per case: fareflow's requests/s against the baseline's (median, and round by
    round: the two ran seconds apart), p99, the server's CPU per request; then start and memory."""
    by_case: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_case.setdefault(r["case"], {})[r["impl"]] = r
    lines = []
    for case, impls in by_case.items():
        ours, base = impls.get("fareflow"), impls.get("fastapi")
        if not (ours and base):
            continue
        rounds = [round(a / b, 2) for a, b in zip(ours["runs_rps"], base["runs_rps"], strict=True)]
        p99s = [round(a / b, 2) for a, b in zip(ours["runs_p99_ms"], base["runs_p99_ms"], strict=True)]
        lines.append(
            f"{case}: {ours['rps']:,.0f} vs {base['rps']:,.0f} req/s ({ours['rps'] / base['rps']:.2f}x; "
            f"by round {rounds}), p99 {ours['p99_ms']:.1f} vs {base['p99_ms']:.1f} ms (by round {p99s}), "
            f"server CPU {ours['cpu_ms_per_req']:.2f} vs {base['cpu_ms_per_req']:.2f} ms/request"
        )
    ours = next((r for r in rows if r["impl"] == "fareflow"), None)
    base = next((r for r in rows if r["impl"] == "fastapi"), None)
    if ours and base:
        lines.append(
            f"serve: first answer {ours['first_answer_s']:.2f} vs {base['first_answer_s']:.2f} s; "
            f"peak RSS {ours['peak_rss_mb']:.0f} vs {base['peak_rss_mb']:.0f} MB"
        )
    return lines
