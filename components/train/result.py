"""``TrainResult``: what rank 0 of a training run returns (summary, metrics, plot sample)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import TrainConfig


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
