"""Tune step: an Optuna study over the train step's hyper-parameters on the sample step's splits.

Input: the sample step's output (``train/``, ``validation/``, ``test/`` with ``_SUCCESS``), a
local path or ``s3://`` URI. Output: the best hyper-parameters under the train step's names,
the best validation RMSE, and a table of every trial of the study.

Objective: the best validation RMSE of ``components.train.core.run`` (one process, in this
process, ``epochs`` epochs at most, the train step's early stopping) with the trial's
hyper-parameters; every trial uses the same training ``seed`` so trials differ only by their
parameters. The test split is never looked at for choosing.

Search space (:data:`SEARCH_SPACE`):

- ``learning_rate``: log-uniform in [1e-4, 1e-2]
- ``batch_size``: one of 256, 512, 1024, 2048
- ``hidden``: one of "64,32", "128,64,32", "256,128,64", "256,128,64,32"
- ``weight_decay``: log-uniform in [1e-6, 1e-2]
- ``dropout``: uniform in [0, 0.3]

Trial 0 of a new study is the train step's defaults (:data:`DEFAULTS`, enqueued), so the best
trial is never worse on validation than the defaults. The sampler is TPE seeded with ``seed``:
the same inputs and seed give the same trials and the same best parameters (on CPU).

Pruning: Optuna's ``MedianPruner`` is fed each epoch's validation RMSE (``trial.report``
through ``core.run``'s ``on_epoch`` callback); a trial whose RMSE at an epoch is worse than
the median of the earlier trials at that epoch stops there (state PRUNED). The first
``prune_startup_trials`` trials are never pruned, nor any trial before epoch
``prune_warmup_epochs + 1``. A trial whose training diverges (non-finite RMSE) is FAIL.

Storage: ``""`` keeps the study in memory (gone with the process); an Optuna RDB URL
(``sqlite:///study.db``, ``postgresql://user:pass@host/db``) keeps it, and a later run with the
same ``study_name`` adds its trials to the same study (``trials`` more), or, given
``total_trials``, runs only the trials the study still lacks -- the way to resume a killed study.
An RDB study has a heartbeat (``heartbeat_s``): a trial whose process died is marked FAIL once
its heartbeat is ``2 x heartbeat_s`` old and run again with the same parameters (Optuna's
``RetryFailedTrialCallback``, at most ``max_retries`` times); such a retried FAIL is not counted.

Workers: ``workers = N > 1`` runs N processes on the one study (RDB storage required), each
with its share of the CPUs' torch threads; they stop when the study holds the target number of
finished trials (docs/tune.md, "Fault tolerance and parallel tuning").

``trials == 0`` switches tuning off: no study, no training, the train defaults come back
unchanged (with a note saying so).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from components.common.errors import UserError
from components.train.splits import discover

from .config import (  # noqa: F401 (the step's API)
    DEFAULT_STUDY,
    DEFAULTS,
    TuneConfig,
    is_postgres,
    postgres_endpoint,
    redact,
    shared_storage,
    sqlalchemy_url,
)
from .space import BATCH_CHOICES, HIDDEN_CHOICES, PARAM_NAMES, SEARCH_SPACE  # noqa: F401 (the step's API)
from .study import BASE_ATTR, counted_trials, enqueue_base, finished_trials, is_base, open_study, trial_row
from .workers import optimize_until, run_workers

OFF_NOTE = "tuning off (trials=0): the given (or the train step's default) parameters, unchanged"


@dataclass
class TuneResult:
    config: TuneConfig
    best_params: dict
    best_value: float | None  # best validation RMSE; None when tuning was off
    default_value: float | None  # the defaults' trial validation RMSE, when it completed
    trials: list[dict] = field(default_factory=list)  # every trial of the study
    new_trials: int = 0  # trials run by this call (a stored study may hold earlier ones)
    best_trial: int | None = None
    note: str = ""
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        out = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        for t in self.trials:
            out[t["state"]] = out.get(t["state"], 0) + 1
        return out

    def summary(self) -> dict:
        return {
            "best_params": dict(self.best_params),
            "best_validation_rmse": self.best_value,
            "default_validation_rmse": self.default_value,
            "best_trial": self.best_trial,
            "trials": [dict(t) for t in self.trials],
            "new_trials": self.new_trials,
            "states": self.counts(),
            "search_space": {k: {"kind": kind, "values": list(v)} for k, (kind, v) in SEARCH_SPACE.items()},
            "note": self.note,
            "seconds": round(self.seconds, 3),
            "config": self.config.to_dict(),
        }

    def metrics(self) -> dict[str, float]:
        """best/default_validation_rmse (when known) and trials_complete/pruned/failed: the kfp Metrics."""
        values: dict[str, float] = {}
        if self.best_value is not None:
            values["best_validation_rmse"] = self.best_value
        if self.default_value is not None:
            values["default_validation_rmse"] = self.default_value
        counts = self.counts()
        for state, name in (("COMPLETE", "complete"), ("PRUNED", "pruned"), ("FAIL", "failed")):
            values[f"trials_{name}"] = counts[state]
        return values


def _log(message: str) -> None:

    print(f"tune: {message}", file=sys.stderr, flush=True)


def run(config: TuneConfig, *, log: Callable[[str], None] = _log) -> TuneResult:
    """Run ``config.trials`` new trials (or, given ``total_trials``, until the study holds that
    many; or none: tuning off), in this process or ``workers`` processes, and return the
    study's best."""
    config.validate()
    started = time.perf_counter()
    if config.trials == 0:
        log(OFF_NOTE)
        return TuneResult(config, config.base(), None, None, note=OFF_NOTE)
    discover(config.splits_uri)  # a missing _SUCCESS or split fails here, in one line
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(config)
    before = len(counted_trials(study))
    enqueue_base(study, config)
    target = config.total_trials if config.total_trials is not None else before + config.trials
    if before >= target:
        log(f"study {config.study_name!r} already holds {before} finished trial(s) of {target}; none to run")
    elif before:
        log(f"study {config.study_name!r} holds {before} finished trial(s); running {target - before} more")
    deadline = time.time() + config.timeout_s if config.timeout_s is not None else None
    if config.workers == 1:
        optimize_until(study, config, target, deadline, log)
    else:
        run_workers(config, target, deadline, log, study=study)
        study = open_study(config)
    result = study_result(study, config, before=before, started=started)
    if config.timeout_s is not None and result.new_trials < target - before:
        result.note = f"stopped by the {config.timeout_s:g} s timeout after {result.new_trials} trial(s)"
    shown = f"{result.default_value:.4f}" if result.default_value is not None else "-"
    log(
        f"best trial {result.best_trial}: validation RMSE {result.best_value:.4f} (defaults {shown}); "
        f"{result.best_params}"
    )
    return result


def study_result(study, config: TuneConfig, *, before: int = 0, started: float | None = None) -> TuneResult:
    """The study's best trial and every finished trial as a ``TuneResult`` (``before``: trials
    it held before this run); ``UserError`` if none completed. Runs no trial: the cluster's tune
    task reads the study its Job's workers filled with this."""
    finished = finished_trials(study)
    trials = [trial_row(t) for t in finished]
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    if not complete:
        raise UserError(
            f"tuning: none of the {len(trials)} trial(s) of study {config.study_name!r} completed "
            "(all pruned or diverged)"
        )
    best = study.best_trial
    base_numbers = {t.number for t in finished if t.user_attrs.get(BASE_ATTR)}
    defaults = [t for t in complete if t["number"] in base_numbers or is_base(t["params"], config.base())]
    return TuneResult(
        config=config,
        best_params={name: best.params[name] for name in PARAM_NAMES},
        best_value=float(best.value),
        default_value=defaults[0]["value"] if defaults else None,
        trials=trials,
        new_trials=len(counted_trials(study)) - before,
        best_trial=best.number,
        seconds=time.perf_counter() - started if started is not None else 0.0,
    )
