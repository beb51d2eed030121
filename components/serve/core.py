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

Predictions are clipped to the model's ``fare_range`` (the data contract's [3.25, 180]):
the quality step drops every trip with a fare outside that range, so the model never saw
one; an MLP extrapolating outside the training region (a trip from far outside DC, an odd
hour/coordinate mix) can answer below the $3.25 flag drop or beyond any fare it learned,
and such a number is not a fare the model can vouch for. The bound is the one the model
directory records, not a constant here.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from components.common import contract, features, storage
from components.common.cpu import cpu_threads
from components.common.errors import UserError

# Input names a v2 request may use: the raw column names (what check_inference.py sends)
# and, like the records, the clean column names. Each field may be named only once.
FIELD_NAMES: dict[str, str] = {**features.REQUEST_FIELDS, features.REQUEST_TIME: contract.PICKUP}
ACCEPTED_NAMES: frozenset[str] = frozenset(FIELD_NAMES) | frozenset(FIELD_NAMES.values())
# Rows per forward pass: bounds memory for large requests; the MLP treats rows independently.
CHUNK_ROWS = 8192
MAX_ROWS = 100_000  # trips per request: a bigger batch is a scoring job, not a request (HTTP 400)


def fetch_model_dir(uri: str, workdir: str | Path) -> Path:
    """A local directory holding the model files of ``uri``.

    A local path is returned as is. For ``s3://bucket/prefix`` the model files
    (model.json, model.pt) are copied into ``workdir`` (the AWS_* environment variables
    choose the endpoint and credentials, as everywhere in fareflow)."""
    from components.train import model as fare_model

    if not storage.is_s3(uri):
        return Path(uri).expanduser()
    fs, root = storage.resolve_filesystem(uri)
    workdir = Path(workdir)
    for name in (fare_model.META_FILE, fare_model.WEIGHTS_FILE):
        source = f"{root}/{name}"
        try:
            with fs.open_input_stream(source) as src, open(workdir / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except FileNotFoundError:
            raise UserError(
                f"{uri.rstrip('/')}/{name}: missing (expected a fareflow model directory with "
                f"{fare_model.META_FILE} and {fare_model.WEIGHTS_FILE})"
            ) from None
        except OSError as err:
            raise UserError(f"{uri.rstrip('/')}/{name}: cannot read: {' '.join(str(err).split())}") from None
    return workdir


def _check_size(n: int) -> None:
    if n > MAX_ROWS:
        raise UserError(f"{n} trips in one request; at most {MAX_ROWS} (split the batch)")


def limit_threads() -> int:
    """Give torch as many intra-op threads as the container has CPUs (not the node's cores): more
    threads than the CPU limit only get throttled and raise tail latency. Returns the count."""
    import torch

    threads = cpu_threads()
    torch.set_num_threads(threads)
    return threads


def _text(value, index: int, name: str):
    """BYTES tensor elements arrive as ``bytes``; the encoder reads ``str``."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"instance {index}: field {name}: expected UTF-8 text, got {value!r}") from None
    return value


def _as_list(values, name: str) -> list:
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise UserError(
                f"input {name}: expected a 1-D tensor (one value per trip), got shape {values.shape}"
            )
        return values.tolist()  # numpy scalars -> Python int/float/bytes/str
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise UserError(f"input {name}: expected a list with one value per trip, got {type(values).__name__}")
    return list(values)


class FarePredictor:
    """A loaded fare model: the torch module, its feature spec and its fare range."""

    def __init__(self, loaded, source: str = "") -> None:
        self.model = loaded  # components.train.model.LoadedModel
        self.source = source
        self.fare_range: tuple[float, float] = loaded.fare_range

    @classmethod
    def load(cls, model_dir: str | Path) -> FarePredictor:
        """Load a model directory (local path or ``s3://`` prefix, copied under the temp dir first)."""
        from components.train import model as fare_model

        uri = str(model_dir)
        if storage.is_s3(uri):
            # HOME and TMPDIR point at /tmp in the serving container (read-only root filesystem).
            with tempfile.TemporaryDirectory(prefix="fareflow-model-") as tmp:
                loaded = fare_model.load(fetch_model_dir(uri, tmp))  # weights are in memory afterwards
        else:
            path = Path(uri).expanduser()
            if not path.is_dir():
                raise UserError(f"{uri}: no such model directory")
            loaded = fare_model.load(path)
        return cls(loaded, uri)

    # --- inputs -> fares ----------------------------------------------------------------------

    def predict_records(self, records: Sequence[Mapping]) -> list[float]:
        """One fare per record (v1 ``instances``)."""
        if isinstance(records, str | bytes | Mapping) or not isinstance(records, Sequence):
            raise UserError(f"instances: expected a list of trip objects, got {type(records).__name__}")
        if not records:
            raise UserError("instances: empty; expected at least one trip")
        _check_size(len(records))
        columns = features.columns_from_records(records)
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
        records = [{name: _text(values[i], i, name) for name, values in lists.items()} for i in range(n)]
        return self._predict(features.columns_from_records(records))

    def _predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        import torch

        x = features.encode(columns, self.model.spec)
        out = np.empty(len(x), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(x), CHUNK_ROWS):
                chunk = torch.from_numpy(x[start : start + CHUNK_ROWS])
                out[start : start + len(chunk)] = self.model.module(chunk).reshape(-1).double().numpy()
        if not np.all(np.isfinite(out)):
            bad = int(np.flatnonzero(~np.isfinite(out))[0])
            raise UserError(f"instance {bad}: the model produced a non-finite fare (out-of-range inputs?)")
        lo, hi = self.fare_range
        return np.clip(out, lo, hi)
