"""Model inputs: the one place that turns trip fields into the feature matrix.

Training (``components.train``) and serving (``components.serve``) both call
:func:`encode` with a :class:`FeatureSpec` saved beside the model, so the two cannot
drift apart (no train/serve skew).

Two ways in, one way out:

- clean rows (``contract.CLEAN_SCHEMA``, the sample splits): :func:`columns_from_table`;
- a rider's request (raw column names, ``MM/DD/YYYY HH:MM`` pick-up time, as in
  ``manifests/scripts/check_inference.py``): :func:`columns_from_records`, which derives
  year/month/weekday/hour and the great-circle distance exactly as the quality step does.

:func:`encode` standardises the continuous columns with the training split's mean/std
(``FeatureSpec.fit``) and writes month, weekday and hour as points on a circle (sin, cos),
so December sits next to January and 23:00 next to midnight.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np

from . import contract
from .errors import UserError

# IUGG mean Earth radius: the one constant (also in quality's SQL distance and the generator)
EARTH_RADIUS_KM = 6371.0088
CONTINUOUS: tuple[str, ...] = ("origin_lat", "origin_lon", "dest_lat", "dest_lon", "distance_km", "year")
CYCLIC: dict[str, int] = {"month": 12, "weekday": 7, "hour": 24}  # column -> period
FEATURE_NAMES: tuple[str, ...] = CONTINUOUS + tuple(f"{c}_{f}" for c in CYCLIC for f in ("sin", "cos"))

# A request names the trip with the raw file's columns (what a dispatcher system holds).
REQUEST_FIELDS: dict[str, str] = {
    "ORIGIN_BLOCK_LATITUDE": "origin_lat",
    "ORIGIN_BLOCK_LONGITUDE": "origin_lon",
    "DESTINATION_BLOCK_LATITUDE": "dest_lat",
    "DESTINATION_BLOCK_LONGITUDE": "dest_lon",
}
REQUEST_TIME = "ORIGINDATETIME_TR"


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in km; the one implementation (the generator's straight-line miles
    use it; the quality step's ``distance_km`` is its SQL form, ``components.quality.sql``)."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (lat1, lon1, lat2, lon2))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(h))


@dataclass(frozen=True)
class FeatureSpec:
    """Mean and std of each continuous column on the training split (std 0 -> 1)."""

    mean: dict[str, float]
    std: dict[str, float]
    version: int = 1

    @classmethod
    def fit(cls, columns: Mapping[str, np.ndarray]) -> FeatureSpec:
        mean, std = {}, {}
        for name in CONTINUOUS:
            values = np.asarray(columns[name], dtype=np.float64)
            if values.size == 0:
                raise UserError("cannot fit feature statistics on an empty training split")
            mean[name] = float(values.mean())
            s = float(values.std())
            std[name] = s if s > 0 and math.isfinite(s) else 1.0
        return cls(mean=mean, std=std)

    def to_json(self) -> str:
        return json.dumps({"feature_names": list(FEATURE_NAMES), **asdict(self)}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        data = json.loads(text)
        if data.get("version") != 1 or list(data.get("feature_names", [])) != list(FEATURE_NAMES):
            raise UserError(
                f"feature spec: expected version 1 with features {list(FEATURE_NAMES)}, "
                f"got version {data.get('version')} with {data.get('feature_names')}"
            )
        return cls(
            mean={k: float(v) for k, v in data["mean"].items()},
            std={k: float(v) for k, v in data["std"].items()},
        )


def encode(columns: Mapping[str, np.ndarray], spec: FeatureSpec) -> np.ndarray:
    """The model's input matrix, float32 ``[rows, len(FEATURE_NAMES)]``."""
    out = []
    for name in CONTINUOUS:
        out.append((np.asarray(columns[name], dtype=np.float64) - spec.mean[name]) / spec.std[name])
    for name, period in CYCLIC.items():
        angle = 2 * np.pi * np.asarray(columns[name], dtype=np.float64) / period
        out.extend((np.sin(angle), np.cos(angle)))
    return (
        np.stack(out, axis=1).astype(np.float32)
        if out[0].size
        else np.zeros((0, len(FEATURE_NAMES)), np.float32)
    )


def columns_from_table(table) -> dict[str, np.ndarray]:
    """Feature columns of clean rows (a ``pyarrow.Table`` with ``contract.FEATURES``)."""
    missing = [c for c in contract.FEATURES if c not in table.column_names]
    if missing:
        raise UserError(f"clean rows lack feature column(s) {missing} (expected contract.CLEAN_SCHEMA)")
    return {c: table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in contract.FEATURES}


def _number(record: Mapping, key: str, index: int) -> float:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UserError(f"instance {index}: field {key}: expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"instance {index}: field {key}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise UserError(f"instance {index}: field {key}: expected a finite number, got {value!r}")
    return number


def _pickup(record: Mapping, index: int) -> datetime:
    if REQUEST_TIME in record:
        text = record[REQUEST_TIME]
        try:
            return datetime.strptime(str(text), contract.TIMESTAMP_FORMAT)
        except ValueError:
            raise UserError(
                f"instance {index}: field {REQUEST_TIME}: expected MM/DD/YYYY HH:MM (month first), got {text!r}"
            ) from None
    if contract.PICKUP in record:
        text = record[contract.PICKUP]
        try:
            when = datetime.fromisoformat(str(text))
        except ValueError:
            raise UserError(
                f"instance {index}: field {contract.PICKUP}: expected an ISO date-time, got {text!r}"
            ) from None
        if when.tzinfo is not None:  # the trip files hold DC local times without an offset
            raise UserError(
                f"instance {index}: field {contract.PICKUP}: expected DC local time without a UTC offset, "
                f"got {text!r}"
            )
        return when
    raise UserError(f"instance {index}: missing the pick-up time ({REQUEST_TIME} or {contract.PICKUP})")


# The pick-up time as the trip files write it, ``MM/DD/YYYY HH:MM`` (``contract.TIMESTAMP_FORMAT``),
# read without ``datetime.strptime`` (about 6 us a text): text by text for a few, else as one
# byte array (the byte positions of its digits and separators below).
_VECTOR_TIMES = contract.TIMESTAMP_FORMAT == "%m/%d/%Y %H:%M"
_TIME_TEXT = re.compile(r"(\d\d)/(\d\d)/(\d\d\d\d) (\d\d):(\d\d)", re.ASCII)
_TIME_WIDTH = 16
_TIME_DIGITS = np.array([0, 1, 3, 4, 6, 7, 8, 9, 11, 12, 14, 15])
_TIME_SEPARATORS = np.array([2, 5, 10, 13])
_TIME_SEPARATOR_BYTES = np.frombuffer(b"// :", dtype=np.uint8)
# digits @ _TIME_PLACES -> month, day, year, hour, minute (float64: BLAS, exact for these integers)
_TIME_PLACES = np.zeros((len(_TIME_DIGITS), 5))
_TIME_PLACES[[0, 1], 0] = _TIME_PLACES[[2, 3], 1] = _TIME_PLACES[[8, 9], 3] = _TIME_PLACES[[10, 11], 4] = (
    10,
    1,
)
_TIME_PLACES[[4, 5, 6, 7], 2] = (1000, 100, 10, 1)
_TIME_LOW = np.array([1, 1, 1, 0, 0])
_TIME_HIGH = np.array([12, 31, 9999, 23, 59])
_VECTOR_MIN_ROWS = 16  # fewer texts are read one by one (numpy's per-call cost dominates)


def _number_column(values: list) -> np.ndarray | None:
    """``values`` as float64 when every one is a finite ``float`` or ``int`` (not bool), else None."""
    if not all(type(v) is float or type(v) is int for v in values):
        return None
    try:
        if len(values) < _VECTOR_MIN_ROWS:  # a few: math.isfinite costs less than numpy's calls
            return np.array(values, dtype=np.float64) if all(map(math.isfinite, values)) else None
        column = np.array(values, dtype=np.float64)
    except OverflowError:  # an int beyond a double: the record-by-record path says so
        return None
    return column if np.isfinite(column).all() else None


def _time_columns(texts: list) -> dict[str, np.ndarray] | None:
    """year, month, weekday and hour of ``MM/DD/YYYY HH:MM`` texts; None unless every text is
    exactly that form and a real date-time (the record-by-record ``datetime.strptime`` then names
    the first bad one). Equal to what ``strptime`` gives for every text it accepts in this form."""
    if not _VECTOR_TIMES or not all(type(t) is str and len(t) == _TIME_WIDTH for t in texts):
        return None
    if len(texts) < _VECTOR_MIN_ROWS:
        year, month, weekday, hour = [], [], [], []
        for text in texts:
            found = _TIME_TEXT.fullmatch(text)
            if found is None:
                return None
            m, d, y, h, minute = found.groups()
            try:
                when = datetime(int(y), int(m), int(d), int(h), int(minute))
            except ValueError:
                return None
            year.append(when.year)
            month.append(when.month)
            weekday.append(when.weekday())
            hour.append(when.hour)
        return {
            "year": np.array(year, dtype=np.float64),
            "month": np.array(month, dtype=np.float64),
            "weekday": np.array(weekday, dtype=np.float64),
            "hour": np.array(hour, dtype=np.float64),
        }
    try:
        joined = "".join(texts).encode("ascii")
    except UnicodeEncodeError:
        return None
    chars = np.frombuffer(joined, dtype=np.uint8).reshape(len(texts), _TIME_WIDTH)
    digits = chars[:, _TIME_DIGITS] - np.uint8(ord("0"))  # a byte below "0" wraps past 9
    if digits.max() > 9 or (chars[:, _TIME_SEPARATORS] != _TIME_SEPARATOR_BYTES).any():
        return None
    values = digits.astype(np.float64) @ _TIME_PLACES  # month, day, year, hour, minute
    if ((values < _TIME_LOW) | (values > _TIME_HIGH)).any():
        return None
    values = values.astype(np.int64)
    month, day, year, hour = values[:, 0], values[:, 1], values[:, 2], values[:, 3]
    months = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    first = months.astype("datetime64[D]").astype(np.int64)  # days since 1970-01-01
    if (day > 28).any():
        days_in_month = (months + 1).astype("datetime64[D]").astype(np.int64) - first
        if (day > days_in_month).any():
            return None
    weekday = (first + day + 2) % 7  # day 1 of 1970-01 was a Thursday (3); Monday = 0
    return {
        "year": year.astype(np.float64),
        "month": month.astype(np.float64),
        "weekday": weekday.astype(np.float64),
        "hour": hour.astype(np.float64),
    }


def columns_from_fields(fields: Mapping[str, list]) -> dict[str, np.ndarray] | None:
    """Feature columns of trips given field by field (equally long lists under the raw request
    names, or the clean coordinate names), read column-wise -- or None when any value is not in
    the common form (a finite float or int; ``ORIGINDATETIME_TR`` as ``MM/DD/YYYY HH:MM``), so
    the caller goes record by record (:func:`columns_from_records`) for the message naming the
    instance and field. Where it returns columns they equal the record-by-record ones."""
    out: dict[str, np.ndarray] = {}
    for raw, clean in REQUEST_FIELDS.items():
        values = fields.get(raw, fields.get(clean))
        column = None if values is None else _number_column(values)
        if column is None:
            return None
        out[clean] = column
    texts = fields.get(REQUEST_TIME)
    times = None if texts is None else _time_columns(texts)
    if times is None:
        return None
    out.update(times)
    out["distance_km"] = haversine_km(out["origin_lat"], out["origin_lon"], out["dest_lat"], out["dest_lon"])
    return out


def _fields_of(records: Sequence) -> dict[str, list] | None:
    """The request fields of dict records, one list per field, when every record names each field
    the same way (the raw name, or the clean name and not the raw one); None otherwise."""
    if not all(type(r) is dict for r in records):
        return None
    fields: dict[str, list] = {}
    for raw, clean in (*REQUEST_FIELDS.items(), (REQUEST_TIME, None)):
        try:
            fields[raw] = [r[raw] for r in records]
            continue
        except KeyError:
            pass
        if clean is None or any(raw in r for r in records):
            return None
        try:
            fields[clean] = [r[clean] for r in records]
        except KeyError:
            return None
    return fields


def columns_from_records(records: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """Feature columns of request records (raw or clean column names; see module docstring).

    Raises ``UserError`` naming the instance and field for anything missing or malformed.
    Records in the common form (dicts naming each field alike, numbers, month-first times) are
    read column-wise (:func:`columns_from_fields`); any other batch record by record."""
    fields = _fields_of(records) if records else None
    fast = columns_from_fields(fields) if fields is not None else None
    if fast is not None:
        return fast
    return _columns_record_by_record(records)


def _columns_record_by_record(records: Sequence[Mapping]) -> dict[str, np.ndarray]:
    cols: dict[str, list[float]] = {c: [] for c in contract.FEATURES}
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise UserError(f"instance {i}: expected an object of trip fields, got {type(record).__name__}")
        for raw, clean in REQUEST_FIELDS.items():
            key = raw if raw in record else clean if clean in record else None
            if key is None:
                raise UserError(f"instance {i}: missing field {raw} (or {clean})")
            cols[clean].append(_number(record, key, i))
        when = _pickup(record, i)
        cols["year"].append(when.year)
        cols["month"].append(when.month)
        cols["weekday"].append(when.weekday())  # Monday = 0, as in the clean data
        cols["hour"].append(when.hour)
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items() if k != "distance_km"}
    arrays["distance_km"] = haversine_km(
        arrays["origin_lat"], arrays["origin_lon"], arrays["dest_lat"], arrays["dest_lon"]
    )
    return arrays
