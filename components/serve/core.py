"""Fare prediction for the model server, without KServe: load a model directory, turn trips into fares.

Two ways in, the same answers:

- :meth:`FarePredictor.predict_records` takes request records (the v1 protocol's
  ``instances``): objects with the raw column names (``ORIGIN_BLOCK_LATITUDE`` ...,
  ``ORIGINDATETIME_TR`` as ``MM/DD/YYYY HH:MM``) or the clean names (``origin_lat`` ...,
  ``pickup_datetime`` as ISO);
- :meth:`FarePredictor.predict_columns` takes one sequence per field (the v2 protocol's
  input tensors, by name); text may arrive as ``bytes`` (v2 BYTES) or ``str``.

Both go through ``components.common.features`` (the encoder training used), so there is no
train/serve skew, and both raise ``UserError`` naming the instance (row) and field.

A trip the model cannot price is refused, never clipped to a fare: its coordinates must lie in
the model's :class:`ServiceArea` (the training extent ``model.json`` records, plus a margin) and
its pick-up year within the training years plus a margin. Inside that domain the fare is
clipped to the model's ``fare_range`` (the data contract's [3.25, 180]: the flag drop is the
least any trip costs, and the quality step dropped every fare outside that range).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.common import contract, features, storage
from components.common.cpu import cpu_threads
from components.common.errors import UserError
from components.common.model_dir import ArrayMLP

# Input names a v2 request may use: the raw column names (what check_inference.py sends)
# and, like the records, the clean column names. Each field may be named only once.
FIELD_NAMES: dict[str, str] = {**features.REQUEST_FIELDS, features.REQUEST_TIME: contract.PICKUP}
CLEAN_TO_RAW: dict[str, str] = {clean: raw for raw, clean in FIELD_NAMES.items()}
ACCEPTED_NAMES: frozenset[str] = frozenset(FIELD_NAMES) | frozenset(FIELD_NAMES.values())
_RAW_NAMES: frozenset[str] = frozenset(FIELD_NAMES)
# Rows per forward pass: bounds memory for large requests; the MLP treats rows independently.
CHUNK_ROWS = 8192
_FEW_ROWS = 8  # up to this many trips, the domain is checked value by value (numpy costs more)
MAX_ROWS = 100_000  # trips per request: a bigger batch is a scoring job, not a request (HTTP 400)

# The service area's margin around the training extent: coordinates are snapped to city blocks
# (250 m), so a trip one block beyond the outermost trained one is still a DC trip.
DEFAULT_AREA_MARGIN_DEG = 0.01  # about 1.1 km of latitude, 0.9 km of longitude in DC
DEFAULT_YEAR_MARGIN = 1  # years before/after the training years the model still prices
# A model directory written before training recorded its extent: the data contract's observed
# extent of all DC trips (a model cannot have trained on more) and the years of the trip files.
CONTRACT_EXTENT: dict[str, tuple[float, float]] = {
    "lat": contract.DC_LAT_RANGE,
    "lon": contract.DC_LON_RANGE,
    "year": (2015.0, 2019.0),
}
_LAT_COLUMNS = ("origin_lat", "dest_lat")
_LON_COLUMNS = ("origin_lon", "dest_lon")


@dataclass(frozen=True)
class ServiceArea:
    """What the model can price: a latitude/longitude box and a range of pick-up years."""

    lat: tuple[float, float]
    lon: tuple[float, float]
    years: tuple[int, int]
    source: str  # where the extent came from, for the start-up log

    @classmethod
    def from_extent(
        cls,
        extent: Mapping[str, Sequence[float]],
        source: str,
        margin_deg: float = DEFAULT_AREA_MARGIN_DEG,
        year_margin: int = DEFAULT_YEAR_MARGIN,
    ) -> ServiceArea:
        if not (math.isfinite(margin_deg) and margin_deg >= 0):
            raise UserError(f"--area-margin-deg: expected a number >= 0, got {margin_deg}")
        if year_margin < 0:
            raise UserError(f"--year-margin: expected an integer >= 0, got {year_margin}")
        (la0, la1), (lo0, lo1), (y0, y1) = (extent[k] for k in ("lat", "lon", "year"))
        return cls(
            lat=(round(la0 - margin_deg, 6), round(la1 + margin_deg, 6)),
            lon=(round(lo0 - margin_deg, 6), round(lo1 + margin_deg, 6)),
            years=(int(y0) - year_margin, int(y1) + year_margin),
            source=source,
        )

    def describe(self) -> str:
        return (
            f"latitude {self.lat[0]} to {self.lat[1]}, longitude {self.lon[0]} to {self.lon[1]}, "
            f"pick-up years {self.years[0]} to {self.years[1]}"
        )


def _extent(meta: Mapping, meta_path: Path) -> tuple[dict[str, tuple[float, float]], str]:
    """The training extent ``model.json`` records (``extent``), or the contract's for older models."""
    if "extent" not in meta:
        return dict(CONTRACT_EXTENT), "the data contract (model.json has no training extent)"
    extent = meta["extent"]
    out = {}
    for key in ("lat", "lon", "year"):
        pair = extent.get(key) if isinstance(extent, Mapping) else None
        ok = (
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in pair)
            and pair[0] <= pair[1]
        )
        if not ok:
            raise UserError(
                f"{meta_path}: extent.{key}: expected [low, high] (finite numbers, low <= high), got {pair!r}"
            )
        out[key] = (float(pair[0]), float(pair[1]))
    return out, "the training extent in model.json"


def fetch_model_dir(uri: str, workdir: str | Path) -> Path:
    """A local directory holding the model files of ``uri``.

    A local path is returned as is. For ``s3://bucket/prefix`` the model files
    (model.json, model.pt, and model.npz where there is one) are copied into ``workdir`` (the AWS_* environment variables
    choose the endpoint and credentials, as everywhere in fareflow)."""
    from components.common import model_dir as fare_model

    if not storage.is_s3(uri):
        return Path(uri).expanduser()
    fs, root = storage.resolve_filesystem(uri)
    workdir = Path(workdir)
    for name in (fare_model.META_FILE, fare_model.WEIGHTS_FILE, fare_model.ARRAYS_FILE):
        source = f"{root}/{name}"
        try:
            with fs.open_input_stream(source) as src, open(workdir / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except FileNotFoundError:
            if name == fare_model.ARRAYS_FILE:  # a model written before model.npz: served with torch
                (workdir / name).unlink(missing_ok=True)
                continue
            raise UserError(
                f"{uri.rstrip('/')}/{name}: missing (expected a fareflow model directory with "
                f"{fare_model.META_FILE} and {fare_model.WEIGHTS_FILE})"
            ) from None
        except OSError as err:
            raise UserError(f"{uri.rstrip('/')}/{name}: cannot read: {' '.join(str(err).split())}") from None
    return workdir


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_model_dir(path: Path):
    """``components.common.model_dir.load`` with every way a directory can be unusable as one ``UserError``:
    model.json unreadable, of another format or version, or without its keys; the weights
    (model.npz, else model.pt for a directory written before model.npz) corrupt, not the
    architecture model.json describes, or not the version it names."""
    from components.common import model_dir as fare_model

    meta_path, weights = path / fare_model.META_FILE, path / fare_model.WEIGHTS_FILE
    for p in (meta_path, weights):
        if not p.is_file():
            raise UserError(
                f"{p}: missing (expected a fareflow model directory with "
                f"{fare_model.META_FILE} and {fare_model.WEIGHTS_FILE})"
            )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{meta_path}: not JSON ({_one_line(err)})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != fare_model.MODEL_FORMAT or meta.get("version") != fare_model.MODEL_VERSION:
        raise UserError(
            f"{meta_path}: expected format {fare_model.MODEL_FORMAT!r} version {fare_model.MODEL_VERSION}, "
            f"got {meta.get('format')!r} version {meta.get('version')!r}"
        )
    missing = [key for key in ("architecture", "feature_spec") if key not in meta]
    if missing:
        raise UserError(f"{meta_path}: missing key(s) {', '.join(missing)} (written by fareflow train)")
    try:
        arch = fare_model.Architecture.from_dict(meta["architecture"])
    except UserError as err:
        raise UserError(f"{meta_path}: architecture: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UserError(
            f"{meta_path}: architecture: expected {{'hidden': [positive integers], 'dropout': number}}, "
            f"got {meta['architecture']!r}"
        ) from None
    try:
        spec = features.FeatureSpec.from_json(json.dumps(meta["feature_spec"]))
    except UserError as err:
        raise UserError(f"{meta_path}: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UserError(
            f"{meta_path}: feature_spec: expected {{'version': 1, 'feature_names': [...], 'mean': {{...}}, "
            "'std': {...}}"
        ) from None
    fare_range = meta.get("fare_range", contract.FARE_RANGE)
    if not (
        isinstance(fare_range, list | tuple)
        and len(fare_range) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in fare_range)
        and fare_range[0] < fare_range[1]
    ):
        raise UserError(f"{meta_path}: fare_range: expected [low, high] with low < high, got {fare_range!r}")
    extent, extent_source = _extent(meta, meta_path)
    if (path / fare_model.ARRAYS_FILE).is_file():
        # the weights as arrays: numpy's forward pass, torch never imported
        module = fare_model.load_arrays(path, arch, fare_model.model_version(meta))
        loaded = fare_model.LoadedModel(
            module, spec, arch, (float(fare_range[0]), float(fare_range[1])), meta
        )
        return loaded, extent, extent_source
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise UserError(
            f"{path / fare_model.ARRAYS_FILE}: missing -- a model directory written before "
            f"{fare_model.ARRAYS_FILE} existed needs torch to be served, and this server has none; "
            "train it again, or serve it where torch is installed"
        )
    try:
        loaded = fare_model.load(path)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - torch.load/load_state_dict raise many types for a bad file
        raise UserError(
            f"{weights}: cannot load the weights (corrupt, or not the architecture {fare_model.META_FILE} "
            f"describes): {_one_line(err)}"
        ) from None
    return loaded, extent, extent_source


def _check_size(n: int) -> None:
    if n > MAX_ROWS:
        raise UserError(f"{n} trips in one request; at most {MAX_ROWS} (split the batch)")


def limit_threads(threads: int | None = None) -> int:
    """Give the forward pass ``threads`` threads -- numpy's BLAS (threadpoolctl), and torch's
    intra-op threads where a model is served with torch -- by default as many as the container
    has CPUs (not the node's cores): more threads than the CPU limit only get throttled and
    raise tail latency. Returns the count."""
    import sys

    from threadpoolctl import threadpool_limits

    threads = threads or cpu_threads()
    threadpool_limits(limits=threads, user_api="blas")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


def _text(value, index: int, name: str):
    """BYTES tensor elements arrive as ``bytes``; the encoder reads ``str``."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"instance {index}: field {name}: expected UTF-8 text, got {value!r}") from None
    return value


def _texts_decoded(lists: dict[str, list]) -> dict[str, list]:
    """``lists`` with a pick-up time given as UTF-8 ``bytes`` (v2 BYTES) as ``str``; as given
    where that fails (the trip-by-trip reading then names the element)."""
    texts = lists.get(features.REQUEST_TIME)
    if texts is None or not any(type(t) is bytes for t in texts):
        return lists
    try:
        decoded = [t.decode("utf-8") if type(t) is bytes else t for t in texts]
    except UnicodeDecodeError:
        return lists
    return {**lists, features.REQUEST_TIME: decoded}


def _as_list(values, name: str) -> list:
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise UserError(
                f"input {name}: expected a 1-D tensor (one value per trip), got shape {list(values.shape)}"
            )
        return values.tolist()  # numpy scalars -> Python int/float/bytes/str
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise UserError(f"input {name}: expected a list with one value per trip, got {type(values).__name__}")
    return list(values)


def _record_field(record: Mapping, clean: str) -> str:
    """The name a record used for a field (raw or clean), for messages."""
    raw = CLEAN_TO_RAW[clean]
    return raw if raw in record or clean not in record else clean


def check_record_keys(records: Sequence) -> None:
    """Each record names each field once and nothing else (the v2 inputs' rule, for v1)."""
    if all(type(r) is dict and r.keys() == _RAW_NAMES for r in records):
        return  # the common case: every record holds exactly the raw names
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise UserError(f"instance {i}: expected an object of trip fields, got {type(record).__name__}")
        if len(record) == len(FIELD_NAMES) and all(k in FIELD_NAMES for k in record):
            continue  # the common case: exactly the raw names
        unknown = sorted(str(k) for k in record if k not in ACCEPTED_NAMES)
        if unknown:
            raise UserError(
                f"instance {i}: unknown field(s) {', '.join(unknown)}; expected {', '.join(FIELD_NAMES)} "
                f"(or the clean names {', '.join(FIELD_NAMES.values())})"
            )
        for raw, clean in FIELD_NAMES.items():
            if raw in record and clean in record:
                raise UserError(
                    f"instance {i}: fields {raw} and {clean} name the same field; send one of them"
                )


class FarePredictor:
    """A loaded fare model: its forward pass (``ArrayMLP`` from model.npz, or the torch module for
    a directory without one), its feature spec, its fare range and service area."""

    def __init__(self, loaded, source: str = "", area: ServiceArea | None = None) -> None:
        self.model = loaded  # components.common.model_dir.LoadedModel
        self.source = source
        self.fare_range: tuple[float, float] = loaded.fare_range
        self.area = area or ServiceArea.from_extent(CONTRACT_EXTENT, "the data contract")

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        *,
        area_margin_deg: float = DEFAULT_AREA_MARGIN_DEG,
        year_margin: int = DEFAULT_YEAR_MARGIN,
    ) -> FarePredictor:
        """Load a model directory (local path or ``s3://`` prefix, copied under the temp dir first)."""
        uri = str(model_dir)
        if storage.is_s3(uri):
            # HOME and TMPDIR point at /tmp in the serving container (read-only root filesystem).
            with tempfile.TemporaryDirectory(prefix="fareflow-model-") as tmp:
                loaded, extent, source = load_model_dir(fetch_model_dir(uri, tmp))  # weights now in memory
        else:
            path = Path(uri).expanduser()
            if not path.is_dir():
                raise UserError(f"{uri}: no such model directory")
            loaded, extent, source = load_model_dir(path)
        area = ServiceArea.from_extent(extent, source, area_margin_deg, year_margin)
        return cls(loaded, uri, area)

    # --- inputs -> fares ----------------------------------------------------------------------

    def predict_records(self, records: Sequence[Mapping]) -> list[float]:
        """One fare per record (v1 ``instances``)."""
        if isinstance(records, str | bytes | Mapping) or not isinstance(records, Sequence):
            raise UserError(f"instances: expected a list of trip objects, got {type(records).__name__}")
        if not records:
            raise UserError("instances: empty; expected at least one trip")
        _check_size(len(records))
        check_record_keys(records)
        columns = features.columns_from_records(records)
        self._check_domain(columns, lambda i, clean: _record_field(records[i], clean))
        return self._predict(columns).tolist()

    def predict_columns(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        """One fare per row of equally long columns named like the request fields (v2 tensors)."""
        if not columns:
            raise UserError(f"no inputs; expected one per field: {', '.join(FIELD_NAMES)}")
        unknown = sorted(name for name in columns if name not in ACCEPTED_NAMES)
        if unknown:
            raise UserError(
                f"unknown input(s) {', '.join(unknown)}; expected one per field: {', '.join(FIELD_NAMES)} "
                f"(or the clean names {', '.join(FIELD_NAMES.values())})"
            )
        for raw, clean in FIELD_NAMES.items():
            if raw in columns and clean in columns:
                raise UserError(f"inputs {raw} and {clean} name the same field; send one of them")
            if raw not in columns and clean not in columns:
                raise UserError(
                    f"missing input {raw} (or {clean}); expected one per field: {', '.join(FIELD_NAMES)}"
                )
        lists = {name: _as_list(values, name) for name, values in columns.items()}
        lengths = {name: len(values) for name, values in lists.items()}
        if len(set(lengths.values())) > 1:
            described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
            raise UserError(f"inputs differ in length ({described}); send one value per trip in every input")
        n = next(iter(lengths.values()))
        if n == 0:
            raise UserError("inputs are empty; expected at least one trip")
        _check_size(n)
        feature_columns = features.columns_from_fields(_texts_decoded(lists))
        if feature_columns is None:  # something uncommon or wrong: trip by trip, naming it
            records = [{name: _text(values[i], i, name) for name, values in lists.items()} for i in range(n)]
            feature_columns = features.columns_from_records(records)
        names = {clean: (raw if raw in columns else clean) for raw, clean in FIELD_NAMES.items()}
        self._check_domain(feature_columns, lambda _i, clean: names[clean])
        return self._predict(feature_columns)

    def _inside(self, columns: Mapping[str, np.ndarray]) -> bool:
        """Whether every trip lies in the service area and the model's years (the usual answer,
        found with a comparison per value for a few trips, else two reductions per column)."""
        area = self.area
        bounds = [(c, area.lat) for c in _LAT_COLUMNS] + [(c, area.lon) for c in _LON_COLUMNS]
        bounds.append(("year", area.years))
        for name, (lo, hi) in bounds:
            values = columns[name]
            if len(values) <= _FEW_ROWS:
                if not all(lo <= v <= hi for v in values.tolist()):
                    return False
            elif len(values) and not (values.min() >= lo and values.max() <= hi):
                return False
        return True

    def _check_domain(self, columns: Mapping[str, np.ndarray], name_of) -> None:
        """Refuse the first trip outside the service area or the model's years, naming its field."""
        if self._inside(columns):
            return
        area = self.area
        for clean_cols, (lo, hi), kind in (
            (_LAT_COLUMNS, area.lat, "latitude"),
            (_LON_COLUMNS, area.lon, "longitude"),
        ):
            for clean in clean_cols:
                values = columns[clean]
                bad = (values < lo) | (values > hi)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    v = float(values[i])
                    other = area.lon if kind == "latitude" else area.lat
                    hint = ""
                    if lo <= -v <= hi:
                        hint = f" (sign flipped? {-v} would be inside)"
                    elif other[0] <= v <= other[1]:
                        hint = " (latitude and longitude swapped?)"
                    raise UserError(
                        f"instance {i}: field {name_of(i, clean)}: {v} is outside the service area the model "
                        f"was trained on ({kind} {lo} to {hi}){hint}"
                    )
        years = columns["year"]
        y0, y1 = area.years
        bad = (years < y0) | (years > y1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"instance {i}: field {name_of(i, contract.PICKUP)}: pick-up year {int(years[i])} is outside "
                f"the years the model can price ({y0} to {y1})"
            )

    def _predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        x = features.encode(columns, self.model.spec)
        module = self.model.module
        if isinstance(module, ArrayMLP) and len(x) <= CHUNK_ROWS:
            out = module(x).reshape(-1).astype(np.float64)
        else:
            out = self._predict_chunks(module, x)
        if not np.isfinite(out).all():
            bad = int(np.flatnonzero(~np.isfinite(out))[0])
            # Inputs inside the service area are finite and bounded: a broken model, not the client's mistake.
            raise RuntimeError(f"instance {bad}: the model produced a non-finite fare")
        lo, hi = self.fare_range
        return np.minimum(np.maximum(out, lo, out=out), hi, out=out)  # np.clip, without its wrapper

    @staticmethod
    def _predict_chunks(module, x: np.ndarray) -> np.ndarray:
        out = np.empty(len(x), dtype=np.float64)
        if isinstance(module, ArrayMLP):
            for start in range(0, len(x), CHUNK_ROWS):
                chunk = x[start : start + CHUNK_ROWS]
                out[start : start + len(chunk)] = module(chunk).reshape(-1)
        else:
            import torch

            with torch.inference_mode():
                for start in range(0, len(x), CHUNK_ROWS):
                    chunk = torch.from_numpy(x[start : start + CHUNK_ROWS])
                    out[start : start + len(chunk)] = module(chunk).reshape(-1).double().numpy()
        return out
