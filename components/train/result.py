"""``TrainResult``: what rank 0 of a training run returns (summary, metrics, plot sample);
``TrainSummary``: the same run known by its summary alone (what ``launch_local`` returns)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import TrainConfig

METRIC_NAMES = ("test_rmse", "validation_rmse", "train_rmse", "baseline_rmse", "rows_per_s")


def metric_values(summary: dict) -> dict[str, float]:
    """The kfp Metrics of a run from its summary: the RMSEs, rows_per_s and best_epoch."""
    values = {name: summary["metrics"][name] for name in METRIC_NAMES}
    values["best_epoch"] = summary["best_epoch"]
    return values


@dataclass
class TrainResult:
    """What rank 0 returns: the summary's parts and a sample of test predictions for plots."""

    config: TrainConfig
    metrics: dict[str, float]
    history: list[dict]
    rows: dict[str, int]
    best_epoch: int
    stopped_early: bool
    world_size: int
    device: str
    backend: str | None
    seconds: float
    test_actual: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    test_predicted: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    def summary(self) -> dict:
        return {
            "metrics": dict(self.metrics),
            "history": [dict(h) for h in self.history],
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.history),
            "stopped_early": self.stopped_early,
            "rows": dict(self.rows),
            "world_size": self.world_size,
            "device": self.device,
            "backend": self.backend,
            "seconds": round(self.seconds, 3),
            "model": self.config.output_uri,
            "config": self.config.to_dict(),
        }


@dataclass(frozen=True)
class TrainSummary:
    """A finished run read back from its summary (``TrainResult.summary()``, e.g. the summary JSON
    that rank 0 of a launched run wrote), as ``components.common.publish`` reads a result.
    (``TrainResult`` is published by its summary alone: its ``metrics`` field is the run's
    metric dict, so the protocol's ``metrics()`` lives here.)"""

    data: dict

    def summary(self) -> dict:
        return dict(self.data)

    def metrics(self) -> dict[str, float]:
        return metric_values(self.data)
