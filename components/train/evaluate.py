"""Evaluation: error sums (RMSE, MAE) of a model's predictions in evaluation batches, and the
generator's best achievable RMSE (``truth.json``) that a run is compared with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from components.common import storage
from components.common.errors import UserError

EVAL_BATCH = 1 << 16
TRUTH_KEY = "best_rmse"  # components.generate writes the best achievable RMSE under this key
SCATTER_POINTS = 5000  # test predictions kept for the report's plots


@dataclass
class Errors:
    """Squared and absolute error sums over ``rows`` rows."""

    sse: float
    sae: float
    rows: int

    @property
    def rmse(self) -> float:
        return math.sqrt(self.sse / self.rows) if self.rows else float("nan")

    @property
    def mae(self) -> float:
        return self.sae / self.rows if self.rows else float("nan")


def predict(module, x, device: str) -> np.ndarray:
    """Model output for the rows of ``x`` (a float32 array or tensor), in evaluation batches."""
    import torch

    was_training = module.training
    module.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), EVAL_BATCH):
            batch = torch.as_tensor(x[start : start + EVAL_BATCH], device=device)
            out.append(module(batch).squeeze(-1).double().cpu().numpy())
    module.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def error_sums(pred: np.ndarray, label: np.ndarray) -> Errors:
    r = pred - label
    return Errors(float((r * r).sum()), float(np.abs(r).sum()), int(label.size))


def read_truth(uri: str) -> float:
    """``best_rmse`` from the generator's ``truth.json`` (a local path or ``s3://`` URI)."""
    fs, path = storage.resolve_filesystem(uri)
    try:
        with fs.open_input_stream(path) as src:
            doc = json.loads(src.read().decode("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{uri}: no such file (expected the generator's truth.json)") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{uri}: not a readable JSON file ({err})") from None
    value = doc.get(TRUTH_KEY) if isinstance(doc, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(
            f"{uri}: expected a number under {TRUTH_KEY!r} (the generator's truth.json), got {value!r}"
        )
    return float(value)
