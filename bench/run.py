"""``make bench``: fareflow against plain baselines, side by side in one run.

Every case runs in its own child process (wall time and peak RSS of that process).
Prints a table with throughput and memory ratios (fareflow vs baseline) and writes
the raw figures to ``bench/results/bench-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import tempfile
import time
from pathlib import Path

from bench.common import ratios

SUITES = (
    "bench.bench_ingest",
    "bench.bench_quality",
    "bench.bench_train",
    "bench.bench_distributed",
    "bench.bench_tune",
    "bench.bench_serve",
)
RESULTS = Path(__file__).parent / "results"


def _compile_project() -> None:
    """Compile fareflow's modules to bytecode first, as ``pip install`` does for an installed
    package (the peers' packages were compiled when they were installed). A source checkout
    run with ``PYTHONDONTWRITEBYTECODE`` set, as on the build machine, would otherwise compile
    every imported module again in every measured run (~20 ms of each fareflow start-up)."""
    import compileall

    from bench.common import REPO_ROOT

    for package in ("components", "pipelines", "bench"):
        compileall.compile_dir(REPO_ROOT / package, quiet=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--suite", action="append", help="module(s) to run (default: all)")
    parser.add_argument("--workdir", help="keep generated data here (default: a temp dir)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per case and implementation, alternating; medians reported",
    )
    parser.add_argument(
        "--baseline-python",
        help="interpreter for the pandas baselines (default: this one); make bench passes a venv with "
        "pandas 3, whose reader is several times faster than the pandas 2 the project pins for kserve",
    )
    args = parser.parse_args(argv)
    if args.baseline_python:
        import os

        from bench.common import BASELINE_PYTHON_ENV

        os.environ[BASELINE_PYTHON_ENV] = args.baseline_python

    from rich.console import Console
    from rich.table import Table

    _compile_project()
    rows: list[dict] = []
    notes: list[str] = []  # a suite's own summary lines (summarize(rows)), e.g. scaling figures
    with tempfile.TemporaryDirectory(prefix="fareflow-bench-") as tmp:
        workdir = Path(args.workdir or tmp)
        for name in args.suite or SUITES:
            module = importlib.import_module(name)
            found = module.run(workdir, args.rows, repeat=args.repeat)
            rows += found
            notes += getattr(module, "summarize", lambda _rows: [])(found)

    table = Table(title=f"fareflow bench ({args.rows:,} rows)")
    for col in ("case", "impl", "rows", "seconds", "rows/s", "MB/s", "peak RSS MB"):
        table.add_column(col, justify="left" if col in ("case", "impl") else "right")
    for r in rows:
        mbps = r.get("mb_per_s")
        unit = r.get("unit")  # a suite counting something else than rows (tune: trials, per minute)
        table.add_row(
            r["case"],
            r["impl"],
            f"{r['rows']:,}" + (f" {unit}" if unit else ""),
            f"{r['seconds']:.2f}",
            f"{r['rows_per_s'] * 60:,.2f} {unit}/min" if unit else f"{r['rows_per_s']:,.0f}",
            "" if mbps is None else f"{mbps:.1f}",
            f"{r['peak_rss_mb']:.0f}",
        )
    summary = ratios(rows)
    console = Console(width=max(Console().width, 110))
    console.print(table)
    for s in summary:
        console.print(
            f"{s['case']}: {s['speedup']:.2f}x the throughput of {s['baseline']}, "
            f"{s['memory_ratio']:.2f}x its peak memory"
        )
    for line in notes:
        console.print(line)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "rows": args.rows,
                "machine": platform.uname()._asdict(),
                "results": rows,
                "ratios": summary,
                "notes": notes,
            },
            indent=2,
        )
    )
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
