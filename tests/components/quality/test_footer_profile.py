"""The raw profile's nulls/min/max taken from the Parquet footers (clean_partition.footer_profile)
are the values the aggregate over the rows gives, and anything a footer lacks is left to it."""

from __future__ import annotations

import datetime
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common import contract
from components.generate import core as generate_core
from components.ingest import core as ingest_core
from components.quality import clean_partition, core
from components.quality.layout import RAW_DISTANCE, RAW_NUMERIC

from .rawdata import raw_table

NUMERIC = [*RAW_NUMERIC, RAW_DISTANCE]
# what the step asks the footers for: the keys of its raw profile's aggregates
WANTED = [
    (c, s) for c, s, _ in clean_partition._profile_items([*contract.RAW_SCHEMA.names, RAW_DISTANCE], NUMERIC)
]
INGESTED = '{"step": "ingest"}'  # the _SUCCESS marker of a finished ingest


def _profiles(raw, out, monkeypatch, *, footers: bool):
    """The run's raw profile, and every (column, statistic) the footers gave in it."""
    given: list[set] = []
    real = clean_partition.footer_profile

    def spy(*args):
        known = real(*args) if footers else {}
        given.append(set(known))
        return known

    monkeypatch.setattr(clean_partition, "footer_profile", spy)
    result = core.run(core.QualityConfig(input_uri=str(raw), output_uri=str(out), workers=1))
    return result.raw_profile, set().union(*given)


def _same_with_and_without_footers(raw, tmp_path, monkeypatch):
    with_footers, given = _profiles(raw, tmp_path / "a", monkeypatch, footers=True)
    from_rows, none = _profiles(raw, tmp_path / "b", monkeypatch, footers=False)
    assert none == set()
    assert with_footers == from_rows
    return given


def test_footers_of_a_plain_pyarrow_writer_give_the_aggregates_values(raw_dir, tmp_path, monkeypatch):
    given = _same_with_and_without_footers(raw_dir, tmp_path, monkeypatch)
    # pyarrow writes statistics for every column: the footers gave the whole profile
    assert {(c, "nulls") for c in contract.RAW_SCHEMA.names} <= given
    assert {("FAREAMOUNT", "min"), ("ORIGINDATETIME_TR", "max"), ("TRIPTYPE", "min")} <= given


def test_footers_of_ingest_give_the_aggregates_values(tmp_path, monkeypatch):
    src, raw = tmp_path / "src", tmp_path / "raw"
    generate_core.run(
        generate_core.GenerateConfig(output_uri=str(src), rows=6_000, months="2015-01:2015-02", seed=11)
    )
    ingest_core.run(ingest_core.IngestConfig(source_uri=str(src), output_uri=str(raw)))
    given = _same_with_and_without_footers(raw, tmp_path, monkeypatch)
    # ingest writes no statistics for strings: their null counts come from the rows
    assert ("FAREAMOUNT", "max") in given and ("ORIGINDATETIME_TR", "nulls") in given
    assert ("PROVIDERNAME", "nulls") not in given and ("source_file", "nulls") not in given


def test_row_groups_without_values_or_statistics_and_signed_zeros(tmp_path, monkeypatch):
    """A file in several row groups, one of them all-null in some columns; a file written
    without statistics for some columns; fares of 0.0 and -0.0; a fraction of a second."""
    table = raw_table(300, 2015, 1, seed=3, defects={})
    n = table.num_rows
    fare = table.column("FAREAMOUNT").to_pylist()
    fare[:4] = [0.0, -0.0, 0.0, -0.0]
    tolls = [-0.0] * n  # only negative zeros: their minimum and maximum are +0.0 in the footer
    pickup = table.column("ORIGINDATETIME_TR").to_pylist()
    pickup[5] = pickup[5].replace(microsecond=250_000) if pickup[5] else pickup[5]
    lat = table.column("ORIGIN_BLOCK_LATITUDE").to_pylist()
    lat[:100] = [None] * 100  # the first row group (100 rows) holds no latitude
    table = (
        table.set_column(table.schema.get_field_index("FAREAMOUNT"), "FAREAMOUNT", pa.array(fare))
        .set_column(table.schema.get_field_index("TOLLAMOUNT"), "TOLLAMOUNT", pa.array(tolls))
        .set_column(
            table.schema.get_field_index("ORIGINDATETIME_TR"),
            "ORIGINDATETIME_TR",
            pa.array(pickup, contract.RAW_SCHEMA.field("ORIGINDATETIME_TR").type),
        )
        .set_column(
            table.schema.get_field_index("ORIGIN_BLOCK_LATITUDE"), "ORIGIN_BLOCK_LATITUDE", pa.array(lat)
        )
    )
    raw = tmp_path / "raw"
    part = raw / "year=2015" / "month=1"
    part.mkdir(parents=True)
    (raw / "_SUCCESS").write_text(INGESTED)
    pq.write_table(table.slice(0, 200), part / "part-0.parquet", row_group_size=100)
    stats = [c for c in contract.RAW_SCHEMA.names if c not in ("FAREAMOUNT", "DURATION", "source_line")]
    pq.write_table(table.slice(200), part / "part-1.parquet", write_statistics=stats)

    given = _same_with_and_without_footers(raw, tmp_path, monkeypatch)
    assert ("ORIGIN_BLOCK_LATITUDE", "min") in given and ("TOLLAMOUNT", "max") in given
    assert ("ORIGINDATETIME_TR", "min") in given
    for col in ("FAREAMOUNT", "DURATION"):  # one file has no statistics: all from the rows
        assert not {(col, "nulls"), (col, "min"), (col, "max")} & given
    assert ("source_line", "nulls") not in given


def test_a_statistic_is_given_only_where_every_row_group_has_it(tmp_path):
    table = raw_table(50, 2015, 1, seed=1, defects={})
    pq.write_table(table, tmp_path / "a.parquet")
    pq.write_table(table, tmp_path / "b.parquet", write_statistics=["OBJECTID", "TRIPTYPE"])
    both = [pq.read_metadata(tmp_path / f) for f in ("a.parquet", "b.parquet")]
    known = clean_partition.footer_profile(both, WANTED)
    assert set(known) == {
        ("OBJECTID", "nulls"),
        ("TRIPTYPE", "nulls"),
        ("TRIPTYPE", "min"),
        ("TRIPTYPE", "max"),
    }
    assert known[("TRIPTYPE", "min")] == min(table.column("TRIPTYPE").to_pylist())
    assert known[("OBJECTID", "nulls")] == 0
    # min/max are kept for the numeric and time columns only (as the aggregate profiles them)
    alone = clean_partition.footer_profile(both[:1], WANTED)
    assert ("OBJECTID", "min") not in alone and ("PROVIDERNAME", "min") not in alone
    assert alone[("ORIGINDATETIME_TR", "min")] == min(
        v for v in table.column("ORIGINDATETIME_TR").to_pylist() if v is not None
    )


@pytest.mark.parametrize(
    "value, kind, expected",
    [
        (-0.0, float, 0.0),
        (2.5, float, 2.5),
        (math.nan, float, None),
        (3, float, None),
        (7, int, 7),
        (True, int, None),
        (datetime.datetime(2015, 1, 1, 2, 3, 4), datetime.datetime, datetime.datetime(2015, 1, 1, 2, 3, 4)),
        (datetime.datetime(2015, 1, 1, tzinfo=datetime.UTC), datetime.datetime, None),
    ],
)
def test_a_footer_value_stands_for_the_aggregate_only_when_it_is_the_same(value, kind, expected):
    got = clean_partition._footer_value(value, kind)
    assert got == expected and type(got) is type(expected)
    if isinstance(expected, float):  # -0.0 == 0.0: the sign is checked on its own
        assert math.copysign(1, got) == math.copysign(1, expected)


def test_nan_is_left_out_of_min_and_max_with_or_without_footers(tmp_path, monkeypatch):
    """DuckDB's max of a column holding NaN is NaN and Parquet statistics leave NaN out: the
    profile's min and max are those of the numbers either way, in the raw and clean profiles."""
    table = raw_table(300, 2015, 1, seed=5, defects={})
    n = table.num_rows
    tip = [float(v) for v in range(n)]
    tip[7] = tip[250] = math.nan  # NaN beside numbers, in both row groups of the first file
    mileage = table.column("MILEAGE").to_pylist()
    mileage[:100] = [math.nan] * 100  # the first row group holds only NaN
    for name, values in (("GRATUITYAMOUNT", tip), ("MILEAGE", mileage)):
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, pa.float64()))
    raw = tmp_path / "raw"
    part = raw / "year=2015" / "month=1"
    part.mkdir(parents=True)
    (raw / "_SUCCESS").write_text(INGESTED)
    pq.write_table(table, part / "part-0.parquet", row_group_size=100)

    given = _same_with_and_without_footers(raw, tmp_path, monkeypatch)
    assert ("GRATUITYAMOUNT", "max") in given
    result = core.run(core.QualityConfig(input_uri=str(raw), output_uri=str(tmp_path / "c"), workers=1))
    numbers = [v for v in tip if not math.isnan(v)]
    assert result.raw_profile["GRATUITYAMOUNT"]["min"] == min(numbers)
    assert result.raw_profile["GRATUITYAMOUNT"]["max"] == max(numbers)
    finite_miles = [v for v in mileage if v is not None and not math.isnan(v)]
    assert result.raw_profile["MILEAGE"]["max"] == max(finite_miles)
    # the clean rows keep NaN mileage (no rule looks at it): their maximum is a number too
    clean = pq.read_table(tmp_path / "c").column("mileage").to_pylist()
    assert any(math.isnan(v) for v in clean if v is not None)
    assert result.clean_profile["mileage"]["max"] == max(
        v for v in clean if v is not None and not math.isnan(v)
    )
