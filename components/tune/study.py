"""The study's storage: opening it (in memory, or an RDB -- SQLite, PostgreSQL over psycopg 3 --
with heartbeats and retries of a dead worker's trials), its pruner, the errors a storage raises
as one line with no secrets, the enqueued starting point, and which finished trials count.
"""

from __future__ import annotations

import math
import os

from components.common.errors import UserError

from .config import (
    TuneConfig,
    is_postgres,
    postgres_endpoint,
    redact,
    sqlalchemy_url,
)


def trial_row(t) -> dict:
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


def finished_trials(study) -> list:
    """The study's finished trials (not the waiting or running ones, e.g. of another worker)."""
    return [t for t in study.trials if t.state.is_finished()]


def is_base(params: dict, base: dict) -> bool:
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


def counted_trials(study) -> list:
    """The finished trials that count towards the study's total: all but the FAILs of a dead
    process that were (or are being) run again."""
    trials = study.get_trials(deepcopy=False)
    # RetryFailedTrialCallback records every earlier attempt of a retry in its "retry_history"
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    return [t for t in trials if t.state.is_finished() and t.number not in retried]
