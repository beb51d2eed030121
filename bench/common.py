"""Benchmark helpers: run a command in a child process and measure wall time, CPU time and peak RSS.

Each case runs in its own process so peak RSS (ru_maxrss of that child) is its own,
and fareflow and its plain baseline are measured side by side in the same run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Runs the measured command and reports its rusage. A process forked from a big parent starts
# with that parent's peak RSS on its record (Linux keeps the pre-exec high-water mark in
# ru_maxrss), so the benchmark driver -- which holds generated data -- must not be the direct
# parent: this small interpreter (no site packages) is, and it reports its child's figures.
_TRAMPOLINE = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as f:
    json.dump({"code": os.waitstatus_to_exitcode(status), "seconds": seconds,
               "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss}, f)
"""


def measure(cmd: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None) -> dict:
    """Run ``cmd``; return {"seconds", "cpu_s", "peak_rss_mb", "returncode", "stdout", "stderr"}.

    Raises on failure. ``cmd`` runs as the child of a small trampoline process (see
    ``_TRAMPOLINE``), so ``peak_rss_mb`` (its ru_maxrss) is its own and not this process's;
    ``seconds`` is its wall time and ``cpu_s`` its user + system CPU seconds. Its output goes
    to temporary files, not pipes (nothing reads a pipe while the trampoline waits).
    """
    import json

    with (
        tempfile.TemporaryFile() as stdout,
        tempfile.TemporaryFile() as stderr,
        tempfile.TemporaryDirectory(prefix="fareflow-measure-") as tmp,
    ):
        report = Path(tmp) / "rusage.json"
        trampoline = [sys.executable, "-S", "-c", _TRAMPOLINE, str(report), *map(str, cmd)]
        proc = subprocess.run(
            trampoline, env={**os.environ, **(env or {})}, cwd=cwd, stdout=stdout, stderr=stderr, check=False
        )
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
        if proc.returncode != 0 or not report.exists():
            raise RuntimeError(
                f"benchmark trampoline failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{err[-2000:]}"
            )
        usage = json.loads(report.read_text())
    code = usage["code"]
    if code != 0:
        raise RuntimeError(f"benchmark command failed ({code}): {' '.join(map(str, cmd))}\n{err[-2000:]}")
    return {
        "seconds": usage["seconds"],
        "cpu_s": usage["cpu_s"],
        "peak_rss_mb": usage["maxrss_kb"] / 1024,
        "returncode": code,
        "stdout": out,
        "stderr": err,
    }


def median_run(runs: list[dict]) -> dict:
    """Several ``measure`` results of one command: median wall and CPU seconds, highest peak RSS,
    and every run's wall time (``runs_s``)."""
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "runs_s": [round(r["seconds"], 2) for r in runs],
    }


def ratios(rows: list[dict]) -> list[dict]:
    """Pair each fareflow case with every baseline of the same case: speed-up (throughput
    ratio) and memory ratio (peak RSS, fareflow / baseline), one entry per baseline."""
    by_case: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_case.setdefault(row["case"], {})[row["impl"]] = row
    out = []
    for case, impls in by_case.items():
        ours = impls.get("fareflow")
        for base in (r for k, r in impls.items() if k != "fareflow"):
            if not ours:
                break
            out.append(
                {
                    "case": case,
                    "baseline": base["impl"],
                    "speedup": round(ours["rows_per_s"] / base["rows_per_s"], 2),
                    "memory_ratio": round(ours["peak_rss_mb"] / base["peak_rss_mb"], 3),
                }
            )
    return out


def python_cmd(*args: str) -> list[str]:
    """A command line running this interpreter (so the venv's packages are used)."""
    return [sys.executable, *args]


BASELINE_PYTHON_ENV = "FAREFLOW_BENCH_BASELINE_PYTHON"
REPO_ROOT = Path(__file__).resolve().parents[1]


def baseline_cmd(*args: str) -> tuple[list[str], dict[str, str]]:
    """(command, extra environment) running a plain baseline with the baseline interpreter:
    ``$FAREFLOW_BENCH_BASELINE_PYTHON`` (``bench.run --baseline-python``; ``make bench`` points
    it at a venv with pandas 3, the fastest pandas) or this one. The repository goes on
    PYTHONPATH so ``bench`` and ``components.common`` import there too."""
    python = os.environ.get(BASELINE_PYTHON_ENV) or sys.executable
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return [python, *args], {"PYTHONPATH": path}


def dir_bytes(path: str | Path) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
