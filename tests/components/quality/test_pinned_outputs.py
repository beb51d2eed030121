"""The quality step's outputs for a fixed input, pinned: the clean and rejected rows (which,
in which order, with which values), the per-rule counts, the population statistics and the
reservoir. Speed work on the step (docs/quality.md) must leave every one of these unchanged;
the figures were taken from the implementation before that work."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from components.common.publish import REPORT_HTML
from components.quality import core

from .conftest import DEFECTS_PER_MONTH, MONTHS, ROWS_PER_MONTH
from .rawdata import DEFECTS, raw_table, write_raw

COUNTS = {
    "rejected_by_rule": {
        "coordinates_outside_dc": 15,
        "dropoff_before_pickup": 15,
        "duplicate_trip": 15,
        "fare_out_of_range": 15,
        "missing_destination_coordinates": 15,
        "missing_fare": 15,
        "missing_origin_coordinates": 15,
        "missing_pickup_time": 15,
        "pickup_outside_file_month": 15,
    },
    "rows_clean": 1065,
    "rows_in": 1200,
    "rows_rejected": 135,
}
STATS = {
    "columns": {
        "dest_lat": {
            "count": 1065,
            "max": 38.9948,
            "mean": 38.90180723004694,
            "min": 38.8118,
            "std": 0.053438614990842466,
        },
        "dest_lon": {
            "count": 1065,
            "max": -76.9102,
            "mean": -77.01065586854462,
            "min": -77.1135,
            "std": 0.05814262281343987,
        },
        "distance_km": {
            "count": 1065,
            "max": 24.403065377016432,
            "mean": 9.767006558937465,
            "min": 0.221124761840766,
            "std": 4.704292191121034,
        },
        "fare": {
            "count": 1065,
            "max": 59.99,
            "mean": 31.98194366197182,
            "min": 3.46,
            "std": 16.64505847173095,
        },
        "hour": {"count": 1065, "max": 23, "mean": 11.342723004694836, "min": 0, "std": 6.874454727213863},
        "month": {"count": 1065, "max": 3, "mean": 2.0, "min": 1, "std": 0.816496580927726},
        "origin_lat": {
            "count": 1065,
            "max": 38.9946,
            "mean": 38.90442723004697,
            "min": 38.8115,
            "std": 0.05329172905137563,
        },
        "origin_lon": {
            "count": 1065,
            "max": -76.9102,
            "mean": -77.00908638497653,
            "min": -77.1133,
            "std": 0.05932456499473393,
        },
        "weekday": {"count": 1065, "max": 6, "mean": 2.993427230046948, "min": 0, "std": 1.988453521967205},
        "year": {"count": 1065, "max": 2015, "mean": 2015.0, "min": 2015, "std": 0.0},
    },
    "reservoir_rows": 100,
    "rows": 1065,
    "seed": 3,
    "std_ddof": 0,
}
# sha256 over each file (in path order): its relative path, then the listed columns' values
CLEAN_DIGEST = "1197e09b9ea04b203e00b42d69612aa15f47a1997081fc5fe2d246ff7fd2f0a2"
REJECTED_DIGEST = "c8288e31f2dfb3930261d61a984cd6b72cbce3d39332dc8063c8c7c7e3382e99"
RESERVOIR_DIGEST = "7bf19a6da602ef3dc917c69e47f2bb607f962a30dc1f61fcddb8d5a13e5fedab"  # the reservoir's objectids, in its order


def _digest(root: Path, columns: list[str]) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.parquet")):
        table = pq.read_table(f, columns=columns)
        h.update(str(f.relative_to(root)).encode())
        for c in columns:
            h.update(repr(table.column(c).to_pylist()).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def pinned_run(tmp_path_factory):
    """Two workers, a reservoir smaller than one partition's clean rows (so the merge picks
    from every partition's sample), a non-default seed."""
    root = tmp_path_factory.mktemp("pinned")
    tables = [
        raw_table(ROWS_PER_MONTH, y, m, seed=7, defects=dict.fromkeys(DEFECTS, DEFECTS_PER_MONTH))
        for y, m in MONTHS
    ]
    raw = write_raw(root / "raw", tables, files_per_partition=2)
    cfg = core.QualityConfig(
        input_uri=str(raw), output_uri=str(root / "clean"), workers=2, reservoir_rows=100, seed=3
    )
    return core.run(cfg), root


def test_counts_and_statistics_are_unchanged(pinned_run):
    result, root = pinned_run
    assert {k: result.counts[k] for k in COUNTS} == COUNTS
    stats = json.loads((root / "clean_stats" / "stats.json").read_text())
    assert {k: v for k, v in stats.items() if k != "columns"} == {
        k: v for k, v in STATS.items() if k != "columns"
    }
    assert stats["columns"].keys() == STATS["columns"].keys()
    for col, want in STATS["columns"].items():
        assert stats["columns"][col] == pytest.approx(want, rel=1e-12, abs=1e-12), col


def test_clean_rejected_and_reservoir_rows_are_unchanged(pinned_run):
    _, root = pinned_run
    assert _digest(root / "clean", ["objectid", "fare", "distance_km", "weekday", "hour"]) == CLEAN_DIGEST
    assert _digest(root / "clean_rejected", ["OBJECTID", "rule", "source_line"]) == REJECTED_DIGEST
    reservoir = pq.read_table(root / "clean_stats" / "reservoir.parquet").column("objectid").to_pylist()
    assert hashlib.sha256(repr(reservoir).encode()).hexdigest() == RESERVOIR_DIGEST


def test_the_written_schemas_are_those_the_readers_expect():
    from components.common import datasets
    from components.quality import layout

    assert layout.CLEAN_FILE_SCHEMA is datasets.CLEAN_FILE_SCHEMA  # one definition (the contract)
    assert layout.REJECTED_SCHEMA is datasets.REJECTED_SCHEMA
    assert layout.CLEAN_FILE_SCHEMA.names == [
        n for n in datasets.contract.CLEAN_SCHEMA.names if n not in ("year", "month")
    ]
    assert layout.REJECTED_SCHEMA.names == [*datasets.contract.RAW_SCHEMA.names, "rule"]


@pytest.mark.parametrize("report", [False, True], ids=["no-report", "report"])
def test_a_quality_run_does_not_import_pandas(tmp_path, report):
    """pandas (pulled in by pyarrow.dataset, by DuckDB registering an Arrow table and by
    pyarrow's ``to_numpy``, which the report's map used) costs ~0.3 s of every run's serial
    part: the start, before the workers fork, or the report after the merge."""
    import subprocess
    import sys

    raw = write_raw(tmp_path / "raw", [raw_table(50, 2015, 1, seed=1)])
    extra = f", '--report-dir', {str(tmp_path / 'report')!r}" if report else ""
    code = (
        "import sys\n"
        "from components.quality.__main__ import main\n"
        f"code = main(['--input', {str(raw)!r}, '--output', {str(tmp_path / 'clean')!r}, '--quiet',"
        f" '--no-gate', '--workers', '2'{extra}])\n"
        "assert code == 0, code\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    if report:  # the figures were drawn
        assert (tmp_path / "report" / REPORT_HTML).read_text().count("data:image/png;base64,") >= 3
