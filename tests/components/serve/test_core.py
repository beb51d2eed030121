"""FarePredictor: sensible fares, one answer for records and columns, clipping, user errors."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from components.common import contract, features
from components.common.errors import UserError
from components.common.model_dir import ArrayMLP
from components.serve.core import FarePredictor

from .conftest import synthetic_columns, true_fare

REPO = Path(__file__).resolve().parents[3]


def _check_inference():
    spec = importlib.util.spec_from_file_location(
        "check_inference", REPO / "manifests/scripts/check_inference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRIPS = _check_inference().TRIPS  # the cluster end-to-end test's requests


def trip(lat1=38.9007, lon1=-77.0365, lat2=38.8899, lon2=-77.0091, when="03/14/2018 08:00") -> dict:
    return {
        "ORIGIN_BLOCK_LATITUDE": lat1,
        "ORIGIN_BLOCK_LONGITUDE": lon1,
        "DESTINATION_BLOCK_LATITUDE": lat2,
        "DESTINATION_BLOCK_LONGITUDE": lon2,
        "ORIGINDATETIME_TR": when,
    }


def trip_of_km(km: float, when: str = "06/05/2018 12:00") -> dict:
    """A trip going east from downtown for about ``km`` kilometres."""
    lat, lon = 38.90, -77.10
    dlon = km / (features.EARTH_RADIUS_KM * np.cos(np.radians(lat))) * 180 / np.pi
    return trip(lat, lon, lat, lon + dlon, when)


def as_columns(records: list[dict], text=lambda s: s.encode()) -> dict[str, list]:
    return {k: [text(r[k]) if isinstance(r[k], str) else r[k] for r in records] for k in records[0]}


@pytest.fixture(scope="module")
def predictor(model_dir) -> FarePredictor:
    return FarePredictor.load(model_dir)


# --- the answers ---------------------------------------------------------------------------


def test_fares_follow_the_tariff(predictor):
    """Trained on flag drop + per-mile tariff: close to it, and longer trips cost more."""
    one, five, ten = predictor.predict_records([trip_of_km(1), trip_of_km(5), trip_of_km(10)])
    assert one < five < ten
    for km, fare in ((1, one), (5, five), (10, ten)):
        assert fare == pytest.approx(float(true_fare(km, 12)), abs=1.5), km
    cols = synthetic_columns(1000, seed=42)  # fresh trips, not the training rows
    rmse = np.sqrt(np.mean((predictor._predict(cols) - true_fare(cols["distance_km"], cols["hour"])) ** 2))
    assert rmse < 1.5, f"rmse {rmse:.2f} vs a fare std of {true_fare(cols['distance_km'], 0).std():.2f}"


def test_rush_hour_costs_more(predictor):
    rush, night = predictor.predict_records(
        [trip_of_km(4, "06/05/2018 08:00"), trip_of_km(4, "06/05/2018 03:00")]
    )
    assert rush > night + 0.5


def test_records_and_columns_give_identical_fares(predictor):
    by_records = predictor.predict_records(TRIPS)
    by_bytes = predictor.predict_columns(as_columns(TRIPS))
    by_str = predictor.predict_columns(as_columns(TRIPS, text=str))
    by_arrays = predictor.predict_columns({k: np.asarray(v) for k, v in as_columns(TRIPS).items()})
    assert isinstance(by_bytes, np.ndarray) and by_bytes.shape == (len(TRIPS),)
    assert by_records == by_bytes.tolist() == by_str.tolist() == by_arrays.tolist()
    assert all(isinstance(f, float) for f in by_records)


def test_clean_names_give_the_same_fares(predictor):
    clean = [
        {
            "origin_lat": t["ORIGIN_BLOCK_LATITUDE"],
            "origin_lon": t["ORIGIN_BLOCK_LONGITUDE"],
            "dest_lat": t["DESTINATION_BLOCK_LATITUDE"],
            "dest_lon": t["DESTINATION_BLOCK_LONGITUDE"],
            # the same pick-up time, ISO-written: MM/DD/YYYY HH:MM -> YYYY-MM-DDTHH:MM:00
            contract.PICKUP: f"{t['ORIGINDATETIME_TR'][6:10]}-{t['ORIGINDATETIME_TR'][:2]}-"
            f"{t['ORIGINDATETIME_TR'][3:5]}T{t['ORIGINDATETIME_TR'][11:]}:00",
        }
        for t in TRIPS[:1]
    ]
    assert predictor.predict_records(clean) == predictor.predict_records(TRIPS[:1])
    assert predictor.predict_columns(as_columns(clean)).tolist() == predictor.predict_records(TRIPS[:1])


def test_a_trip_gets_the_same_fare_in_any_batch(predictor):
    rng = np.random.default_rng(3)
    lats = rng.uniform(*contract.DC_LAT_RANGE, (600, 2))
    lons = rng.uniform(*contract.DC_LON_RANGE, (600, 2))
    records = [
        trip(a, b, c, d, f"0{1 + i % 9}/1{i % 10}/2017 {i % 24:02d}:00")
        for i, ((a, c), (b, d)) in enumerate(zip(lats, lons, strict=True))
    ]
    together = np.asarray(predictor.predict_records(records))
    alone = np.asarray([predictor.predict_records([r])[0] for r in records[:40]])
    reversed_batch = np.asarray(predictor.predict_records(records[::-1]))[::-1]
    # Rows never interact (eval mode, no batch statistics); float32 BLAS rounding may differ.
    np.testing.assert_allclose(alone, together[:40], rtol=0, atol=1e-4)
    np.testing.assert_allclose(reversed_batch, together, rtol=0, atol=1e-4)
    assert len(set(np.round(together, 2))) > 100  # different trips, different fares


def test_large_batches_are_chunked_consistently(predictor, monkeypatch):
    from components.serve import core

    records = [trip_of_km(0.5 + i / 10) for i in range(50)]
    whole = np.asarray(predictor.predict_records(records))
    monkeypatch.setattr(core, "CHUNK_ROWS", 7)
    np.testing.assert_allclose(predictor.predict_records(records), whole, rtol=0, atol=1e-4)


def test_fares_are_clipped_to_the_model_fare_range(predictor):
    assert predictor.fare_range == contract.FARE_RANGE  # what the model directory records
    records = [trip_of_km(0.2), trip_of_km(3), trip_of_km(15)]
    free = predictor.predict_records(records)
    assert free[0] < 8.0 < free[1] < 12.0 < free[2]
    narrow = FarePredictor(dataclasses.replace(predictor.model, fare_range=(8.0, 12.0)), area=predictor.area)
    assert narrow.predict_records(records) == [8.0, free[1], 12.0]
    assert narrow.predict_columns(as_columns(records)).tolist() == [8.0, free[1], 12.0]


def test_far_outside_the_training_region_is_refused_not_clipped(predictor):
    far = trip(38.9, -77.0, 0.0, 0.0)  # the Gulf of Guinea: ~9,000 km
    x = features.encode(features.columns_from_records([far]), predictor.model.spec)
    raw = float(predictor.model.module(x)[0, 0])
    assert raw > contract.FARE_RANGE[1]  # the MLP extrapolates; clipping would answer 180 ...
    with pytest.raises(
        UserError, match=r"^instance 0: field DESTINATION_BLOCK_LATITUDE: 0\.0 is outside the service"
    ):
        predictor.predict_records([far])  # ... the predictor refuses
    with pytest.raises(UserError, match="outside the service area"):
        predictor.predict_columns(as_columns([far]))


def test_the_service_area_is_the_training_extent_plus_the_margins(model_dir):
    import json

    extent = json.loads((model_dir / "model.json").read_text())["extent"]
    area = FarePredictor.load(model_dir, area_margin_deg=0.05, year_margin=2).area
    assert area.lat == pytest.approx((extent["lat"][0] - 0.05, extent["lat"][1] + 0.05), abs=1e-6)
    assert area.lon == pytest.approx((extent["lon"][0] - 0.05, extent["lon"][1] + 0.05), abs=1e-6)
    assert area.years == (extent["year"][0] - 2, extent["year"][1] + 2) == (2013, 2021)
    assert area.source == "the training extent in model.json"
    edge = trip(lat1=extent["lat"][1] + 0.04)  # inside the wider margin only
    assert len(FarePredictor.load(model_dir, area_margin_deg=0.05).predict_records([edge])) == 1
    with pytest.raises(UserError, match="outside the service area"):
        FarePredictor.load(model_dir, area_margin_deg=0.0).predict_records([edge])
    late = trip(when="03/14/2021 08:00")
    assert len(FarePredictor.load(model_dir, year_margin=2).predict_records([late])) == 1
    with pytest.raises(
        UserError, match=r"pick-up year 2021 is outside the years the model can price \(2015 to 2019\)"
    ):
        FarePredictor.load(model_dir, year_margin=0).predict_records([late])


def test_a_model_without_a_recorded_extent_gets_the_data_contract_area(model_dir, tmp_path):
    import json
    import shutil

    older = tmp_path / "older"
    shutil.copytree(model_dir, older)
    meta = json.loads((older / "model.json").read_text())
    del meta["extent"]
    (older / "model.json").write_text(json.dumps(meta))
    area = FarePredictor.load(older, area_margin_deg=0.0, year_margin=0).area
    assert (area.lat, area.lon, area.years) == (contract.DC_LAT_RANGE, contract.DC_LON_RANGE, (2015, 2019))
    assert "data contract" in area.source


# --- user errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([], "instances: empty"),
        ({"a": 1}, "instances: expected a list of trip objects, got dict"),
        ("trips", "instances: expected a list of trip objects, got str"),
        ([trip(), 5], "instance 1: expected an object of trip fields, got int"),
        ([trip() | {"tip": 1}], "instance 0: unknown field(s) tip; expected ORIGIN_BLOCK_LATITUDE"),
        (
            [trip() | {"dest_lat": 38.9}],
            "instance 0: fields DESTINATION_BLOCK_LATITUDE and dest_lat name the same",
        ),
        (
            [trip(lat1=-38.9007)],
            "instance 0: field ORIGIN_BLOCK_LATITUDE: -38.9007 is outside the service area",
        ),
        (
            [trip(when="01/01/2030 08:00")],
            "instance 0: field ORIGINDATETIME_TR: pick-up year 2030 is outside",
        ),
        (
            [trip(), {k: v for k, v in trip().items() if k != "DESTINATION_BLOCK_LATITUDE"}],
            "instance 1: missing field DESTINATION_BLOCK_LATITUDE",
        ),
        ([trip(lat1="north")], "instance 0: field ORIGIN_BLOCK_LATITUDE: expected a number, got 'north'"),
        ([trip(lon2=None)], "instance 0: field DESTINATION_BLOCK_LONGITUDE: expected a number, got None"),
        ([trip(), trip(when="14/03/2018 08:00")], "instance 1: field ORIGINDATETIME_TR: expected MM/DD/YYYY"),
        ([trip(when="2018-03-14 08:00")], "instance 0: field ORIGINDATETIME_TR"),
        (
            [{k: v for k, v in trip().items() if k != "ORIGINDATETIME_TR"}],
            "instance 0: missing the pick-up time",
        ),
    ],
)
def test_bad_records_are_user_errors_naming_instance_and_field(predictor, records, message):
    with pytest.raises(UserError) as err:
        predictor.predict_records(records)
    assert str(err.value).startswith(message), err.value


def _columns(**changes) -> dict:
    cols = as_columns(TRIPS)
    for name, value in changes.items():
        if value is None:
            del cols[name]
        else:
            cols[name] = value
    return cols


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({}, "no inputs; expected one per field: ORIGIN_BLOCK_LATITUDE, "),
        (_columns(fare=[1, 2, 3], zzz=[1, 2, 3]), "unknown input(s) fare, zzz; expected one per field"),
        (_columns(ORIGIN_BLOCK_LONGITUDE=None), "missing input ORIGIN_BLOCK_LONGITUDE (or origin_lon)"),
        (_columns(ORIGINDATETIME_TR=None), "missing input ORIGINDATETIME_TR (or pickup_datetime)"),
        (
            _columns(origin_lat=[1.0, 2.0, 3.0]),
            "inputs ORIGIN_BLOCK_LATITUDE and origin_lat name the same field",
        ),
        (
            _columns(DESTINATION_BLOCK_LATITUDE=[38.9, 38.9]),
            "inputs differ in length (ORIGIN_BLOCK_LATITUDE has 3, ORIGIN_BLOCK_LONGITUDE has 3, "
            "DESTINATION_BLOCK_LATITUDE has 2,",
        ),
        ({k: [] for k in TRIPS[0]}, "inputs are empty"),
        (
            _columns(ORIGIN_BLOCK_LATITUDE=np.zeros((3, 1))),
            "input ORIGIN_BLOCK_LATITUDE: expected a 1-D tensor",
        ),
        (_columns(ORIGIN_BLOCK_LATITUDE=38.9), "input ORIGIN_BLOCK_LATITUDE: expected a list"),
        (
            _columns(ORIGINDATETIME_TR=[b"03/14/2018 08:00", b"31/12/2018 08:00", b"x"]),
            "instance 1: field ORIGINDATETIME_TR: expected MM/DD/YYYY HH:MM (month first), got '31/12/2018 08:00'",
        ),
        (
            _columns(ORIGINDATETIME_TR=[b"03/14/2018 08:00", b"\xff", b"x"]),
            "instance 1: field ORIGINDATETIME_TR: expected UTF-8 text",
        ),
        (_columns(ORIGIN_BLOCK_LONGITUDE=[-77.0, "west", -77.0]), "instance 1: field ORIGIN_BLOCK_LONGITUDE"),
        (
            _columns(DESTINATION_BLOCK_LATITUDE=[38.9, 38.9, float("nan")]),
            "instance 2: field DESTINATION_BLOCK_LATITUDE: expected a finite",
        ),
    ],
)
def test_bad_columns_are_user_errors_naming_the_input(predictor, columns, message):
    with pytest.raises(UserError) as err:
        predictor.predict_columns(columns)
    assert str(err.value).startswith(message)


# --- loading -------------------------------------------------------------------------------


def test_load_refuses_a_missing_directory(tmp_path):
    with pytest.raises(UserError, match=f"^{tmp_path / 'nope'}: no such model directory$"):
        FarePredictor.load(tmp_path / "nope")


def test_load_refuses_a_directory_without_a_model(tmp_path):
    with pytest.raises(UserError, match=r"model\.json: missing \(expected a fareflow model directory"):
        FarePredictor.load(tmp_path)


def test_load_from_s3_copies_the_model_and_answers_the_same(s3, model_dir, predictor):
    bucket = s3.bucket("models")
    for name in ("model.json", "model.pt", "model.npz"):
        s3.put(bucket, f"taxi/v1/{name}", model_dir / name)
    remote = FarePredictor.load("s3://models/taxi/v1")
    assert remote.source == "s3://models/taxi/v1"
    assert remote.predict_records(TRIPS) == predictor.predict_records(TRIPS)
    # a model written before model.npz existed is served with torch: the same fares to float32
    for name in ("model.json", "model.pt"):
        s3.put(bucket, f"taxi/old/{name}", model_dir / name)
    old = FarePredictor.load("s3://models/taxi/old")
    assert not isinstance(old.model.module, ArrayMLP) and isinstance(predictor.model.module, ArrayMLP)
    assert old.predict_records(TRIPS) == pytest.approx(predictor.predict_records(TRIPS), rel=1e-5)
    with pytest.raises(UserError, match=r"^s3://models/taxi/v2/model\.json: missing"):
        FarePredictor.load("s3://models/taxi/v2")


def test_load_from_s3_sweeps_a_killed_servers_copy(s3, model_dir, dead_scratch):
    """An s3:// model is copied to a scratch directory to load: one a killed model server left
    goes with the next load, and none is left once the weights are in memory."""
    from components.common.model_dir import MODEL_SCRATCH

    bucket = s3.bucket("models")
    for name in ("model.json", "model.pt", "model.npz"):
        s3.put(bucket, f"taxi/v1/{name}", model_dir / name)
    left = dead_scratch(MODEL_SCRATCH)
    FarePredictor.load("s3://models/taxi/v1")
    assert not left.exists()
    assert list(left.parent.glob(f"{MODEL_SCRATCH}-*")) == []


def test_requests_over_the_row_cap_are_user_errors(predictor, monkeypatch):
    from components.serve import fields

    monkeypatch.setattr(fields, "MAX_ROWS", 2)
    trip = {
        "ORIGIN_BLOCK_LATITUDE": 38.9,
        "ORIGIN_BLOCK_LONGITUDE": -77.03,
        "DESTINATION_BLOCK_LATITUDE": 38.91,
        "DESTINATION_BLOCK_LONGITUDE": -77.0,
        "ORIGINDATETIME_TR": "03/14/2016 08:00",
    }
    assert len(predictor.predict_records([trip, trip])) == 2
    with pytest.raises(UserError, match="3 trips in one request; at most 2"):
        predictor.predict_records([trip] * 3)
    with pytest.raises(UserError, match="3 trips in one request"):
        predictor.predict_columns({k: [v] * 3 for k, v in trip.items()})


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, 2),  # limit 1.5 CPUs -> 2 threads
        ({"cpu.max": "100000 100000\n"}, 1),
        ({"cpu.max": "max 100000\n"}, None),  # no limit
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_cpu_quota_reads_the_container_limit(tmp_path, files, expected):
    from components.common.cpu import cpu_quota

    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert cpu_quota(tmp_path) == expected


def test_cpu_threads_share_the_quota_between_processes(monkeypatch):
    from components.common import cpu

    monkeypatch.setattr(cpu, "cpu_quota", lambda: 4)
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 32)
    assert (cpu.cpu_threads(), cpu.cpu_threads(2), cpu.cpu_threads(8)) == (4, 2, 1)
    monkeypatch.setattr(cpu, "cpu_quota", lambda: None)  # no limit: the machine's cores
    assert cpu.cpu_threads(4) == 8


def test_a_directory_without_model_npz_needs_torch_and_says_so(model_dir, tmp_path, monkeypatch):
    import importlib.util
    import shutil

    from components.serve import core

    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    (old / "model.npz").unlink()
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(
        UserError, match=r"old/model\.npz: missing -- a model directory written before model\.npz"
    ):
        core.FarePredictor.load(old)
