"""Benchmark: the generator, fareflow ingest, and a plain pandas baseline on the same files.

Cases (each run in its own child process via ``bench.common.measure``, so wall time and
peak RSS are that process's own):

- ``generate``: ``python -m components.generate`` writing ``rows`` rows in one month
  (one ``taxi_2015_01.txt``), the input of the ``ingest`` cases.
- ``ingest`` / fareflow: ``python -m components.ingest`` on that file.
- ``ingest`` / the peers, each written the way its docs recommend for CSV -> Parquet:
  pandas (``read_csv(path, sep="|")`` + ``to_parquet``), polars
  (``scan_csv(path, separator="|", null_values=["NULL"]).sink_parquet(out)``) and DuckDB
  (``COPY (SELECT * FROM read_csv(path, delim='|', header=true, nullstr='NULL')) TO out
  (FORMAT parquet)``). ``NULL`` is named as the missing value so their numeric columns are
  typed, as pandas' (whose defaults include it) and fareflow's are. They validate nothing
  else: no timestamp parsing, no quarantine, no line numbers, no partitions.
- ``ingest_zip`` / fareflow and pandas: the same rows in ``taxi_2015.zip`` (pandas reads
  the archive with ``compression="zip"``; polars and DuckDB do not read zip archives).

MB/s counts the uncompressed text. Each ingest case runs fareflow and pandas ``repeat`` times,
alternating (a shared machine's load hits both alike), and reports each one's median wall
time (every run listed) and highest peak RSS. The goal (issue 2): fareflow ingest at least 3x the
pandas throughput with at most a third of its peak RSS on 2 million rows; issue 15: at least as
fast as the fastest peer. Every record names the peer and its version (``polars 1.x``).

    python -m bench.run --suite bench.bench_ingest --rows 2000000 [--repeat 3] [--workdir DIR]
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

from bench.common import baseline_cmd, dir_bytes, measure, median_run, python_cmd

MONTH = "2015-01"
PANDAS_BASELINE = """
import sys
import pandas as pd
src, out = sys.argv[1], sys.argv[2]
kwargs = {"compression": "zip"} if src.endswith(".zip") else {}
df = pd.read_csv(src, sep="|", **kwargs)
df.to_parquet(out)
print(len(df), pd.__version__)
"""
POLARS_BASELINE = """
import sys
import polars as pl
src, out = sys.argv[1], sys.argv[2]
pl.scan_csv(src, separator="|", null_values=["NULL"]).sink_parquet(out)
print(pl.scan_parquet(out).select(pl.len()).collect().item(), pl.__version__)
"""
DUCKDB_BASELINE = """
import sys
import duckdb
src, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(
    f"COPY (SELECT * FROM read_csv('{src}', delim='|', header=true, nullstr='NULL')) "
    f"TO '{out}' (FORMAT parquet)"
)
print(con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0], duckdb.__version__)
"""
PEERS = {"pandas": PANDAS_BASELINE, "polars": POLARS_BASELINE, "duckdb": DUCKDB_BASELINE}
ZIP_PEERS = ("pandas",)  # polars' and DuckDB's CSV readers do not open .zip archives


def _record(case: str, impl: str, rows: int, nbytes: int, result: dict) -> dict:
    seconds = result["seconds"]
    extra = {"runs_s": result["runs_s"]} if "runs_s" in result else {}
    return {
        "case": case,
        "impl": impl,
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "mb_per_s": round(nbytes / 1e6 / seconds, 1),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "cpu_s": round(result["cpu_s"], 2),
        "load_avg": round(os.getloadavg()[0], 2),
        **extra,
    }


def run(workdir: Path, rows: int, repeat: int = 3) -> list[dict]:
    """Run every case on ``rows`` rows under ``workdir``; return one record per (case, impl).

    Each ingest case runs ``repeat`` times per implementation, alternating, and reports the
    median wall time and the highest peak RSS of each."""
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
        cmds = {
            "fareflow": python_cmd(
                "-m", "components.ingest", "--source", str(source),
                "--output", str(workdir / "out" / f"{case}-fareflow"),
                "--summary-json", str(summary_path), "--no-progress",
            ),
            **{
                peer: baseline_cmd("-c", code, str(source), str(workdir / "out" / f"{case}-{peer}.parquet"))
                for peer, code in PEERS.items()
                if case == "ingest" or peer in ZIP_PEERS
            },
        }  # fmt: skip
        runs: dict[str, list[dict]] = {impl: [] for impl in cmds}
        versions: dict[str, str] = {}
        for _ in range(repeat):
            for impl, cmd in cmds.items():
                cmd, env = cmd if isinstance(cmd, tuple) else (cmd, None)
                runs[impl].append(measure(cmd, env=env))
            summary = json.loads(summary_path.read_text())
            if summary["rows_read"] != rows or not summary["invariant_holds"]:
                raise RuntimeError(f"{case}: ingest read {summary['rows_read']} rows, expected {rows}")
            for peer in (impl for impl in cmds if impl != "fareflow"):
                got, versions[peer] = runs[peer][-1]["stdout"].split()[-2:]
                if int(got) != rows:
                    raise RuntimeError(f"{case}: {peer} wrote {got} rows, expected {rows}")
        for impl, impl_runs in runs.items():
            name = f"{impl} {versions[impl]}" if impl in versions else impl
            records.append(_record(case, name, rows, nbytes, median_run(impl_runs)))
    return records
