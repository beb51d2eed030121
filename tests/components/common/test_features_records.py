"""components.common.features: request records read column-wise (columns_from_fields) give
exactly what the record-by-record reading gives -- the same columns, or the same refusal."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import numpy as np
import pytest

from components.common import contract, features
from components.common.errors import UserError

RAW_TIME = features.REQUEST_TIME


def _reference(records):
    """The record-by-record reading (datetime.strptime, float()): its columns or its error."""
    try:
        return features._columns_record_by_record(records)
    except UserError as err:
        return str(err)


def _result(records):
    try:
        return features.columns_from_records(records)
    except UserError as err:
        return str(err)


def assert_same(records) -> None:
    got, want = _result(records), _reference(records)
    if isinstance(want, str):
        assert got == want
        return
    assert isinstance(got, dict), got
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype == np.float64, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def _trip(rng: random.Random, when: datetime) -> dict:
    (la0, la1), (lo0, lo1) = contract.DC_LAT_RANGE, contract.DC_LON_RANGE
    return {
        "ORIGIN_BLOCK_LATITUDE": rng.uniform(la0, la1),
        "ORIGIN_BLOCK_LONGITUDE": rng.uniform(lo0, lo1),
        "DESTINATION_BLOCK_LATITUDE": rng.uniform(la0, la1),
        "DESTINATION_BLOCK_LONGITUDE": rng.uniform(lo0, lo1),
        # contract.TIMESTAMP_FORMAT; strftime's %Y writes years below 1000 with fewer digits here
        RAW_TIME: f"{when.month:02d}/{when.day:02d}/{when.year:04d} {when.hour:02d}:{when.minute:02d}",
    }


def _dates(rng: random.Random, n: int) -> list[datetime]:
    """Pick-up times over the whole datetime range (years 1 to 9999), minutes included."""
    span = (datetime(9999, 12, 31, 23, 59) - datetime(1, 1, 1)).total_seconds() // 60
    return [datetime(1, 1, 1) + timedelta(minutes=rng.randrange(int(span))) for _ in range(n)]


@pytest.mark.parametrize("n", [1, 5, 15, 16, 17, 100, 1000])
def test_valid_trips_read_column_wise_equal_the_record_by_record_reading(n):
    rng = random.Random(n)
    records = [_trip(rng, when) for when in _dates(rng, n)]
    assert features.columns_from_fields(features._fields_of(records)) is not None  # the fast path ran
    assert_same(records)


# Texts of the right length that strptime refuses or reads differently, and odd values.
BAD_TIMES = [
    "00/10/2016 10:00", "13/10/2016 10:00", "02/30/2016 10:00", "02/29/2015 10:00", "04/31/2016 10:00",
    "01/00/2016 10:00", "01/32/2016 10:00", "01/10/0000 10:00", "01/10/2016 24:00", "01/10/2016 10:60",
    "01-10-2016 10:00", "01/10/2016T10:00", "01/10/2016 10.00", "1/10/2016  10:00", " 1/10/2016 10:00",
    "01/10/2016 1:000", "0a/10/2016 10:00", "01/10/2O16 10:00", "01/10/201\u0666 10:00", "01/10/2016 10:0\u00e9",
    "2016-01-10 10:00", "01/10/2016 10:00 ", "1/10/2016 10:00", "01/10/16 10:00", "", None, 20160110, b"01/10/2016 10:00",
]  # fmt: skip
GOOD_TIMES = [
    "02/29/2016 23:59",
    "12/31/9999 00:00",
    "01/01/0001 00:00",
    "02/29/2000 12:00",
    "02/28/1900 01:01",
]


@pytest.mark.parametrize("n", [1, 40])
@pytest.mark.parametrize("text", BAD_TIMES + GOOD_TIMES)
def test_a_time_anywhere_in_the_batch_is_read_as_strptime_reads_it(n, text):
    rng = random.Random(0)
    records = [_trip(rng, when) for when in _dates(rng, n)]
    records[n // 2][RAW_TIME] = text
    assert_same(records)


BAD_NUMBERS = [None, True, False, "38.9", " 38.9 ", "nan", "inf", float("nan"), float("inf"), -float("inf"), 39,
               2**63 + 1, 10**400, [38.9], {"v": 1}, "", "1_000"]  # fmt: skip


@pytest.mark.parametrize("n", [1, 40])
@pytest.mark.parametrize("value", BAD_NUMBERS, ids=lambda v: repr(v)[:20])
@pytest.mark.parametrize("field", ["ORIGIN_BLOCK_LATITUDE", "DESTINATION_BLOCK_LONGITUDE"])
def test_a_number_anywhere_in_the_batch_is_read_as_float_reads_it(n, value, field):
    rng = random.Random(1)
    records = [_trip(rng, when) for when in _dates(rng, n)]
    records[-1][field] = value
    if value == 10**400:  # float() overflows: not a client's mistake the JSON parsers let through
        with pytest.raises(OverflowError):
            features._columns_record_by_record(records)
        with pytest.raises(OverflowError):
            features.columns_from_records(records)
        return
    assert_same(records)


@pytest.mark.parametrize("n", [1, 40])
def test_records_naming_fields_differently_are_read_as_before(n):
    rng = random.Random(2)
    base = [_trip(rng, when) for when in _dates(rng, n)]
    clean = [{features.REQUEST_FIELDS.get(k, k): v for k, v in r.items()} for r in base]
    both = [{**r, "origin_lat": 0.0} for r in base]  # the raw name wins where both are given
    iso = [
        {**{k: v for k, v in r.items() if k != RAW_TIME}, "pickup_datetime": "2016-07-04T22:00"} for r in base
    ]
    mixed = [*base[:-1], clean[-1]]
    mixed_both = [clean[0], *both[1:]]
    missing = [*base[:-1], {k: v for k, v in base[-1].items() if k != "ORIGIN_BLOCK_LONGITUDE"}]
    for records in (
        base,
        clean,
        both,
        iso,
        mixed,
        mixed_both,
        missing,
        [*base[:-1], "a trip"],
        [*base, 38.9],
    ):
        assert_same(records)
    assert features.columns_from_fields(features._fields_of(clean)) is not None
    if n > 1:  # record 0 names the coordinates clean, the others raw (and clean)
        assert features._fields_of(mixed_both) is None


def test_no_records_give_empty_columns():
    assert_same([])
    assert all(v.shape == (0,) for v in features.columns_from_records([]).values())
