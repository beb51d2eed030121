"""Fixtures for the sample step: clean Parquet + population stats built from numpy arrays,
exactly as the contract describes the quality step's outputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from components.common import contract
from components.common.features import haversine_km

BLOCK_DEG = 0.0025  # coordinates snapped to a block grid, like the real data


def synthetic_trips(
    n: int, months: list[tuple[int, int]], seed: int = 0, first_objectid: int = 1
) -> pa.Table:
    """``n`` trips spread over ``months``, typed per CLEAN_SCHEMA (a plausible DC-like shape)."""
    rng = np.random.default_rng(seed)
    ym = np.array(months)[rng.integers(0, len(months), n)]
    starts = np.array([np.datetime64(f"{y:04d}-{m:02d}-01T00:00", "s") for y, m in ym])
    seconds = rng.integers(0, 28 * 24, n) * 3600  # rounded to the hour, like the real files
    pickup = starts + seconds.astype("timedelta64[s]")
    lat0, lat1 = contract.DC_LAT_RANGE
    lon0, lon1 = contract.DC_LON_RANGE

    def snap(x: np.ndarray) -> np.ndarray:
        return np.round(x / BLOCK_DEG) * BLOCK_DEG

    olat, olon = snap(rng.uniform(lat0, lat1, n)), snap(rng.uniform(lon0, lon1, n))
    dlat, dlon = snap(rng.uniform(lat0, lat1, n)), snap(rng.uniform(lon0, lon1, n))
    distance = haversine_km(olat, olon, dlat, dlon)
    mileage = distance / 1.609344 * rng.uniform(1.1, 1.5, n)
    fare = np.clip(
        np.round(contract.FLAG_DROP + contract.PER_MILE * mileage + rng.gamma(2.0, 1.0, n), 2),
        *contract.FARE_RANGE,
    )
    pickup_days = pickup.astype("datetime64[D]")
    weekday = ((pickup_days.astype(np.int64) + 3) % 7).astype(np.int8)  # 1970-01-01 was a Thursday
    hour = ((pickup - pickup_days).astype(np.int64) // 3600).astype(np.int8)
    columns = {
        "objectid": pa.array(np.arange(first_objectid, first_objectid + n, dtype=np.int64)),
        contract.LABEL: pa.array(fare),
        contract.PICKUP: pa.array(pickup, pa.timestamp("s")),
        "year": pa.array(ym[:, 0].astype(np.int16)),
        "month": pa.array(ym[:, 1].astype(np.int8)),
        "weekday": pa.array(weekday),
        "hour": pa.array(hour),
        "origin_lat": pa.array(olat),
        "origin_lon": pa.array(olon),
        "dest_lat": pa.array(dlat),
        "dest_lon": pa.array(dlon),
        "distance_km": pa.array(distance),
        "mileage": pa.array(mileage),
        "duration": pa.array(mileage * rng.uniform(2.0, 5.0, n)),
    }
    return pa.table(columns).cast(contract.CLEAN_SCHEMA)


def write_clean(table: pa.Table, root: Path, basename: str = "part-{i}.parquet") -> Path:
    """Hive-partitioned (year=/month=) Parquet, as the quality step writes it."""
    ds.write_dataset(
        table,
        root,
        format="parquet",
        partitioning=ds.partitioning(contract.PARTITION_SCHEMA, flavor="hive"),
        basename_template=basename,
        existing_data_behavior="overwrite_or_ignore",
    )
    (root / "_SUCCESS").write_text(json.dumps({"step": contract.QUALITY_STEP, "role": "output"}))
    return root


def write_population_stats(
    table: pa.Table, directory: Path, reservoir_rows: int = contract.RESERVOIR_ROWS, seed: int = 1
) -> Path:
    """stats.json (count/mean/std/min/max of LABEL and FEATURES over all rows) + reservoir.parquet."""
    directory.mkdir(parents=True, exist_ok=True)
    columns = {}
    for name in (contract.LABEL, *contract.FEATURES):
        values = table.column(name).to_numpy().astype(np.float64)
        columns[name] = {
            "count": int(values.size),
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    (directory / contract.POPULATION_STATS_FILE).write_text(
        json.dumps({"rows": table.num_rows, "columns": columns}), encoding="utf-8"
    )
    rng = np.random.default_rng(seed)
    pick = rng.choice(table.num_rows, size=min(reservoir_rows, table.num_rows), replace=False)
    pq.write_table(table.take(pa.array(pick)), directory / contract.POPULATION_RESERVOIR_FILE)
    (directory / "_SUCCESS").write_text(json.dumps({"step": contract.QUALITY_STEP, "role": "stats"}))
    return directory


MONTHS = [(2015, 1), (2015, 2), (2015, 3)]


@pytest.fixture
def make_inputs(tmp_path: Path) -> Callable[..., tuple[Path, Path, pa.Table]]:
    """Factory: (clean_dir, stats_dir, table) for ``n`` synthetic trips."""

    def make(n: int = 6000, months=MONTHS, seed: int = 0, name: str = "in") -> tuple[Path, Path, pa.Table]:
        table = synthetic_trips(n, months, seed)
        clean = write_clean(table, tmp_path / name / "clean")
        stats = write_population_stats(table, tmp_path / name / "stats")
        return clean, stats, table

    return make


@pytest.fixture
def inputs(make_inputs) -> tuple[Path, Path, pa.Table]:
    return make_inputs()
