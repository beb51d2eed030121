"""bench.common: the measuring helper the ingest benchmarks and memory test rely on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.common import measure, median_run, python_cmd, ratios


def test_measure_survives_a_child_writing_more_than_a_pipe_buffer() -> None:
    """A child writing MiBs to stdout and stderr must not block (pipes nobody reads would)."""
    script = (
        "from bench.common import measure, python_cmd\n"
        'code = \'import sys; sys.stdout.write("o" * (1 << 20)); sys.stderr.write("e" * (1 << 20))\'\n'
        "r = measure(python_cmd('-c', code))\n"
        "print(len(r['stdout']), len(r['stderr']), r['returncode'], r['cpu_s'] >= 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(1 << 20), str(1 << 20), "0", "True"]


def test_measure_failure_shows_stderr() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        measure(python_cmd("-c", "import sys; sys.exit('boom')"))


def test_median_run_and_ratios() -> None:
    runs = [{"seconds": s, "cpu_s": s, "peak_rss_mb": m} for s, m in ((3.0, 10), (1.0, 30), (2.0, 20))]
    assert median_run(runs) == {"seconds": 2.0, "cpu_s": 2.0, "peak_rss_mb": 30, "runs_s": [3.0, 1.0, 2.0]}
    rows = [
        {"case": "ingest", "impl": "fareflow", "rows_per_s": 300, "peak_rss_mb": 10},
        {"case": "ingest", "impl": "pandas", "rows_per_s": 100, "peak_rss_mb": 40},
        {"case": "generate", "impl": "fareflow", "rows_per_s": 5, "peak_rss_mb": 1},
    ]
    assert ratios(rows) == [{"case": "ingest", "baseline": "pandas", "speedup": 3.0, "memory_ratio": 0.25}]


def test_measure_reports_the_childs_peak_rss_not_the_parents() -> None:
    """Linux keeps a forked child's pre-exec high-water mark (the parent's RSS) in ru_maxrss;
    a benchmark driver holding data must not inflate the figures it measures."""
    import numpy as np

    ballast = np.ones(50_000_000)  # 400 MB resident in this (parent) process
    result = measure([sys.executable, "-c", "import numpy as np; a = np.ones(25_000_000); print(a.sum())"])
    assert 150 < result["peak_rss_mb"] < 350, result["peak_rss_mb"]  # ~200 MB array + interpreter
    assert ballast.sum() == 50_000_000
