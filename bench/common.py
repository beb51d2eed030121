"""Benchmark helpers: run a command in a child process and measure wall time and peak RSS.

Each case runs in its own process so peak RSS (ru_maxrss of that child) is its own,
and fareflow and its plain baseline are measured side by side in the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def measure(cmd: list[str], *, env: dict[str, str] | None = None, cwd: str | Path | None = None) -> dict:
    """Run ``cmd``; return {"seconds", "peak_rss_mb", "returncode"}. Raises on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"benchmark command failed ({code}): {' '.join(map(str, cmd))}\n{err[-2000:]}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "returncode": code, "stdout": out}


def python_cmd(*args: str) -> list[str]:
    """A command line running this interpreter (so the venv's packages are used)."""
    return [sys.executable, *args]


def dir_bytes(path: str | Path) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
