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

import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from components.common.errors import UserError
from components.train import core as train_core
from components.train.config import TrainConfig, parse_hidden
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

OFF_NOTE = "tuning off (trials=0): the given (or the train step's default) parameters, unchanged"


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
    import sys

    print(f"tune: {message}", file=sys.stderr, flush=True)


def _trial_row(t) -> dict:
    seconds = (
        (t.datetime_complete - t.datetime_start).total_seconds()
        if t.datetime_complete and t.datetime_start
        else None
    )
    return {
        "number": t.number,
        "state": t.state.name,
        "params": dict(t.params),
        "value": t.value,
        "epochs_run": int(t.user_attrs.get("epochs_run", 0)),
        "intermediate": {int(k): float(v) for k, v in sorted(t.intermediate_values.items())},
        "seconds": round(seconds, 3) if seconds is not None else None,
    }


def _finished(study) -> list:
    """The study's finished trials (not the waiting or running ones, e.g. of another worker)."""
    return [t for t in study.trials if t.state.is_finished()]


def _is_base(params: dict, base: dict) -> bool:
    return set(params) == set(base) and all(params[k] == v for k, v in base.items())


def _storage(config: TuneConfig):
    """The study's storage: in memory (None) or an RDB storage with a heartbeat whose dead
    trials are failed and retried. PostgreSQL URLs run on psycopg 3 with a connect timeout."""
    if not config.storage:
        return None
    import warnings

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback  # Optuna 5's RetryFailedTrialCallback

    if config.storage.startswith("sqlite"):
        engine: dict = {"connect_args": {"timeout": 60}}
    elif is_postgres(config.storage):
        # libpq's connect_timeout: an unreachable server fails in seconds, not at the TCP timeout
        engine = {"connect_args": {"connect_timeout": config.connect_timeout_s}, "pool_pre_ping": True}
    else:
        engine = {}
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            sqlalchemy_url(config.storage),
            engine_kwargs=engine,
            heartbeat_interval=max(1, math.ceil(config.heartbeat_s)),
            grace_period=max(2, math.ceil(2 * config.heartbeat_s)),
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=config.max_retries),
        )


def pruner(config: TuneConfig):
    """Optuna's ``MedianPruner`` from the config's pruning settings (``NopPruner`` when off).
    Steps are epochs, from 1; MedianPruner never prunes a step < ``n_warmup_steps``, so
    ``prune_warmup_epochs`` = 0 lets a bad trial stop after its first epoch."""
    import optuna

    if not config.pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=config.prune_startup_trials,
        n_warmup_steps=config.prune_warmup_epochs + 1,
        interval_steps=config.prune_interval_epochs,
    )


def _first_line(err: BaseException) -> str:
    """The innermost cause's message, first line (a driver error inside SQLAlchemy's wrapper)."""
    while err.__cause__ is not None or getattr(err, "orig", None) is not None:
        err = getattr(err, "orig", None) or err.__cause__
    return (str(err).strip().splitlines() or [type(err).__name__])[0].strip()


def _storage_error(config: TuneConfig, err: BaseException) -> UserError:
    """One line for a storage that cannot be opened, without the password."""
    why = _first_line(err)
    if is_postgres(config.storage):
        where = postgres_endpoint(config.storage)
        why = why.rsplit(" failed: ", 1)[-1]  # libpq: 'connection to server at "h", port p failed: ...'
        why = " ".join(why.split())
        for secret in _secrets(config.storage):
            why = why.replace(secret, "***")
        return UserError(
            f"--storage {redact(config.storage)}: cannot open study {config.study_name!r} on "
            f"PostgreSQL at {where} ({why})"
        )
    for secret in _secrets(config.storage):
        why = why.replace(secret, "***")
    return UserError(
        f"--storage {redact(config.storage)}: cannot open study {config.study_name!r} "
        f"({type(err).__name__}: {why})"
    )


def _secrets(storage: str) -> list[str]:
    """The password of a URL and of libpq's environment, to keep them out of messages."""
    import re

    found = [m.group(1) for m in re.finditer(r"://[^:/@]*:([^@]*)@", storage)]
    found += [m.group(1) for m in re.finditer(r"[?&]password=([^&]*)", storage)]
    if os.environ.get("PGPASSWORD"):
        found.append(os.environ["PGPASSWORD"])
    return [s for s in found if s]


def open_study(config: TuneConfig, worker: int = 0):
    """The study; ``worker`` > 0 seeds its sampler apart (workers with one seed on one history
    would suggest the same parameters at the same moment)."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=config.seed + 1_000_003 * worker)
    try:
        return optuna.create_study(
            storage=_storage(config),
            sampler=sampler,
            pruner=pruner(config),
            study_name=config.study_name,
            direction="minimize",
            load_if_exists=True,
        )
    except Exception as err:  # bad URL, unreachable database, bad password, other direction
        raise _storage_error(config, err) from None


BASE_ATTR = "fareflow_base"  # user attribute of the starting point's trial (and of its retries)


def enqueue_base(study, config: TuneConfig) -> bool:
    """Enqueue the starting point as trial 0 of a new (empty) study; a study that holds trials
    already keeps them (the starting point is not enqueued again). True if enqueued."""
    base = config.base()
    for name in ("learning_rate", "weight_decay"):  # log-uniform dimensions: 0 is not a point
        if not float(base[name]) > 0:
            raise UserError(
                f"{name}={base[name]}: a tuned run starts from a positive value (or pass trials=0)"
            )
    if study.get_trials(deepcopy=False):
        return False
    study.enqueue_trial(base, user_attrs={BASE_ATTR: True})
    return True


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
    before = len(_counted(study))
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
        run_workers(config, target, deadline, log)
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
    finished = _finished(study)
    trials = [_trial_row(t) for t in finished]
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    if not complete:
        raise UserError(
            f"tuning: none of the {len(trials)} trial(s) of study {config.study_name!r} completed "
            "(all pruned or diverged)"
        )
    best = study.best_trial
    base_numbers = {t.number for t in finished if t.user_attrs.get(BASE_ATTR)}
    defaults = [t for t in complete if t["number"] in base_numbers or _is_base(t["params"], config.base())]
    return TuneResult(
        config=config,
        best_params={name: best.params[name] for name in PARAM_NAMES},
        best_value=float(best.value),
        default_value=defaults[0]["value"] if defaults else None,
        trials=trials,
        new_trials=len(_counted(study)) - before,
        best_trial=best.number,
        seconds=time.perf_counter() - started if started is not None else 0.0,
    )


# --- a study's trial budget, the trial loop, parallel workers ------------------------------


def _counted(study) -> list:
    """The finished trials that count towards the study's total: all but the FAILs of a dead
    process that were (or are being) run again."""
    trials = study.get_trials(deepcopy=False)
    # RetryFailedTrialCallback records every earlier attempt of a retry in its "retry_history"
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    return [t for t in trials if t.state.is_finished() and t.number not in retried]


def _objective(config: TuneConfig, tmp: str, log: Callable[[str], None] = lambda _m: None):
    def objective(trial) -> float:
        params = suggest(trial, config.base())
        output = str(Path(tmp) / f"trial-{trial.number}")
        # the starting point (trial 0, or its retry) is never pruned: it is the yardstick
        base = bool(trial.user_attrs.get(BASE_ATTR)) or _is_base(params, config.base())

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


class _AskLock:
    """Serializes Optuna's claiming of a trial between the local workers of one SQLite study.

    A trial waiting in the study (the enqueued defaults, a dead worker's retry) is claimed with
    ``SELECT ... FOR UPDATE``, which SQLite ignores: two workers could both claim it, run it, and
    the second's result be refused (seen in CI: ``UpdateFinishedTrialError: Trial#0 has already
    finished``). An ``flock`` on ``DB.ask.lock`` is held from before ``study.optimize`` asks
    until the objective starts (the trial is then RUNNING and ours), so only the claim is
    serialized, not the training. Other databases lock rows themselves: no lock."""

    def __init__(self, storage: str) -> None:
        prefix = "sqlite:///"
        path = storage[len(prefix) :] if storage.startswith(prefix) else ""
        self.path = f"{path}.ask.lock" if path and path != ":memory:" else None
        self._file = None

    def acquire(self) -> None:
        if self.path is not None:
            import fcntl

            self._file = open(self.path, "a")  # noqa: SIM115 - held across calls, closed in release
            fcntl.flock(self._file, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._file is not None:
            import fcntl

            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def optimize_until(
    study, config: TuneConfig, target: int, deadline: float | None, log: Callable[[str], None]
) -> None:
    """Run trials one at a time until the study holds ``target`` counted trials (or the deadline
    passes). Trials another live worker is running count as on their way; a trial whose process
    died turns FAIL when its heartbeat is stale and its retry is run here."""
    import optuna

    def report(study, t) -> None:
        shown = f"{t.value:.4f}" if t.value is not None else "-"
        log(
            f"trial {t.number} {t.state.name}: validation RMSE {shown} after "
            f"{t.user_attrs.get('epochs_run', 0)} epoch(s); {t.params}"
        )

    import warnings

    lock = _AskLock(config.storage)

    with tempfile.TemporaryDirectory(prefix="fareflow-tune-") as tmp:
        train_trial = _objective(config, tmp, log)

        def objective(trial) -> float:
            lock.release()  # the trial is claimed (RUNNING): let the next worker ask
            return train_trial(trial)

        while deadline is None or time.time() < deadline:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # nothing without a heartbeat (in memory)
            done = len(_counted(study))
            if done >= target:
                return
            running = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
            if done + running >= target:
                time.sleep(min(1.0, config.heartbeat_s))  # the last trials run elsewhere (or died)
                continue
            lock.acquire()
            try:
                study.optimize(objective, n_trials=1, catch=(Diverged,), callbacks=[report])
            finally:
                lock.release()


def _worker(config: TuneConfig, target: int, deadline: float | None, index: int, threads: int) -> None:
    """One of ``config.workers`` processes (multiprocessing, spawned): its torch threads, the
    shared study, the trial loop. A ``UserError`` is one line on stderr and exit status 2."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the train step then leaves torch's pool alone
    import optuna
    import torch

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def log(message: str) -> None:
        print(f"tune: worker {index}: {message}", file=sys.stderr, flush=True)

    try:
        optimize_until(open_study(config, worker=index), config, target, deadline, log)
    except UserError as err:
        print(f"fareflow tune: error: worker {index}: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def run_workers(config: TuneConfig, target: int, deadline: float | None, log: Callable[[str], None]) -> None:
    """``config.workers`` spawned processes on the study, each with its share of the CPUs."""
    import multiprocessing

    from components.common.cpu import cpu_threads

    threads = cpu_threads(config.workers)
    log(f"{config.workers} workers on study {config.study_name!r}, {threads} torch thread(s) each")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(config, target, deadline, i, threads), name=f"tune-worker-{i}")
        for i in range(config.workers)
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
    failed = [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        i, code = failed[0]
        raise UserError(
            f"tune worker {i} of {config.workers} failed (exit status {code}); see its line above"
        )
