"""Quality step benchmark: the component vs the same rules written plainly in pandas and in polars.

Both read the same ingested data set (generator -> ingest, built once under ``workdir``),
apply the default rule set (first failed rule per row), write clean and rejected Parquet
and compute the population mean/std; each runs in its own child process (wall time, CPU
seconds and peak RSS of that process). The component runs as users run it: the CLI
(``python -m components.quality``, default workers = CPU cores); it also writes the
per-partition statistics, the reservoir and the profile, which the baseline does not. The
run checks that both find the same number of clean rows.

Cases:
- ``quality``: ``rows`` rows over 12 months, pandas, fareflow and polars (``polars_quality``:
  one lazy query, ``write_parquet(partition_by=...)``) alternating ``repeat`` times
  (a shared machine's load hits both alike); medians are reported, every run is listed.
- ``quality-with-report``: fareflow also writing the HTML/Markdown report (``--report-dir``),
  as the pipeline step does.
- ``quality-3-partitions``: fareflow alone on a quarter of the rows over 3 months (the same
  rows per partition): its peak RSS next to the ``quality`` case's shows whether memory
  grows with the number of partitions.

``python -m bench.bench_quality pandas|polars RAW OUT`` runs a baseline alone (prints JSON).
Both baselines run with the baseline interpreter (``make bench``: a venv with pandas 3 and polars).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from bench.common import baseline_cmd, measure, median_run, python_cmd
from components.common.features import EARTH_RADIUS_KM

MONTHS_FULL = "2015-01:2015-12"
MONTHS_QUARTER = "2015-01:2015-03"


def ingested(workdir: Path, rows: int, months: str) -> Path:
    """Generate + ingest once per (rows, months); reused across runs."""
    from components.generate import core as generate_core
    from components.ingest import core as ingest_core

    tag = f"{rows}-{months.replace(':', '_')}"
    raw = workdir / f"quality-raw-{tag}"
    if (raw / "_SUCCESS").exists():
        return raw
    src = workdir / f"quality-src-{tag}"
    if not (src / "truth.json").exists():
        shutil.rmtree(src, ignore_errors=True)
        generate_core.run(generate_core.GenerateConfig(output_uri=str(src), rows=rows, months=months, seed=0))
    shutil.rmtree(raw, ignore_errors=True)
    ingest_core.run(ingest_core.IngestConfig(source_uri=str(src), output_uri=str(raw)))
    return raw


def _fareflow(raw: Path, out: Path, *extra: str) -> list[str]:
    """The component as users run it: the CLI in its own process (default workers: all cores)."""
    return python_cmd(
        "-m", "components.quality", "--input", str(raw), "--output", str(out / "clean"),
        "--overwrite", "--no-gate", "--quiet", "--summary-json", str(out / "summary.json"), *extra,
    )  # fmt: skip


def _row(case: str, impl: str, rows: int, runs: list[dict]) -> dict:
    """Median wall time of the runs (all listed), median CPU seconds, highest peak RSS."""
    summary = median_run(runs)
    return {
        "case": case,
        "impl": impl,
        "rows": rows,
        "seconds": round(summary["seconds"], 3),
        "rows_per_s": round(rows / summary["seconds"]),
        "cpu_s": round(summary["cpu_s"], 3),
        "peak_rss_mb": round(summary["peak_rss_mb"], 1),
        "runs_s": summary["runs_s"],
        "load_avg": round(os.getloadavg()[0], 2),
    }


def run(workdir: Path, rows: int, repeat: int = 3) -> list[dict]:
    """pandas and fareflow on the same ingested data, ``repeat`` times each, alternating (the
    machine may be shared: both see the same conditions), reporting medians; then fareflow
    with the HTML/Markdown report as the pipeline runs it, and on 3 partitions (memory)."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "quality-out"
    raw = ingested(workdir, rows, MONTHS_FULL)
    cmds = {
        "pandas": baseline_cmd("-m", "bench.bench_quality", "pandas", str(raw), str(out / "pandas")),
        "fareflow": _fareflow(raw, out / "fareflow"),
        "polars": baseline_cmd("-m", "bench.bench_quality", "polars", str(raw), str(out / "polars")),
    }
    runs: dict[str, list[dict]] = {impl: [] for impl in cmds}
    for _ in range(repeat):
        for impl, cmd in cmds.items():
            shutil.rmtree(out, ignore_errors=True)
            (out / impl).mkdir(parents=True)
            cmd, env = cmd if isinstance(cmd, tuple) else (cmd, None)
            runs[impl].append(measure(cmd, env=env))
            if impl == "fareflow":
                clean = json.loads((out / impl / "summary.json").read_text())["rows_clean"]
            else:
                clean = json.loads(runs[impl][-1]["stdout"])["rows_clean"]
            runs[impl][-1]["rows_clean"] = clean
    if {r["rows_clean"] for rs in runs.values() for r in rs} != {runs["pandas"][0]["rows_clean"]}:
        raise RuntimeError(f"the implementations disagree on the clean rows: {runs}")
    names = {impl: f"{impl} {json.loads(runs[impl][0]['stdout'])[impl]}" for impl in ("pandas", "polars")}
    results = [_row("quality", names.get(impl, impl), rows, r) for impl, r in runs.items()]
    report = []
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        report.append(measure(_fareflow(raw, out / "r", "--report-dir", str(out / "r" / "report"))))
    results.append(_row("quality-with-report", "fareflow", rows, report))
    quarter = ingested(workdir, rows // 4, MONTHS_QUARTER)
    shutil.rmtree(out, ignore_errors=True)
    results.append(
        _row("quality-3-partitions", "fareflow", rows // 4, [measure(_fareflow(quarter, out / "q"))])
    )
    shutil.rmtree(out, ignore_errors=True)
    return results


# --- the plain pandas baseline --------------------------------------------------------


def pandas_quality(raw: str, out: str) -> dict:
    """The default rules, first failed rule per row, written the way a notebook would."""
    import numpy as np
    import pandas as pd

    from components.common import contract

    df = pd.read_parquet(raw)  # whole data set in memory (hive partitions -> year/month)
    df["year"] = df["year"].astype(int)
    df["month"] = df["month"].astype(int)
    lat0, lat1 = contract.DC_LAT_RANGE[0] - 0.01, contract.DC_LAT_RANGE[1] + 0.01
    lon0, lon1 = contract.DC_LON_RANGE[0] - 0.01, contract.DC_LON_RANGE[1] + 0.01
    pick, drop = df["ORIGINDATETIME_TR"], df["DESTINATIONDATETIME_TR"]
    # the file name's month, parsed once per distinct file (a handful) rather than per row
    files = pd.Series(df["source_file"].unique())
    ym = files.str.extract(r"taxi_(\d{4})_(\d{2})\.txt$").astype(float)
    file_month = df["source_file"].map(dict(zip(files, ym[0] * 100 + ym[1], strict=True)))
    rules = [
        ("missing_pickup_time", pick.isna()),
        ("missing_fare", df["FAREAMOUNT"].isna()),
        (
            "missing_origin_coordinates",
            df["ORIGIN_BLOCK_LATITUDE"].isna() | df["ORIGIN_BLOCK_LONGITUDE"].isna(),
        ),
        (
            "missing_destination_coordinates",
            df["DESTINATION_BLOCK_LATITUDE"].isna() | df["DESTINATION_BLOCK_LONGITUDE"].isna(),
        ),
        ("fare_out_of_range", (df["FAREAMOUNT"] < 3.25) | (df["FAREAMOUNT"] > 180)),
        (
            "coordinates_outside_dc",
            ~df["ORIGIN_BLOCK_LATITUDE"].between(lat0, lat1)
            | ~df["DESTINATION_BLOCK_LATITUDE"].between(lat0, lat1)
            | ~df["ORIGIN_BLOCK_LONGITUDE"].between(lon0, lon1)
            | ~df["DESTINATION_BLOCK_LONGITUDE"].between(lon0, lon1),
        ),
        (
            "pickup_outside_file_month",
            (pick.dt.year != df["year"])
            | (pick.dt.month != df["month"])
            | (file_month.notna() & (file_month != pick.dt.year * 100 + pick.dt.month)),
        ),
        ("dropoff_before_pickup", drop < pick),
    ]
    rule = pd.Series(pd.NA, index=df.index, dtype="object")
    for name, mask in rules:
        rule = rule.mask(rule.isna() & mask.fillna(False).astype(bool), name)
    keys = [c for c in contract.RAW_COLUMNS if c != "OBJECTID"]
    survivors = df[rule.isna()].sort_values(["source_file", "source_line"])
    dup = survivors.duplicated(subset=keys, keep="first")
    rule.loc[dup[dup].index] = "duplicate_trip"
    clean_raw = df[rule.isna()]
    lat1r, lon1r = (
        np.radians(clean_raw["ORIGIN_BLOCK_LATITUDE"]),
        np.radians(clean_raw["ORIGIN_BLOCK_LONGITUDE"]),
    )
    lat2r, lon2r = (
        np.radians(clean_raw["DESTINATION_BLOCK_LATITUDE"]),
        np.radians(clean_raw["DESTINATION_BLOCK_LONGITUDE"]),
    )
    a = np.sin((lat2r - lat1r) / 2) ** 2 + np.cos(lat1r) * np.cos(lat2r) * np.sin((lon2r - lon1r) / 2) ** 2
    ts = clean_raw["ORIGINDATETIME_TR"]
    clean = pd.DataFrame(
        {
            "objectid": clean_raw["OBJECTID"],
            "fare": clean_raw["FAREAMOUNT"],
            "pickup_datetime": ts,
            "year": ts.dt.year,
            "month": ts.dt.month,
            "weekday": ts.dt.weekday,
            "hour": ts.dt.hour,
            "origin_lat": clean_raw["ORIGIN_BLOCK_LATITUDE"],
            "origin_lon": clean_raw["ORIGIN_BLOCK_LONGITUDE"],
            "dest_lat": clean_raw["DESTINATION_BLOCK_LATITUDE"],
            "dest_lon": clean_raw["DESTINATION_BLOCK_LONGITUDE"],
            "distance_km": 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a)),
            "mileage": clean_raw["MILEAGE"],
            "duration": clean_raw["DURATION"],
        }
    )
    clean.to_parquet(f"{out}/clean", partition_cols=["year", "month"])
    rejected = df[rule.notna()].assign(rule=rule[rule.notna()])
    rejected.to_parquet(f"{out}/rejected", partition_cols=["year", "month"])
    stats = {c: (clean[c].mean(), clean[c].std(ddof=0)) for c in (contract.LABEL, *contract.FEATURES)}
    return {
        "pandas": pd.__version__,
        "rows_in": len(df),
        "rows_clean": len(clean),
        "rejected": rule.value_counts().to_dict(),
        "stats": stats,
    }


# --- the same rules in polars (lazy, as its docs recommend) -----------------------------


def polars_quality(raw: str, out: str) -> dict:
    """The default rules, first failed rule per row, as a polars user writes them: one lazy
    query over the hive-partitioned input (``scan_parquet``), ``when/then`` for the rules,
    ``is_first_distinct`` over the survivors in source order for duplicates, and
    ``write_parquet(partition_by=...)``."""
    import polars as pl

    from components.common import contract

    lat0, lat1 = contract.DC_LAT_RANGE[0] - 0.01, contract.DC_LAT_RANGE[1] + 0.01
    lon0, lon1 = contract.DC_LON_RANGE[0] - 0.01, contract.DC_LON_RANGE[1] + 0.01
    c = pl.col
    pick, drop, fare = c("ORIGINDATETIME_TR"), c("DESTINATIONDATETIME_TR"), c("FAREAMOUNT")
    olat, olon = c("ORIGIN_BLOCK_LATITUDE"), c("ORIGIN_BLOCK_LONGITUDE")
    dlat, dlon = c("DESTINATION_BLOCK_LATITUDE"), c("DESTINATION_BLOCK_LONGITUDE")
    ym = c("source_file").str.extract_groups(r"taxi_(\d{4})_(\d{2})\.txt$")
    file_month = ym.struct.field("1").cast(pl.Int64) * 100 + ym.struct.field("2").cast(pl.Int64)
    pick_ym = pick.dt.year().cast(pl.Int64) * 100 + pick.dt.month().cast(pl.Int64)
    rules = [
        ("missing_pickup_time", pick.is_null()),
        ("missing_fare", fare.is_null()),
        ("missing_origin_coordinates", olat.is_null() | olon.is_null()),
        ("missing_destination_coordinates", dlat.is_null() | dlon.is_null()),
        ("fare_out_of_range", (fare < 3.25) | (fare > 180)),
        (
            "coordinates_outside_dc",
            ~olat.is_between(lat0, lat1)
            | ~dlat.is_between(lat0, lat1)
            | ~olon.is_between(lon0, lon1)
            | ~dlon.is_between(lon0, lon1),
        ),
        (
            "pickup_outside_file_month",
            (pick.dt.year() != c("year"))
            | (pick.dt.month() != c("month"))
            | (file_month.is_not_null() & (file_month != pick_ym)),
        ),
        ("dropoff_before_pickup", drop < pick),
    ]
    rule = pl.when(rules[0][1].fill_null(False)).then(pl.lit(rules[0][0]))
    for name, mask in rules[1:]:
        rule = rule.when(mask.fill_null(False)).then(pl.lit(name))
    rule = rule.otherwise(pl.lit(None, dtype=pl.String))
    keys = [k for k in contract.RAW_COLUMNS if k != "OBJECTID"]
    lf = (
        pl.scan_parquet(f"{raw}/year=*/month=*/*.parquet", hive_partitioning=True)
        .with_columns(c("year").cast(pl.Int32), c("month").cast(pl.Int32), rule.alias("rule"))
        .sort("source_file", "source_line")
        .with_columns(
            pl.when(c("rule").is_null() & ~pl.struct(keys).is_first_distinct().over(c("rule").is_null()))
            .then(pl.lit("duplicate_trip"))
            .otherwise(c("rule"))
            .alias("rule")
        )
    )
    df = lf.collect()
    clean_raw = df.filter(c("rule").is_null())
    r = 3.141592653589793 / 180
    a = ((dlat - olat) * r / 2).sin() ** 2 + (olat * r).cos() * (dlat * r).cos() * (
        (dlon - olon) * r / 2
    ).sin() ** 2
    clean = clean_raw.select(
        c("OBJECTID").alias("objectid"),
        fare.alias("fare"),
        pick.alias("pickup_datetime"),
        pick.dt.year().cast(pl.Int32).alias("year"),
        pick.dt.month().cast(pl.Int32).alias("month"),
        (pick.dt.weekday() - 1).alias("weekday"),
        pick.dt.hour().alias("hour"),
        olat.alias("origin_lat"),
        olon.alias("origin_lon"),
        dlat.alias("dest_lat"),
        dlon.alias("dest_lon"),
        (2 * EARTH_RADIUS_KM * a.sqrt().arcsin()).alias("distance_km"),
        c("MILEAGE").alias("mileage"),
        c("DURATION").alias("duration"),
    )
    clean.write_parquet(f"{out}/clean", partition_by=["year", "month"])
    rejected = df.filter(c("rule").is_not_null())
    rejected.write_parquet(f"{out}/rejected", partition_by=["year", "month"])
    cols = (contract.LABEL, *contract.FEATURES)
    moments = clean.select(
        *(c(k).mean().alias(f"{k}_mean") for k in cols), *(c(k).std(ddof=0).alias(f"{k}_std") for k in cols)
    )
    m = moments.row(0, named=True)
    return {
        "polars": pl.__version__,
        "rows_in": df.height,
        "rows_clean": clean.height,
        "rejected": dict(rejected.group_by("rule").len().iter_rows()),
        "stats": {k: (m[f"{k}_mean"], m[f"{k}_std"]) for k in cols},
    }


if __name__ == "__main__":
    impls = {"pandas": pandas_quality, "polars": polars_quality}
    if len(sys.argv) == 4 and sys.argv[1] in impls:
        Path(sys.argv[3]).mkdir(parents=True, exist_ok=True)
        print(json.dumps(impls[sys.argv[1]](sys.argv[2], sys.argv[3]), default=lambda v: v.item()))
    else:
        sys.exit("usage: python -m bench.bench_quality pandas|polars RAW OUT")
