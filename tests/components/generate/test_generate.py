"""Generator fidelity: the files look like the real DC taxi files and truth.json tells the truth.

One small data set (40k rows over two months) is generated once per module; the tests
read it back with plain pandas (all columns as text) and check it independently of the
generator's own code.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.common import contract, features
from components.common.errors import UserError
from components.generate import core, month, parameters
from components.generate.__main__ import main

ROWS = 40_000
MONTHS = "2015-01:2015-02"
SEED = 7
MONEY_RE = re.compile(r"-?\d+\.\d{2}")
TIMESTAMP_RE = re.compile(r"(\d{2})/(\d{2})/(\d{4}) (\d{2}):00")
COORD_RE = re.compile(r"-?\d{2}\.\d{4}")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    result = core.run(core.GenerateConfig(output_uri=str(out), rows=ROWS, months=MONTHS, seed=SEED))
    yield out, result


@pytest.fixture(scope="module")
def frame(generated) -> pd.DataFrame:
    """All rows of all files, every field as the raw text."""
    out, _ = generated
    parts = []
    for path in sorted(out.glob("taxi_*.txt")):
        df = pd.read_csv(path, sep="|", dtype=str, keep_default_na=False, na_filter=False)
        df["_month"] = int(path.stem[-2:])
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def _is_null(s: pd.Series) -> pd.Series:
    return s == contract.NULL_TOKEN


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s.where(~_is_null(s)), errors="raise")


# --- format ------------------------------------------------------------------------------------


def test_files_header_and_field_count(generated):
    out, result = generated
    assert sorted(p.name for p in result.files) == ["taxi_2015_01.txt", "taxi_2015_02.txt"]
    assert all(re.fullmatch(contract.MONTH_FILE_PATTERN, p.name) for p in result.files)
    assert not list(out.glob(".*partial"))
    total = 0
    for path in result.files:
        raw = path.read_bytes()
        assert b"\r" not in raw and raw.endswith(b"\n")
        lines = raw.decode("utf-8").splitlines()
        assert lines[0] == contract.HEADER_LINE
        assert lines[0].split("|") == list(contract.RAW_COLUMNS)
        fields = [line.split("|") for line in lines[1:]]
        assert {len(f) for f in fields} == {27}
        assert all(all(v != "" for v in f) for f in fields[:5000]), "missing values must be the literal NULL"
        total += len(lines) - 1
    assert total == ROWS == result.rows


def test_rows_split_by_days_in_month(generated):
    _, result = generated
    rows = [f["rows"] for f in result.truth["files"]]
    assert sum(rows) == ROWS
    assert rows[0] > rows[1]  # January has 31 days, February 28
    assert abs(rows[0] / ROWS - 31 / 59) < 0.001


def test_timestamps_month_first_rounded_to_the_hour(frame):
    for col in contract.TIMESTAMP_COLUMNS:
        values = frame.loc[~_is_null(frame[col]), col]
        assert values.str.fullmatch(TIMESTAMP_RE).all(), values[~values.str.fullmatch(TIMESTAMP_RE)].head()
    origin = frame.loc[~_is_null(frame.ORIGINDATETIME_TR)]
    parts = origin.ORIGINDATETIME_TR.str.extract(TIMESTAMP_RE).astype(int)
    month, day, year, hour = parts[0], parts[1], parts[2], parts[3]
    assert (month == origin._month).all()  # the first field is the month of the file
    assert (year == 2015).all() and hour.between(0, 23).all()
    assert (day > 12).any()  # so a day-first parser cannot read it
    assert set(hour) == set(range(24))
    both = frame.loc[~_is_null(frame.ORIGINDATETIME_TR) & ~_is_null(frame.DESTINATIONDATETIME_TR)]
    pickup = pd.to_datetime(both.ORIGINDATETIME_TR, format="%m/%d/%Y %H:%M")
    dropoff = pd.to_datetime(both.DESTINATIONDATETIME_TR, format="%m/%d/%Y %H:%M")
    assert (dropoff >= pickup).all()
    assert ((dropoff - pickup) <= pd.Timedelta(hours=6)).mean() > 0.999


def test_money_columns_two_decimals_and_total_is_the_sum(frame):
    for col in contract.MONEY_COLUMNS + ("MILEAGE",):
        values = frame.loc[~_is_null(frame[col]), col]
        assert values.str.fullmatch(MONEY_RE).all(), (col, values[~values.str.fullmatch(MONEY_RE)].head())
    has_fare = ~_is_null(frame.FAREAMOUNT)
    cents = {c: (_num(frame.loc[has_fare, c]) * 100).round().astype("int64") for c in contract.MONEY_COLUMNS}
    parts = sum(cents[c] for c in contract.MONEY_COLUMNS if c != "TOTALAMOUNT")
    assert (parts == cents["TOTALAMOUNT"]).all()
    assert (_is_null(frame.TOTALAMOUNT) == ~has_fare).all()
    assert (_num(frame.SURCHARGEAMOUNT) == 0.25).all()
    card = frame.PAYMENTTYPE == "2"
    assert (_num(frame.loc[~card, "GRATUITYAMOUNT"]) == 0).all()
    assert (_num(frame.loc[card, "GRATUITYAMOUNT"]) > 0).mean() > 0.7


def test_other_columns_are_realistic(frame):
    assert set(frame.TRIPTYPE) == {"1", "2"}
    assert set(frame.PAYMENTTYPE) <= {"1", "2", "3", "4", "5"}
    assert frame.PROVIDERNAME.nunique() >= 5
    assert set(frame.AIRPORT) == {"Y", "N"}
    assert 0.005 < (frame.AIRPORT == "Y").mean() < 0.15
    assert (frame.ORIGINSTATE == "DC").mean() > 0.8
    assert frame.ORIGINZIP.str.fullmatch(r"\d{5}").all()
    named = frame.ORIGIN_BLOCKNAME[~_is_null(frame.ORIGIN_BLOCKNAME)]
    assert named.str.contains(" BLOCK OF ").mean() > 0.9
    assert (_is_null(frame.ORIGIN_BLOCKNAME) == _is_null(frame.ORIGIN_BLOCK_LATITUDE)).all()
    dur = _num(frame.DURATION).dropna()
    assert (dur >= 1).all() and 8 < dur.median() < 30
    miles = _num(frame.MILEAGE).dropna()
    assert (miles >= 0).all() and 1 < miles.median() < 4


def test_coordinates_snapped_to_blocks_inside_the_extent(frame):
    for col in contract.COORDINATE_COLUMNS:
        values = frame.loc[~_is_null(frame[col]), col]
        assert values.str.fullmatch(COORD_RE).all()
        x = values.astype(float)
        lo, hi = contract.DC_LAT_RANGE if "LATITUDE" in col else contract.DC_LON_RANGE
        assert x.between(lo, hi).all()
        step = 0.0022 if "LATITUDE" in col else 0.0029
        k = (x - lo) / step
        assert np.allclose(k, k.round(), atol=1e-6), "not on the ~250 m block grid"
        # Blocks are ~250 m apart: neighbouring distinct values differ by whole steps.
        gaps = np.diff(np.sort(x.unique()))
        assert gaps.min() >= step - 1e-9
        assert x.nunique() > 30


# --- defects -----------------------------------------------------------------------------------


def test_defect_rates_as_observed(frame, generated):
    _, result = generated
    n = len(frame)
    o_missing = _is_null(frame.ORIGIN_BLOCK_LATITUDE)
    d_missing = _is_null(frame.DESTINATION_BLOCK_LATITUDE)
    assert (o_missing == _is_null(frame.ORIGIN_BLOCK_LONGITUDE)).all()
    assert (d_missing == _is_null(frame.DESTINATION_BLOCK_LONGITUDE)).all()
    fare = _num(frame.FAREAMOUNT)
    rates = {
        "origin_timestamp_missing": (_is_null(frame.ORIGINDATETIME_TR).mean(), 0.21, 0.01),
        "origin_coords_missing": (o_missing.mean(), 0.140, 0.008),
        "destination_coords_missing": (d_missing.mean(), 0.194, 0.008),
        "either_coords_missing": ((o_missing | d_missing).mean(), 0.246, 0.008),
        "fare_null": (fare.isna().mean(), 0.005, 0.0015),
        "fare_below_min": ((fare < 3.25).mean(), 0.0049, 0.0015),
    }
    for name, (got, want, tol) in rates.items():
        assert abs(got - want) <= tol, f"{name}: {got:.4f} vs {want}"
        assert result.truth["defects"][name] == round(got * n), name
    assert (fare < 0).sum() > 0
    assert (fare > 180).sum() > 0
    duplicates = frame.drop(columns="_month").duplicated().sum()
    assert duplicates == result.truth["defects"]["duplicates"]
    assert abs(duplicates / n - 0.002) < 0.001
    # Duplicates repeat the whole line, OBJECTID included; otherwise OBJECTIDs are unique.
    assert frame.OBJECTID.duplicated().sum() == duplicates


def test_absurd_fares_reach_the_observed_magnitude(tmp_path):
    result = core.run(core.GenerateConfig(output_uri=str(tmp_path), rows=300_000, months="2016-07", seed=1))
    assert result.truth["fare_max"] > 10_000
    assert result.truth["fare_min"] < -100
    assert result.truth["fare_max"] <= parameters.FARE_MAX_OBSERVED


# --- determinism and zip ---------------------------------------------------------------------


def _truth_without_out(path: Path) -> dict:
    truth = json.loads(path.read_text())
    truth["config"].pop("output_uri")
    return truth


def test_same_seed_same_bytes_other_seed_different(generated, tmp_path):
    out, _ = generated
    again = core.run(
        core.GenerateConfig(output_uri=str(tmp_path / "again"), rows=ROWS, months=MONTHS, seed=SEED)
    )
    for path in again.files:
        assert path.read_bytes() == (out / path.name).read_bytes()
    assert _truth_without_out(tmp_path / "again" / parameters.TRUTH_FILE) == _truth_without_out(
        out / parameters.TRUTH_FILE
    )
    other = core.run(
        core.GenerateConfig(output_uri=str(tmp_path / "other"), rows=ROWS, months=MONTHS, seed=SEED + 1)
    )
    for path in other.files:
        assert path.read_bytes() != (out / path.name).read_bytes()
        assert path.read_bytes().splitlines()[0] == contract.HEADER_LINE.encode()


def test_zip_mode_members_equal_txt_mode(generated, tmp_path):
    out, _ = generated
    result = core.run(
        core.GenerateConfig(output_uri=str(tmp_path), rows=ROWS, months=MONTHS, seed=SEED, zip=True)
    )
    assert [p.name for p in result.files] == ["taxi_2015.zip"]
    assert not list(tmp_path.glob("*.txt"))
    with zipfile.ZipFile(result.files[0]) as archive:
        assert archive.namelist() == ["taxi_2015_01.txt", "taxi_2015_02.txt"]
        for name in archive.namelist():
            assert archive.read(name) == (out / name).read_bytes()
    again = core.run(
        core.GenerateConfig(output_uri=str(tmp_path / "again"), rows=ROWS, months=MONTHS, seed=SEED, zip=True)
    )
    assert again.files[0].read_bytes() == result.files[0].read_bytes()


def test_zip_mode_one_archive_per_year(tmp_path):
    config = core.GenerateConfig(
        output_uri=str(tmp_path / "zip"), rows=3000, months="2015-11:2016-02", zip=True
    )
    result = core.run(config)
    txt = core.run(
        core.GenerateConfig(**{**asdict(config), "output_uri": str(tmp_path / "txt"), "zip": False})
    )
    assert [p.name for p in result.files] == ["taxi_2015.zip", "taxi_2016.zip"]
    members = {}
    for path in result.files:
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None  # every member's CRC checks
            for info in archive.infolist():
                assert info.compress_type == zipfile.ZIP_DEFLATED and info.compress_size < info.file_size
                members[f"{path.name}!{info.filename}"] = archive.read(info)
    assert list(members) == [
        "taxi_2015.zip!taxi_2015_11.txt", "taxi_2015.zip!taxi_2015_12.txt",
        "taxi_2016.zip!taxi_2016_01.txt", "taxi_2016.zip!taxi_2016_02.txt",
    ]  # fmt: skip
    # each member is the .txt file the same config writes, and truth.json counts its rows
    assert [members[name] for name in members] == [p.read_bytes() for p in txt.files]
    assert result.truth["files"] == [
        {"file": name, "rows": data.count(b"\n") - 1} for name, data in members.items()
    ]
    assert sum(f["rows"] for f in result.truth["files"]) == 3000


def test_chunks_join_seamlessly(tmp_path, monkeypatch):
    chunk = 3_000
    monkeypatch.setattr(month, "CHUNK_ROWS", chunk)
    result = core.run(core.GenerateConfig(output_uri=str(tmp_path), rows=10_000, months="2015-05", seed=3))
    text = result.files[0].read_bytes()
    assert text.endswith(b"\n")
    lines = text.decode().splitlines()
    assert (
        len(lines) == 10_001 and lines.count(contract.HEADER_LINE) == 1 and lines[0] == contract.HEADER_LINE
    )
    assert {line.count("|") for line in lines} == {len(contract.RAW_COLUMNS) - 1}  # no row cut at a seam
    ids = [int(line.split("|", 1)[0]) for line in lines[1:]]
    # Chunk k's trips take the ids right after chunk k-1's (duplicates repeat an id of their own
    # chunk), so the ids of the whole file run 1..N without a gap or a restart.
    first = 1
    for start in range(0, len(ids), chunk):
        own = sorted(set(ids[start : start + chunk]))
        assert own == list(range(first, first + len(own)))
        first += len(own)
    assert first - 1 == len(set(ids)) > 0.95 * len(ids)
    by_id: dict[int, set[str]] = {}
    for line, objectid in zip(lines[1:], ids, strict=True):
        by_id.setdefault(objectid, set()).add(line)
    assert all(len(copies) == 1 for copies in by_id.values())  # a duplicate is the whole line again


# --- truth.json ---------------------------------------------------------------------------------


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    """The quality step's definition of clean, applied to the raw text."""
    df = frame.drop(columns="_month").drop_duplicates()
    needed = ["FAREAMOUNT", "ORIGINDATETIME_TR", *contract.COORDINATE_COLUMNS]
    df = df[~df[needed].eq(contract.NULL_TOKEN).any(axis=1)]
    fare = df.FAREAMOUNT.astype(float)
    return df[fare.between(*contract.FARE_RANGE)]


def _features(df: pd.DataFrame, model: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Straight-line miles (haversine), pick-up weekday (Monday=0) and hour."""
    assert model["earth_radius_km"] == features.EARTH_RADIUS_KM  # the radius haversine_km uses
    straight = (
        features.haversine_km(*(df[c].astype(float) for c in contract.COORDINATE_COLUMNS))
        / model["km_per_mile"]
    )
    when = pd.to_datetime(df.ORIGINDATETIME_TR, format="%m/%d/%Y %H:%M")
    return straight, when.dt.day_of_week.to_numpy(), when.dt.hour.to_numpy()


def _expected_fare(df: pd.DataFrame, model: dict, *, ignore_traffic: bool = False) -> np.ndarray:
    """E[fare | origin, destination, pick-up time], re-derived from truth.json's parameters."""
    straight, weekday, hour = _features(df, model)
    per_hour = np.array(model["wait_ratio"]) / np.array(model["speed_mph"])
    if ignore_traffic:
        per_hour = np.full_like(per_hour, per_hour.mean())
    rate = np.mean(model["waiting_rate_per_hour"])
    per_mile = model["per_mile"] + rate * per_hour[weekday, hour]
    return model["flag_drop"] + per_mile * (straight * model["detour_mean"] + model["extra_miles_mean"])


def test_truth_json_present_and_consistent(generated, frame):
    out, result = generated
    truth = json.loads((out / parameters.TRUTH_FILE).read_text())
    assert truth == result.truth
    assert (
        truth["rows"] == ROWS
        and truth["config"]["seed"] == SEED
        and truth["months"] == ["2015-01", "2015-02"]
    )
    clean = _clean(frame)
    fare = clean.FAREAMOUNT.astype(float)
    assert truth["clean"]["rows"] == len(clean)
    assert truth["clean"]["fare_mean"] == pytest.approx(fare.mean(), abs=1e-4)
    assert truth["clean"]["fare_std"] == pytest.approx(fare.std(ddof=0), abs=1e-4)
    # Calibrated to the real data: mean ~9.74, std ~4.54.
    assert 9.2 < fare.mean() < 10.2
    assert 4.0 < fare.std() < 5.1
    assert 0 < truth["best_rmse"] < truth["clean"]["fare_std"]
    for key in ("flag_drop", "per_mile", "detour_mean", "speed_mph", "wait_ratio", "defect_rates", "grid"):
        assert key in truth["model"]
    assert truth["model"]["detour_mean"] > 1


def test_best_rmse_is_reproduced_by_the_true_conditional_mean(generated, frame):
    _, result = generated
    truth = result.truth
    clean = _clean(frame)
    fare = clean.FAREAMOUNT.astype(float).to_numpy()
    best = np.sqrt(np.mean((fare - _expected_fare(clean, truth["model"])) ** 2))
    assert best == pytest.approx(truth["best_rmse"], rel=1e-3)
    # Leaving out what the model says matters makes the error worse: it is the best there is.
    no_traffic = np.sqrt(np.mean((fare - _expected_fare(clean, truth["model"], ignore_traffic=True)) ** 2))
    assert no_traffic > best * 1.01
    assert np.sqrt(np.mean((fare - fare.mean()) ** 2)) > best * 1.5
    # A flexible fit of the same features, in-sample, does no better.
    straight, weekday, hour = _features(clean, truth["model"])
    per_hour = (np.array(truth["model"]["wait_ratio"]) / np.array(truth["model"]["speed_mph"]))[weekday, hour]
    X = np.column_stack([np.ones_like(straight), straight, straight**2, straight * per_hour, per_hour])
    coef, *_ = np.linalg.lstsq(X, fare, rcond=None)
    assert np.sqrt(np.mean((fare - X @ coef) ** 2)) > best * 0.99


# --- config and CLI ----------------------------------------------------------------------------


def test_parse_months():
    assert core.parse_months("2015-03") == [(2015, 3)]
    assert core.parse_months("2015-11:2016-02") == [(2015, 11), (2015, 12), (2016, 1), (2016, 2)]
    assert len(core.parse_months("2015-01:2019-06")) == 54
    for bad in ("garbage", "2015-13", "2015-1", "2015-06:2015-01", "2015-01:2015-02:2015-03", ""):
        with pytest.raises(UserError, match="--months"):
            core.parse_months(bad)


def test_bad_config_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--rows"):
        core.run(core.GenerateConfig(output_uri=str(tmp_path), rows=0))
    with pytest.raises(UserError, match="at least one row per month"):
        core.run(core.GenerateConfig(output_uri=str(tmp_path), rows=3, months="2015-01:2015-06"))
    with pytest.raises(UserError, match="--seed"):
        core.run(core.GenerateConfig(output_uri=str(tmp_path), rows=10, seed=-1))
    assert not list(tmp_path.iterdir())


def test_cli_writes_files_and_prints_one_line(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--rows", "2000", "--months", "2015-02", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "2,000 rows" in out and "best RMSE" in out
    assert (tmp_path / "taxi_2015_02.txt").exists() and (tmp_path / parameters.TRUTH_FILE).exists()
    assert json.loads((tmp_path / parameters.TRUTH_FILE).read_text())["config"]["seed"] == 5


def test_cli_bad_months_exits_2_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "components.generate", "--out", str(tmp_path / "o"), "--months", "garbage"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--months 'garbage'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_tiny_run_writes_strict_json(tmp_path):
    result = core.run(core.GenerateConfig(output_uri=str(tmp_path), rows=1, months="2015-01"))
    assert len((tmp_path / "taxi_2015_01.txt").read_text().splitlines()) == 2
    text = (tmp_path / parameters.TRUTH_FILE).read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert result.truth["rows"] == 1


def test_out_with_other_taxi_files_is_refused(tmp_path):
    core.run(core.GenerateConfig(output_uri=str(tmp_path), rows=200, months="2015-01:2015-02"))
    before = sorted(p.name for p in tmp_path.iterdir())
    # Same file set again: exactly overwritten, allowed.
    core.run(core.GenerateConfig(output_uri=str(tmp_path), rows=300, months="2015-01:2015-02"))
    # --zip next to the .txt files: ingest would read every month twice.
    with pytest.raises(UserError, match="taxi_2015_01.txt") as err:
        core.run(core.GenerateConfig(output_uri=str(tmp_path), rows=200, months="2015-01:2015-02", zip=True))
    assert "\n" not in str(err.value)
    # A narrower month range leaves taxi_2015_02.txt behind: refused too.
    with pytest.raises(UserError, match="taxi_2015_02.txt"):
        core.run(core.GenerateConfig(output_uri=str(tmp_path), rows=200, months="2015-01"))
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert json.loads((tmp_path / parameters.TRUTH_FILE).read_text())["rows"] == 300


def test_zip_out_then_txt_run_is_refused(tmp_path):
    core.run(core.GenerateConfig(output_uri=str(tmp_path), rows=200, months="2015-01", zip=True))
    with pytest.raises(UserError, match="taxi_2015.zip"):
        core.run(core.GenerateConfig(output_uri=str(tmp_path), rows=200, months="2015-01"))


def test_output_is_staged_with_a_generate_marker_and_foreign_data_is_refused(tmp_path):
    out = tmp_path / "g"
    result = core.run(core.GenerateConfig(output_uri=str(out), rows=200, months="2015-01:2015-02"))
    marker = json.loads((out / "_SUCCESS").read_text())
    assert marker["step"] == "generate" and marker["rows"] == 200 == result.truth["rows"]
    assert marker["files"] == result.truth["files"]
    assert [p.name for p in tmp_path.iterdir()] == ["g"]  # no staging directory left
    assert result.files == [out / "taxi_2015_01.txt", out / "taxi_2015_02.txt"]
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not an earlier output of the generate step") as err:
        core.run(core.GenerateConfig(output_uri=str(home), rows=200, months="2015-01"))
    assert "thesis.tex" in str(err.value) and "\n" not in str(err.value)
    assert [p.name for p in home.iterdir()] == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g", "home"]


def test_failed_run_leaves_the_earlier_output_as_it_was(tmp_path, monkeypatch):
    out = tmp_path / "g"
    core.run(core.GenerateConfig(output_uri=str(out), rows=200, months="2015-01"))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(core, "_truth", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        core.run(core.GenerateConfig(output_uri=str(out), rows=300, months="2015-01", seed=1))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["g"]
