"""Fare prediction for the model server, without KServe: :class:`FarePredictor` turns trips into fares.

Two ways in, the same answers: :meth:`FarePredictor.predict_records` takes request records (the
v1 protocol's ``instances``, raw or clean field names) and :meth:`FarePredictor.predict_columns`
one sequence per field (the v2 protocol's input tensors; text as ``bytes`` or ``str``). Both go
through ``components.common.features`` (the encoder training used: no train/serve skew), refuse
what the model cannot price (:mod:`.domain`) with a ``UserError`` naming the instance and field,
and clip the fares of the rest to the model's ``fare_range``. See docs/serve.md.

The request fields' rules live in :mod:`.fields`, the service area in :mod:`.domain`, loading a
model directory in :mod:`.loading`; their public names are importable from here as well.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from components.common import features, scratch, storage
from components.common.errors import UserError
from components.common.model_dir import MODEL_SCRATCH, ArrayMLP

from . import fields
from .domain import (  # noqa: F401 - re-exported: callers import them from core
    CONTRACT_EXTENT,
    DEFAULT_AREA_MARGIN_DEG,
    DEFAULT_YEAR_MARGIN,
    ServiceArea,
    check_domain,
)
from .fields import ACCEPTED_NAMES, CLEAN_TO_RAW, FIELD_NAMES, check_record_keys  # noqa: F401 - re-exported
from .loading import fetch_model_dir, limit_threads, load_model_dir  # noqa: F401 - re-exported

# Rows per forward pass: bounds memory for large requests; the MLP treats rows independently.
CHUNK_ROWS = 8192


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
            with scratch.scratch_dir(MODEL_SCRATCH) as tmp:
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
        fields.check_size(len(records))
        check_record_keys(records)
        columns = features.columns_from_records(records)
        check_domain(self.area, columns, lambda i, clean: fields.record_field(records[i], clean))
        return self._predict(columns).tolist()

    def predict_columns(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        """One fare per row of equally long columns named like the request fields (v2 tensors)."""
        fields.check_column_names(columns)
        lists = {name: fields.as_list(values, name) for name, values in columns.items()}
        lengths = {name: len(values) for name, values in lists.items()}
        if len(set(lengths.values())) > 1:
            described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
            raise UserError(f"inputs differ in length ({described}); send one value per trip in every input")
        n = next(iter(lengths.values()))
        if n == 0:
            raise UserError("inputs are empty; expected at least one trip")
        fields.check_size(n)
        feature_columns = features.columns_from_fields(fields.texts_decoded(lists))
        if feature_columns is None:  # something uncommon or wrong: trip by trip, naming it
            records = [
                {name: fields.decoded_text(values[i], i, name) for name, values in lists.items()}
                for i in range(n)
            ]
            feature_columns = features.columns_from_records(records)
        names = {clean: (raw if raw in columns else clean) for raw, clean in FIELD_NAMES.items()}
        check_domain(self.area, feature_columns, lambda _i, clean: names[clean])
        return self._predict(feature_columns)

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
