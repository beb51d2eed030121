"""Benchmark: the generator, fareflow ingest, and a plain pandas baseline on the same files.

Cases (each run in its own child process via ``bench.common.measure``, so wall time and
peak RSS are that process's own):

- ``generate``: ``python -m components.generate`` writing ``rows`` rows in one month
  (one ``taxi_2015_01.txt``), the input of the ``ingest`` cases.
- ``ingest`` / fareflow: ``python -m components.ingest`` on that file.
- ``ingest`` / pandas: ``pandas.read_csv(path, sep="|")`` then ``DataFrame.to_parquet``.
- ``ingest_zip`` / fareflow and pandas: the same rows in ``taxi_2015.zip`` (pandas reads
  the archive with ``compression="zip"``).

MB/s counts the uncompressed text. Ingest cases run ``repeat`` times each (fastest kept,
highest peak RSS kept), because a shared machine's timings are noisy. The goal (issue 2): fareflow ingest at least 3x the
pandas throughput with at most a third of its peak RSS on 2 million rows.

    python -m bench.bench_ingest --rows 2000000 [--repeat 3] [--workdir DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from bench.common import dir_bytes, measure, python_cmd

MONTH = "2015-01"
PANDAS_BASELINE = """
import sys
import pandas as pd
src, out = sys.argv[1], sys.argv[2]
kwargs = {"compression": "zip"} if src.endswith(".zip") else {}
df = pd.read_csv(src, sep="|", **kwargs)
df.to_parquet(out)
print(len(df))
"""


def _record(case: str, impl: str, rows: int, nbytes: int, result: dict) -> dict:
    seconds = result["seconds"]
    return {
        "case": case,
        "impl": impl,
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "mb_per_s": round(nbytes / 1e6 / seconds, 1),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
    }


def _best_of(cmd: list[str], repeat: int) -> dict:
    """Fastest of ``repeat`` runs (the machine may be shared), with the highest peak RSS seen."""
    results = [measure(cmd) for _ in range(repeat)]
    best = min(results, key=lambda r: r["seconds"])
    return {**best, "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}


def run(workdir: Path, rows: int, repeat: int = 3) -> list[dict]:
    """Run every case on ``rows`` rows under ``workdir``; return one record per (case, impl).

    Each ingest case runs ``repeat`` times per implementation, alternating, and reports the
    fastest run and the highest peak RSS."""
    workdir = Path(workdir)
    data, zipped = workdir / "data", workdir / "zip"
    for path in (data, zipped, workdir / "out"):
        shutil.rmtree(path, ignore_errors=True)
    (workdir / "out").mkdir(parents=True)
    records = []

    gen = measure(
        python_cmd("-m", "components.generate", "--out", str(data), "--rows", str(rows), "--months", MONTH)
    )
    text = data / "taxi_2015_01.txt"
    nbytes = text.stat().st_size
    records.append(_record("generate", "fareflow", rows, dir_bytes(data), gen))

    zipped.mkdir()
    with zipfile.ZipFile(zipped / "taxi_2015.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.write(text, text.name)

    for case, source in (("ingest", text), ("ingest_zip", zipped / "taxi_2015.zip")):
        summary_path = workdir / "out" / f"{case}-summary.json"
        out = workdir / "out" / f"{case}-fareflow"
        result = _best_of(
            python_cmd(
                "-m", "components.ingest", "--source", str(source), "--output", str(out),
                "--summary-json", str(summary_path), "--no-progress",
            ),
            repeat,
        )  # fmt: skip
        summary = json.loads(summary_path.read_text())
        if summary["rows_read"] != rows or not summary["invariant_holds"]:
            raise RuntimeError(f"{case}: ingest read {summary['rows_read']} rows, expected {rows}")
        records.append(_record(case, "fareflow", rows, nbytes, result))

        baseline = measure(
            python_cmd("-c", PANDAS_BASELINE, str(source), str(workdir / "out" / f"{case}-pandas.parquet"))
        )
        if int(baseline["stdout"].split()[-1]) != rows:
            raise RuntimeError(f"{case}: pandas read {baseline['stdout'].strip()} rows, expected {rows}")
        records.append(_record(case, "pandas", rows, nbytes, baseline))
    return records


def ratios(records: list[dict]) -> dict[str, dict[str, float]]:
    """Per ingest case: fareflow throughput / pandas, and fareflow peak RSS / pandas."""
    by = {(r["case"], r["impl"]): r for r in records}
    out = {}
    for case in sorted({r["case"] for r in records if r["impl"] == "pandas"}):
        ff, pd_ = by[(case, "fareflow")], by[(case, "pandas")]
        out[case] = {
            "speedup": round(ff["rows_per_s"] / pd_["rows_per_s"], 2),
            "memory_ratio": round(ff["peak_rss_mb"] / pd_["peak_rss_mb"], 3),
        }
    return out


def format_table(records: list[dict]) -> str:
    head = (
        f"{'case':<12} {'impl':<9} {'rows':>10} {'seconds':>8} {'rows/s':>11} {'MB/s':>7} {'peak RSS MB':>12}"
    )
    lines = [head, "-" * len(head)]
    for r in records:
        lines.append(
            f"{r['case']:<12} {r['impl']:<9} {r['rows']:>10,} {r['seconds']:>8.2f} "
            f"{r['rows_per_s']:>11,} {r['mb_per_s']:>7.1f} {r['peak_rss_mb']:>12.0f}"
        )
    for case, ratio in ratios(records).items():
        lines.append(
            f"{case}: fareflow {ratio['speedup']:.2f}x pandas throughput, "
            f"{ratio['memory_ratio']:.2f}x its peak RSS (goal: >= 3x, <= 0.33x)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per ingest case; the fastest is kept")
    parser.add_argument("--workdir", default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--json", default=None, help="also write the records to this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        records = run(Path(args.workdir or tmp), args.rows, args.repeat)
    print(format_table(records))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"records": records, "ratios": ratios(records)}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
