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


def columns_from_records(records: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """Feature columns of request records (raw or clean column names; see module docstring).

    Raises ``UserError`` naming the instance and field for anything missing or malformed."""
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
