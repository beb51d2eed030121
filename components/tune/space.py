"""The tune step's search space and objective: the parameters a trial suggests (around the
starting point), the train config a trial runs, and the objective -- the best validation RMSE of
``components.train.core.run`` with per-epoch pruning (``Diverged``: a non-finite RMSE).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from components.train import core as train_core
from components.train.config import TrainConfig, parse_hidden

from .config import (
    TuneConfig,
)
from .study import BASE_ATTR, is_base

HIDDEN_CHOICES: tuple[str, ...] = ("64,32", "128,64,32", "256,128,64", "256,128,64,32")
BATCH_CHOICES: tuple[int, ...] = (256, 512, 1024, 2048)

# name -> (kind, arguments); documented in the module docstring and docs/tune.md
SEARCH_SPACE: dict[str, tuple[str, tuple]] = {
    "learning_rate": ("log-uniform", (1e-4, 1e-2)),
    "batch_size": ("categorical", BATCH_CHOICES),
    "hidden": ("categorical", HIDDEN_CHOICES),
    "weight_decay": ("log-uniform", (1e-6, 1e-2)),
    "dropout": ("uniform", (0.0, 0.3)),
}
PARAM_NAMES: tuple[str, ...] = tuple(SEARCH_SPACE)


def train_config(config: TuneConfig, params: dict, output_uri: str) -> TrainConfig:
    """The train step's configuration for one trial's parameters."""
    return TrainConfig(
        splits_uri=config.splits_uri,
        output_uri=output_uri,
        epochs=config.epochs,
        batch_size=int(params["batch_size"]),
        learning_rate=float(params["learning_rate"]),
        weight_decay=float(params["weight_decay"]),
        hidden=parse_hidden(str(params["hidden"])),
        dropout=float(params["dropout"]),
        seed=config.seed,
        device=config.device,
        max_rows=config.max_rows,
        keep_checkpoints=0,  # a trial is short and its output is thrown away: no checkpoints
        resume=False,
    )


def _with(choices: tuple, value) -> list:
    """The categorical choices plus the starting point's value when it is not among them (an
    enqueued trial must lie in its distribution's choices)."""
    return list(choices) if value is None or value in choices else [*choices, value]


def suggest(trial, base: dict | None = None) -> dict:
    """Draw one point of :data:`SEARCH_SPACE` from an Optuna trial; ``base`` (the starting point,
    trial 0) adds its batch size and layers to the categorical choices if they are not there.
    (Its numbers may lie outside the float ranges: Optuna runs an enqueued trial as given.)"""
    base = base or {}
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", _with(BATCH_CHOICES, base.get("batch_size"))),
        "hidden": trial.suggest_categorical("hidden", _with(HIDDEN_CHOICES, base.get("hidden"))),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
    }


class Diverged(Exception):
    """A trial's training gave a non-finite validation RMSE (the trial is recorded as FAIL)."""


def pruning_callback(trial, prune: bool = True) -> Callable[[int, float], None]:
    """``core.run``'s ``on_epoch``: report the epoch's validation RMSE to the trial and raise
    ``optuna.TrialPruned`` when the pruner says so (``Diverged`` for a non-finite RMSE).
    ``prune`` False (the starting point's trial): reported, never pruned."""
    import optuna

    def on_epoch(epoch: int, validation_rmse: float) -> None:
        trial.set_user_attr("epochs_run", epoch)
        if not math.isfinite(validation_rmse):
            raise Diverged(f"validation RMSE {validation_rmse} at epoch {epoch}")
        trial.report(validation_rmse, step=epoch)
        if prune and trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} (validation RMSE {validation_rmse:.4f})")

    return on_epoch


def make_objective(config: TuneConfig, tmp: str, log: Callable[[str], None] = lambda _m: None):
    def objective(trial) -> float:
        params = suggest(trial, config.base())
        output = str(Path(tmp) / f"trial-{trial.number}")
        # the starting point (trial 0, or its retry) is never pruned: it is the yardstick
        base = bool(trial.user_attrs.get(BASE_ATTR)) or is_base(params, config.base())

        def epoch_line(message: str) -> None:  # "trial N epoch e/E: ..." (fareflow run's progress)
            if message.startswith("epoch "):
                log(f"trial {trial.number} {message}")

        result = train_core.run(
            train_config(config, params, output),
            log=epoch_line,
            progress=False,
            on_epoch=pruning_callback(trial, prune=not base),
        )
        return float(result.metrics["validation_rmse"])

    return objective
