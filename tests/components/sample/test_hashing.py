from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from components.sample import hashing

from .conftest import MONTHS, synthetic_trips


@pytest.fixture(scope="module")
def trips() -> pa.Table:
    return synthetic_trips(4000, MONTHS, seed=3)


def test_hash_is_a_function_of_the_key_not_row_order_or_batches(trips):
    h = hashing.trip_hash(trips, seed=7, salt=hashing.SAMPLE_SALT)
    perm = np.random.default_rng(0).permutation(trips.num_rows)
    shuffled = hashing.trip_hash(trips.take(pa.array(perm)), seed=7, salt=hashing.SAMPLE_SALT)
    np.testing.assert_array_equal(shuffled, h[perm])
    pieces = np.concatenate(
        [hashing.trip_hash(b, 7, hashing.SAMPLE_SALT) for b in trips.to_batches(max_chunksize=333)]
    )
    np.testing.assert_array_equal(pieces, h)


def test_hash_depends_on_seed_salt_and_every_key_field(trips):
    h = hashing.trip_hash(trips, 7, hashing.SAMPLE_SALT)
    assert not np.array_equal(h, hashing.trip_hash(trips, 8, hashing.SAMPLE_SALT))
    assert not np.array_equal(h, hashing.trip_hash(trips, 7, hashing.SPLIT_SALT))
    assert len(np.unique(h)) == trips.num_rows
    for name in hashing.KEY_COLUMNS:
        col = trips.column(name)
        if pa.types.is_floating(col.type):
            changed = pa.compute.add(col, 0.5)
        elif pa.types.is_timestamp(col.type):
            changed = pa.array(col.to_numpy() + np.timedelta64(3600, "s"), col.type)
        else:
            changed = pa.compute.add(col, 1)
        other = trips.set_column(trips.schema.get_field_index(name), name, changed)
        assert (hashing.trip_hash(other, 7, hashing.SAMPLE_SALT) != h).all(), name


def test_known_values_pin_the_hash_across_versions():
    # SplitMix64 reference: the first output of a generator seeded with 0.
    assert hashing.mix_int(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF
    assert int(hashing.mix64(np.array([0x9E3779B97F4A7C15], np.uint64))[0]) == 0xE220A8397B1DCDAF
    # One trip's hashes. If these change, every existing split moves: change them only deliberately.
    trip = pa.table(
        {
            "objectid": pa.array([42], pa.int64()),
            "pickup_datetime": pa.array([dt.datetime(2015, 1, 12, 12)], pa.timestamp("s")),
            "origin_lat": [38.9],
            "origin_lon": [-77.03],
            "dest_lat": [38.85],
            "dest_lon": [-77.0],
            "fare": [12.5],
        }
    )
    assert int(hashing.trip_hash(trip, 0, hashing.SAMPLE_SALT)[0]) == 0x19E5C3EACE63F490
    assert int(hashing.trip_hash(trip, 0, hashing.SPLIT_SALT)[0]) == 0xACDC8DA660D75EFF


def test_negative_zero_and_nulls_hash_consistently():
    a = pa.array([0.0, -0.0, None, None])
    bits = hashing.column_bits(a)
    assert bits[0] == bits[1]
    assert bits[2] == bits[3] != bits[0]


def test_unit_interval_is_uniform(trips):
    u = hashing.unit_interval(hashing.trip_hash(trips, 1, hashing.SPLIT_SALT))
    assert u.min() >= 0 and u.max() < 1
    counts, _ = np.histogram(u, bins=10, range=(0, 1))
    # chi-square with 9 dof; 27.9 is the 0.999 quantile
    expected = len(u) / 10
    assert ((counts - expected) ** 2 / expected).sum() < 27.9
