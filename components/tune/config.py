"""The tune step's settings: ``TuneConfig`` (the fields with an ``option`` are the CLI's flags)
and the train step's defaults it starts from (docs/tune.md)."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from components.common.configspec import option
from components.common.errors import UserError
from components.train.config import DEVICES, TrainConfig

_TRAIN_DEFAULTS = TrainConfig(splits_uri="", output_uri="")
# The train step's defaults, under the same names and types as the suggested parameters.
DEFAULTS: dict[str, object] = {
    "learning_rate": _TRAIN_DEFAULTS.learning_rate,
    "batch_size": _TRAIN_DEFAULTS.batch_size,
    "hidden": ",".join(str(h) for h in _TRAIN_DEFAULTS.hidden),
    "weight_decay": _TRAIN_DEFAULTS.weight_decay,
    "dropout": _TRAIN_DEFAULTS.dropout,
}
DEFAULT_STUDY = "fareflow-tune"


@dataclass(frozen=True)
class TuneConfig:
    splits_uri: str = option(
        flag="--splits", help="the sample step's output (train/ validation/ test/), path or s3://"
    )
    # --trials or --total-trials, one of them: N new trials, or until the study holds N
    trials: int = option(
        8, flag="--trials", help="new trials to run; 0 = off (the train defaults)", one_of="budget"
    )
    timeout_s: float | None = option(  # stop starting new trials after this many seconds
        None, flag="--timeout", help="start no new trial after this many seconds"
    )
    seed: int = option(  # the sampler's seed and every trial's training seed
        0, flag="--seed", help="sampler and training seed (default 0)"
    )
    epochs: int = option(4, flag="--epochs", help="at most this many epochs per trial (default 4)")
    storage: str = option(  # an Optuna RDB URL, or "" for an in-memory study
        "",
        flag="--storage",
        help="Optuna RDB URL (sqlite:///study.db, postgresql://...); default: in memory",
    )
    study_name: str = option(DEFAULT_STUDY, flag="--study-name", help=f"study name (default {DEFAULT_STUDY})")
    max_rows: int | None = option(  # None = all
        None, flag="--max-rows", help="use at most this many rows of each split per trial"
    )
    device: str = option("auto", flag="--device", help="default auto: CUDA if present", choices=DEVICES)
    # Median pruning (Optuna's MedianPruner over each epoch's validation RMSE; docs/tune.md,
    # "Pruning"). Trial 0 (the starting point) is never pruned, whatever these say.
    pruning: bool = option(
        True, flag="--pruning", help="stop a trial whose epoch RMSE is worse than the median (default on)"
    )
    prune_startup_trials: int = option(  # finished trials before any pruning (the median needs some)
        2,
        flag="--prune-startup-trials",
        help="no pruning until this many trials finished (default 2)",
    )
    prune_warmup_epochs: int = option(  # a trial's first epochs that are never pruned
        0,
        flag="--prune-warmup-epochs",
        help="epochs at the start of each trial that are never pruned (default 0: from epoch 1)",
    )
    prune_interval_epochs: int = option(  # check every this many epochs (after the warm-up)
        1,
        flag="--prune-interval-epochs",
        help="check for pruning every this many epochs (default 1)",
    )
    # The starting point: trial 0 of a new study, and the answer when trials == 0 (tuning
    # off). Any of DEFAULTS' keys; the rest keep the train step's defaults.
    base_params: dict = field(default_factory=dict)
    # Run until the study holds this many finished trials (``trials`` is then not used): a
    # rerun of a killed study runs only the rest. None: ``trials`` new trials.
    total_trials: int | None = option(
        None,
        flag="--total-trials",
        help="run until the study holds this many finished trials: the same command resumes a "
        "killed study and runs only the rest (needs --storage to outlive the process)",
        one_of="budget",
    )
    workers: int = option(  # processes on the study (RDB storage required for more than 1)
        1,
        flag="--workers",
        help="processes tuning the one study in parallel, the CPUs' torch threads split between "
        "them (default 1; more need --storage)",
    )
    heartbeat_s: float = option(  # RDB storage: a trial silent for 2x this is FAIL (and retried)
        10.0,
        flag="--heartbeat",
        help="RDB storage: a trial whose process sent no heartbeat for 2x this many seconds is "
        "FAIL and run again (default 10)",
    )
    max_retries: int = 2  # how often a trial whose process died is run again
    connect_timeout_s: int = 10  # PostgreSQL: give up connecting after this many seconds

    def base(self) -> dict:
        unknown = sorted(set(self.base_params) - set(DEFAULTS))
        if unknown:
            raise UserError(f"base parameters {unknown}: expected some of {sorted(DEFAULTS)}")
        return {**DEFAULTS, **self.base_params}

    def validate(self) -> None:
        if self.trials < 0:
            raise UserError(f"--trials: expected 0 (off) or a positive number, got {self.trials}")
        if self.timeout_s is not None and not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise UserError(f"--timeout: expected a positive number of seconds, got {self.timeout_s}")
        if self.epochs < 1:
            raise UserError(f"--epochs: expected at least 1, got {self.epochs}")
        if self.max_rows is not None and self.max_rows < 1:
            raise UserError(f"--max-rows: expected a positive number of rows, got {self.max_rows}")
        if not self.study_name.strip():
            raise UserError("--study-name: expected a non-empty name")
        if self.device not in DEVICES:
            raise UserError(f"--device: expected one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.prune_startup_trials < 1:
            raise UserError(
                f"--prune-startup-trials: expected at least 1 (the median needs a finished trial), "
                f"got {self.prune_startup_trials}"
            )
        if self.prune_warmup_epochs < 0:
            raise UserError(f"--prune-warmup-epochs: expected 0 or more, got {self.prune_warmup_epochs}")
        if self.prune_interval_epochs < 1:
            raise UserError(f"--prune-interval-epochs: expected at least 1, got {self.prune_interval_epochs}")
        if self.total_trials is not None and self.total_trials < 1:
            raise UserError(f"--total-trials: expected a positive number, got {self.total_trials}")
        if self.workers < 1:
            raise UserError(f"--workers: expected at least 1, got {self.workers}")
        if self.workers > 1 and not shared_storage(self.storage):
            raise UserError(
                f"--workers {self.workers}: needs --storage with an RDB URL the workers share "
                f"(sqlite:///study.db, postgresql://...), got {redact(self.storage)}"
            )
        if not (math.isfinite(self.heartbeat_s) and self.heartbeat_s > 0):
            raise UserError(f"--heartbeat: expected a positive number of seconds, got {self.heartbeat_s}")
        if self.max_retries < 0:
            raise UserError(f"--max-retries: expected 0 or more, got {self.max_retries}")
        if self.connect_timeout_s < 1:
            raise UserError(f"connect_timeout_s: expected at least 1 second, got {self.connect_timeout_s}")
        if is_postgres(self.storage):
            sqlalchemy_url(self.storage)  # a malformed URL is one line here

    def to_dict(self) -> dict:
        return {**asdict(self), "storage": redact(self.storage)}


def shared_storage(storage: str) -> bool:
    """An RDB URL several processes can open (not in-memory, not SQLite's ``:memory:``)."""
    if not storage or "://" not in storage:
        return False
    return not (storage.startswith("sqlite") and (storage.rstrip("/").endswith(":") or ":memory:" in storage))


def redact(storage: str) -> str:
    """The storage URL without its password (``postgresql://u:***@host/db``, also a
    ``?password=`` query parameter); "in-memory" for ""."""
    if not storage:
        return "in-memory"
    masked = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", storage)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", masked)


# The PostgreSQL URL schemes taken, and the SQLAlchemy dialect+driver they are run with: Optuna
# opens RDB URLs with SQLAlchemy, whose plain ``postgresql://`` means psycopg2; fareflow ships
# psycopg 3 (``postgresql+psycopg://``), so the plain forms are mapped to it.
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
POSTGRES_DRIVER = "postgresql+psycopg"


def is_postgres(storage: str) -> bool:
    return storage.partition("://")[0] in POSTGRES_SCHEMES and "://" in storage


def sqlalchemy_url(storage: str) -> str:
    """The URL Optuna is given: ``postgresql://`` and ``postgres://`` become
    ``postgresql+psycopg://`` (psycopg 3); other URLs (sqlite, mysql, an explicit driver) as they
    are. ``postgresql://`` with no host, user or database leaves them to libpq's environment
    (``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``): how the cluster Job
    passes its Secret without a password in any URL, argv or log."""
    if not is_postgres(storage):
        return storage
    scheme, _, rest = storage.partition("://")
    url = f"{POSTGRES_DRIVER}://{rest}"
    try:
        from sqlalchemy.engine import make_url

        make_url(url).port  # noqa: B018 - parses the port (a non-number raises ValueError)
    except ImportError:  # the CLI's --help and config checks do not need SQLAlchemy
        pass
    except Exception as err:  # noqa: BLE001 - sqlalchemy.exc.ArgumentError, ValueError
        raise UserError(f"--storage {redact(storage)}: not a PostgreSQL URL ({err})") from None
    return url


def postgres_endpoint(storage: str) -> str:
    """``host:port`` a PostgreSQL URL connects to (what libpq would use: the URL's, else
    ``PGHOST``/``PGPORT``, else localhost:5432), for messages; never the user or password."""
    import os

    from sqlalchemy.engine import make_url

    url = make_url(sqlalchemy_url(storage))
    host = url.host or url.query.get("host") or os.environ.get("PGHOST") or "localhost"
    port = url.port or url.query.get("port") or os.environ.get("PGPORT") or 5432
    return f"{host}:{port}"
