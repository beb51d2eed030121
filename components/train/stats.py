"""The train split's statistics over all ranks' shards (collectives under DDP): the feature
standardisation (``FeatureSpec``) and fare scale, the extent recorded in ``model.json``, and
folding the fare scale into the model's last layer.
"""

from __future__ import annotations

import math

import numpy as np

from components.common import contract
from components.common.errors import UserError
from components.common.features import CONTINUOUS, FeatureSpec

from .distributed import Dist, _all_reduce
from .splits import Arrays


def fit_spec(train: Arrays, d: Dist) -> tuple[FeatureSpec, float, float]:
    """The train split's ``FeatureSpec`` and the mean and std of its fares, over all ranks' shards."""
    if not d.distributed:
        spec = FeatureSpec.fit(train.columns)
        return spec, float(train.label.mean()), _positive(float(train.label.std()))
    names = [*CONTINUOUS, contract.LABEL]
    data = [*(train.columns[c] for c in CONTINUOUS), train.label]
    first = _all_reduce(d, [train.rows, *(float(v.sum()) for v in data)])
    n = first[0]
    if n == 0:
        raise UserError("cannot fit feature statistics on an empty training split")
    mean = first[1:] / n
    squares = _all_reduce(d, [float(((v - m) ** 2).sum()) for v, m in zip(data, mean, strict=True)])
    std = np.sqrt(squares / n)
    spec_mean = {name: float(mean[i]) for i, name in enumerate(names[:-1])}
    spec_std = {name: _positive(float(std[i])) for i, name in enumerate(names[:-1])}
    return FeatureSpec(mean=spec_mean, std=spec_std), float(mean[-1]), _positive(float(std[-1]))


def training_extent(train: Arrays, d: Dist) -> dict[str, list[float]]:
    """The train split's extent over all ranks' shards, for ``model.json``: the latitudes and
    longitudes of both trip ends and the pick-up years. The model server refuses trips outside
    it (plus a margin) instead of extrapolating a fare. Called on every rank (collectives)."""
    c = train.columns
    low = [min(c["origin_lat"].min(), c["dest_lat"].min()), min(c["origin_lon"].min(), c["dest_lon"].min())]
    high = [max(c["origin_lat"].max(), c["dest_lat"].max()), max(c["origin_lon"].max(), c["dest_lon"].max())]
    low = _all_reduce(d, [*low, c["year"].min()], op="min")
    high = _all_reduce(d, [*high, c["year"].max()], op="max")
    return {
        "lat": [float(low[0]), float(high[0])],
        "lon": [float(low[1]), float(high[1])],
        "year": [int(low[2]), int(high[2])],
    }


def _positive(std: float) -> float:
    """A usable scale: ``std`` if positive and finite, else 1 (the rule of ``FeatureSpec.fit``)."""
    return std if std > 0 and math.isfinite(std) else 1.0


def fold_label_scale(module, mean: float, std: float) -> None:
    """Make a module trained on ``(fare - mean) / std`` output fares: rescale its last layer."""
    import torch

    last = module[-1]
    with torch.no_grad():
        last.weight.mul_(std)
        last.bias.mul_(std).add_(mean)
