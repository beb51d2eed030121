"""Fixtures for the train step: tiny splits in the sample step's layout, written directly.

The fare follows a known model of the distance (the DC tariff over a 1.3x road detour)
plus noise, so a model that learns anything beats predicting the mean by a wide margin."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common import contract
from components.common.features import haversine_km

NOISE_STD = 0.5
FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def trips(n: int, seed: int = 0) -> pa.Table:
    """``n`` trips typed per CLEAN_SCHEMA; fare = 3.25 + 2.16 * miles * 1.3 + N(0, 0.5)."""
    rng = np.random.default_rng(seed)
    lat0, lat1 = contract.DC_LAT_RANGE
    lon0, lon1 = contract.DC_LON_RANGE
    olat, dlat = rng.uniform(lat0, lat1, n), rng.uniform(lat0, lat1, n)
    olon, dlon = rng.uniform(lon0, lon1, n), rng.uniform(lon0, lon1, n)
    distance = haversine_km(olat, olon, dlat, dlon)
    fare = contract.FLAG_DROP + contract.PER_MILE * distance / 1.609 * 1.3 + rng.normal(0, NOISE_STD, n)
    pickup = np.datetime64("2015-01-01T00:00", "s") + (rng.integers(0, 365 * 24, n) * 3600).astype(
        "timedelta64[s]"
    )
    days = pickup.astype("datetime64[D]")
    months = pickup.astype("datetime64[M]").astype(np.int64) % 12 + 1
    columns = {
        "objectid": np.arange(1, n + 1, dtype=np.int64),
        contract.LABEL: fare,
        contract.PICKUP: pa.array(pickup, pa.timestamp("s")),
        "year": np.full(n, 2015, np.int16),
        "month": months.astype(np.int8),
        "weekday": ((days.astype(np.int64) + 3) % 7).astype(np.int8),
        "hour": ((pickup - days).astype(np.int64) // 3600).astype(np.int8),
        "origin_lat": olat,
        "origin_lon": olon,
        "dest_lat": dlat,
        "dest_lon": dlon,
        "distance_km": distance,
        "mileage": distance / 1.609 * 1.3,
        "duration": distance * 3.0,
    }
    return pa.table(columns).cast(contract.CLEAN_SCHEMA)


def write_splits(table: pa.Table, root: Path, shards: int = 1, success: bool = True) -> Path:
    """``root/{train,validation,test}/part-NNNNN.parquet`` (+ ``_SUCCESS``), as the sample step writes."""
    n = table.num_rows
    start = 0
    for split, fraction in FRACTIONS.items():
        rows = round(n * fraction) if split != "test" else n - start
        part = table.slice(start, rows)
        start += rows
        (root / split).mkdir(parents=True, exist_ok=True)
        cuts = [(i * part.num_rows) // shards for i in range(shards + 1)]
        for i in range(shards):
            pq.write_table(part.slice(cuts[i], cuts[i + 1] - cuts[i]), root / split / f"part-{i:05d}.parquet")
    if success:
        (root / "_SUCCESS").write_text(json.dumps({"step": "sample"}))
    return root


@pytest.fixture
def make_splits(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a splits directory of ``n`` trips in ``shards`` files per split."""

    def make(
        n: int = 3000, shards: int = 1, seed: int = 0, name: str = "splits", success: bool = True
    ) -> Path:
        return write_splits(trips(n, seed), tmp_path / name, shards, success)

    return make


@pytest.fixture
def splits(make_splits) -> Path:
    return make_splits()
