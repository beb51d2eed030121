"""components.common.features: the one encoder, identical for training and serving."""

from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from components.common import contract, features
from components.common.errors import UserError
from components.quality.sql import CLEAN_EXPRESSIONS


def random_trips(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    (lat_lo, lat_hi), (lon_lo, lon_hi) = contract.DC_LAT_RANGE, contract.DC_LON_RANGE
    start = datetime(2015, 1, 1)
    trips = []
    for _ in range(n):
        when = start + timedelta(hours=int(rng.integers(0, 24 * 365 * 4)))
        trips.append(
            {
                "ORIGIN_BLOCK_LATITUDE": float(rng.uniform(lat_lo, lat_hi)),
                "ORIGIN_BLOCK_LONGITUDE": float(rng.uniform(lon_lo, lon_hi)),
                "DESTINATION_BLOCK_LATITUDE": float(rng.uniform(lat_lo, lat_hi)),
                "DESTINATION_BLOCK_LONGITUDE": float(rng.uniform(lon_lo, lon_hi)),
                "ORIGINDATETIME_TR": when.strftime(contract.TIMESTAMP_FORMAT),
            }
        )
    return trips


def test_request_features_equal_what_the_quality_step_writes():
    """A rider's request (raw fields, month-first time) gives exactly the clean columns the
    quality step's SQL derives from the same raw row -- the columns the model trained on."""
    trips = random_trips(300)
    raw = pa.table(
        {
            **{k: [t[k] for t in trips] for k in features.REQUEST_FIELDS},
            "ORIGINDATETIME_TR": [
                datetime.strptime(t["ORIGINDATETIME_TR"], contract.TIMESTAMP_FORMAT) for t in trips
            ],
        }
    )
    con = duckdb.connect()
    con.register("raw", raw)
    names = list(contract.FEATURES)
    sql = ", ".join(f"{CLEAN_EXPRESSIONS[c]} AS {c}" for c in names)
    clean = con.sql(f"SELECT {sql} FROM raw").to_arrow_table()
    from_sql = features.columns_from_table(clean)
    from_request = features.columns_from_records(trips)
    for name in ("year", "month", "weekday", "hour"):
        np.testing.assert_array_equal(from_request[name], from_sql[name], err_msg=name)
    for name in ("origin_lat", "origin_lon", "dest_lat", "dest_lon", "distance_km"):
        np.testing.assert_allclose(from_request[name], from_sql[name], rtol=0, atol=1e-9, err_msg=name)
    assert set(np.unique(from_request["weekday"])) == set(range(7))  # Monday = 0 ... Sunday = 6


def test_encode_standardises_with_the_training_statistics_and_wraps_cycles():
    cols = features.columns_from_records(random_trips(500, seed=1))
    spec = features.FeatureSpec.fit(cols)
    x = features.encode(cols, spec)
    assert x.shape == (500, len(features.FEATURE_NAMES)) and x.dtype == np.float32
    continuous = x[:, : len(features.CONTINUOUS)]
    np.testing.assert_allclose(continuous.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(continuous.std(axis=0), 1, atol=1e-4)
    # 23:00 sits next to midnight on the hour circle.
    hour = {"hour": np.array([23.0, 0.0, 12.0])}
    base = {k: np.zeros(3) for k in contract.FEATURES if k != "hour"}
    enc = features.encode({**base, **hour}, spec)
    h = features.FEATURE_NAMES.index("hour_sin")
    d_near = np.linalg.norm(enc[0, h : h + 2] - enc[1, h : h + 2])
    d_far = np.linalg.norm(enc[0, h : h + 2] - enc[2, h : h + 2])
    assert d_near < 0.3 < d_far


def test_feature_spec_round_trips_and_refuses_another_feature_set():
    spec = features.FeatureSpec.fit(features.columns_from_records(random_trips(50)))
    assert features.FeatureSpec.from_json(spec.to_json()) == spec
    other = spec.to_json().replace('"hour_cos"', '"hour_tan"')
    with pytest.raises(UserError, match="feature spec: expected version 1"):
        features.FeatureSpec.from_json(other)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ORIGIN_BLOCK_LATITUDE": None}, "instance 0: field ORIGIN_BLOCK_LATITUDE: expected a number"),
        ({"ORIGIN_BLOCK_LATITUDE": "nan"}, "expected a finite number"),
        ({"ORIGINDATETIME_TR": "2015-03-14 08:00"}, "expected MM/DD/YYYY HH:MM"),
        ({"ORIGINDATETIME_TR": "14/03/2015 08:00"}, "month first"),
    ],
)
def test_bad_request_fields_are_named(change, message):
    trip = {**random_trips(1)[0], **change}
    with pytest.raises(UserError, match=message):
        features.columns_from_records([trip])


def test_iso_times_must_be_local_without_an_offset():
    trip = random_trips(1)[0]
    del trip["ORIGINDATETIME_TR"]
    local = features.columns_from_records([{**trip, "pickup_datetime": "2016-07-04T22:00"}])
    assert (local["hour"][0], local["weekday"][0]) == (22, 0)  # a Monday
    with pytest.raises(UserError, match="without a UTC offset"):
        features.columns_from_records([{**trip, "pickup_datetime": "2016-07-04T22:00+00:00"}])
