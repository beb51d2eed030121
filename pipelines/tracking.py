"""Experiment tracking: each finished ``fareflow run`` (succeeded, failed or interrupted) logged
to MLflow, so ``mlflow ui`` shows every run and compares them.

One MLflow run per fareflow run, in the experiment ``fareflow`` (``--experiment``), named by
the fareflow run id:

- tags: ``fareflow.run_id``, ``fareflow.status`` (and ``fareflow.error``, the one line, when it
  failed), ``fareflow.source``, ``fareflow.seed``, ``fareflow.code.version`` / ``.git`` /
  ``.dirty`` / ``.digest`` / ``.label``, ``fareflow.model_version`` (model.json), and MLflow's
  own ``mlflow.source.git.commit``;
- params: run.json's ``parameters`` (seed, epochs, tune trials, train workers/backend), the
  generated data's rows and months, ``caching``, and the settings the model was trained with
  (``train.learning_rate`` ...: tune's best, or the defaults);
- metrics: metrics.json's flat figures (``train.test_rmse`` ...), and step series: per epoch
  ``train.epoch.validation_rmse`` / ``train_rmse`` / ``validation_mae`` (step = epoch), per
  trial ``tune.trial.validation_rmse`` (step = trial number);
- artifacts: ``run.json``, ``metrics.json``, ``summary.json``, ``reports/``, the model's
  ``model/model.json`` and ``model/model.npz``, and ``logs/`` of a run that did not succeed.

Where: ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else the embedded store
``sqlite:///WORKDIR/mlflow.db`` with artifacts under ``WORKDIR/mlartifacts``. The result is
written back into run.json (``tracking``: logged or not, the URI, the MLflow run id). A
tracking failure (server down, bad URI) never fails a pipeline run: one warning line naming
the URI, and ``fareflow runs log RUN`` logs it later. MLflow (``mlflow-skinny``) is imported
only here, only when a run is logged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from components.common.errors import UserError

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_EXPERIMENT = "fareflow"
DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
RUN_ID_TAG = "fareflow.run_id"
MODEL_FILES = ("model.json", "model.npz")
MAX_MODEL_BYTES = 64 * 1024 * 1024  # a bigger model.npz is not copied (the model stays in the run)
# fareflow run status -> MLflow run status
STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "running": "KILLED"}
# The training settings logged as params (train.NAME), from the train step's config.
TRAIN_PARAMS = ("learning_rate", "batch_size", "hidden", "weight_decay", "dropout", "patience", "device")
EPOCH_SERIES = ("validation_rmse", "train_rmse", "validation_mae")
# Bounded retries so a tracking server that is down costs seconds, not minutes (MLflow's
# defaults: 7 retries, backoff factor 2, 120 s timeout). The user's own settings win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
QUIET_LOGGERS = ("mlflow", "alembic", "urllib3", "sqlalchemy")


class TrackingError(UserError):
    """The run could not be logged (what failed, and where)."""


def default_uri(workdir: Path) -> str:
    """The embedded store: an SQLite file in the runs directory."""
    return f"sqlite:///{Path(workdir).resolve() / DB_NAME}"


def resolve_uri(workdir: Path, uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else the embedded store under ``workdir``."""
    return uri or os.environ.get(TRACKING_URI_ENV) or default_uri(workdir)


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside an SQLite store's file
    (``DIR/mlartifacts``); None for a tracking server (its own ``--artifacts-destination``)."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or not parsed.path or parsed.path == "/:memory:":
        return None
    db = Path(unquote(parsed.path[1:] if parsed.path.startswith("//") else parsed.path))
    return (db.parent / ARTIFACTS_DIR).as_uri() if db.is_absolute() else None


# ---------------------------------------------------------------- what is logged


@dataclass
class TrackedRun:
    """One fareflow run as MLflow gets it (pure data; ``from_run_dir`` builds it)."""

    name: str
    status: str  # the fareflow status (succeeded, failed, interrupted)
    start_ms: int | None = None
    end_ms: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    artifacts: list[tuple[Path, str | None]] = field(default_factory=list)  # (file or dir, into)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _step(value) -> int | None:
    """A whole number (kfp.local hands integers back as floats: 3.0)."""
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None


def _param(value) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, list | tuple):
        return ",".join(_param(v) for v in value)
    return str(value)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _started_ms(record: dict) -> int | None:
    try:
        return int(dt.datetime.strptime(str(record.get("started")), "%Y-%m-%dT%H:%M:%S%z").timestamp() * 1000)
    except ValueError:
        return None


def params_of(record: dict, outputs: dict) -> dict[str, str]:
    """The pipeline parameters (run.json), the generated data set's, caching, and the settings
    the model was trained with."""
    params = {key: _param(value) for key, value in (record.get("parameters") or {}).items()}
    for key, value in (record.get("generated") or {}).items():
        params.setdefault(f"generated.{key}", _param(value))
    if record.get("caching") is not None:
        params["caching"] = _param(record["caching"])
    config = (outputs.get("train") or {}).get("config") or {}
    for key in TRAIN_PARAMS:
        if key in config:
            params[f"train.{key}"] = _param(config[key])
    return params


def series_of(outputs: dict) -> dict[str, list[tuple[int, float]]]:
    """Step series: the train step's per-epoch history and tune's per-trial validation RMSE."""
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in (outputs.get("train") or {}).get("history") or []:
        epoch = _step(entry.get("epoch"))
        for key in EPOCH_SERIES:
            value = _number(entry.get(key))
            if value is not None and epoch is not None:
                series.setdefault(f"train.epoch.{key}", []).append((epoch, value))
    for trial in (outputs.get("tune") or {}).get("trials") or []:
        value, number = _number(trial.get("value")), _step(trial.get("number"))
        if value is not None and number is not None and trial.get("state") == "COMPLETE":
            series.setdefault("tune.trial.validation_rmse", []).append((number, value))
    return series


def model_dir_of(outputs: dict) -> Path | None:
    model = ((outputs.get("train") or {}).get("artifacts") or {}).get("model")
    path = Path(str(model)) if model else None
    return path if path is not None and (path / "model.json").is_file() else None


def from_run_dir(run_dir: Path) -> TrackedRun:
    """What to log for the run kept in ``run_dir`` (run.json, metrics.json, summary.json,
    reports/, the model directory, logs/)."""
    from pipelines import runs

    record = runs.load_record(run_dir)
    if record is None:
        raise TrackingError(f"{run_dir / runs.RUN_RECORD}: missing or not a run record")
    outputs = _read_json(run_dir / runs.SUMMARY) or {}
    metrics_file = _read_json(run_dir / runs.METRICS)
    flat = metrics_file if isinstance(metrics_file, dict) else (record.get("metrics") or {})
    code = record.get("code") or {}
    params = record.get("parameters") or {}
    status = str(record.get("status"))
    tags = {
        RUN_ID_TAG: str(record.get("run_id") or run_dir.name),
        "fareflow.status": status,
        "fareflow.source": str(record.get("source")),
        "fareflow.seed": str(params.get("seed", "")),
        "mlflow.source.name": "fareflow run",
        "mlflow.source.type": "LOCAL",
    }
    for key in ("version", "git", "dirty", "digest", "label"):
        if code.get(key) is not None:
            tags[f"fareflow.code.{key}"] = str(code[key])
    if code.get("git"):
        tags["mlflow.source.git.commit"] = str(code["git"])
    if record.get("error"):
        tags["fareflow.error"] = str(record["error"]).splitlines()[0][:4000]
    artifacts: list[tuple[Path, str | None]] = [
        (run_dir / name, None) for name in (runs.RUN_RECORD, runs.METRICS, runs.SUMMARY)
    ]
    artifacts.append((run_dir / "reports", "reports"))
    if status != "succeeded":
        artifacts.append((run_dir / "logs", "logs"))
    model_dir = model_dir_of(outputs)
    artifacts += _model_artifacts(model_dir, tags)
    if model_dir is not None:
        tags["fareflow.model_dir"] = str(model_dir)
    start = _started_ms(record)
    seconds = _number(record.get("seconds"))
    return TrackedRun(
        name=tags[RUN_ID_TAG],
        status=status,
        start_ms=start,
        end_ms=start + int(seconds * 1000) if start is not None and seconds is not None else None,
        tags=tags,
        params=params_of(record, outputs),
        metrics={k: v for k, v in ((k, _number(v)) for k, v in flat.items()) if v is not None},
        series=series_of(outputs),
        artifacts=[(path, into) for path, into in artifacts if path.exists()],
    )


def _log_run_record(client, run_id: str, path: Path, into: str | None) -> None:
    """run.json as the run left it: without its ``tracking`` entry, which says how an earlier
    attempt to log it went (stale the moment this one succeeds)."""
    import tempfile

    from pipelines import runs

    record = json.loads(path.read_text())
    record.pop("tracking", None)
    with tempfile.TemporaryDirectory(prefix="fareflow-track-") as tmp:
        copy = Path(tmp) / path.name
        runs.write_json(copy, record)
        client.log_artifact(run_id, str(copy), into)


def _model_artifacts(model_dir: Path | None, tags: dict[str, str]) -> list[tuple[Path, str | None]]:
    """model.json (+ model.npz when small) under ``model/``; the model version as a tag."""
    if model_dir is None or not (model_dir / "model.json").is_file():
        return []
    model = _read_json(model_dir / "model.json") or {}
    if model.get("model_version"):
        tags["fareflow.model_version"] = str(model["model_version"])
    found = []
    for name in MODEL_FILES:
        path = model_dir / name
        if path.is_file() and path.stat().st_size <= MAX_MODEL_BYTES:
            found.append((path, "model"))
    return found


def from_outputs(
    outputs: dict,
    *,
    name: str,
    source: str,
    parameters: dict,
    model_dir: Path | None = None,
    status: str = "succeeded",
    tags: dict[str, str] | None = None,
) -> TrackedRun:
    """A run known by its step summaries alone (the cluster pipeline's tracking step): the same
    params, metrics (``runs.step_metrics``), series and model as ``from_run_dir``."""
    from pipelines import runs

    all_tags = {
        RUN_ID_TAG: name,
        "fareflow.status": status,
        "fareflow.source": str(source),
        "fareflow.seed": _param(parameters.get("seed", "")),
        "mlflow.source.name": "fareflow pipeline",
        **(tags or {}),
    }
    record = {"parameters": parameters}
    tracked = TrackedRun(
        name=name,
        status=status,
        tags=all_tags,
        params=params_of(record, outputs),
        metrics={k: float(v) for k, v in runs.step_metrics(outputs).items()},
        series=series_of(outputs),
    )
    tracked.artifacts = _model_artifacts(model_dir, tracked.tags)
    return tracked


def cluster_tracking_uri(config: dict[str, str] | None) -> str:
    """The tracking server the platform ConfigMap names: ``MLFLOW_TRACKING_URI``, else
    ``http://MLFLOW_TRACKING_HOST.NAMESPACE.svc:MLFLOW_TRACKING_PORT`` (components/mlflow
    sets host and port); "" when it names none."""
    config = config or {}
    if config.get("MLFLOW_TRACKING_URI", "").strip():
        return config["MLFLOW_TRACKING_URI"].strip()
    host = config.get("MLFLOW_TRACKING_HOST", "").strip()
    if not host:
        return ""
    namespace = config.get("NAMESPACE", "").strip()
    port = config.get("MLFLOW_TRACKING_PORT", "").strip() or "5000"
    return f"http://{host}{'.' + namespace + '.svc' if namespace and '.' not in host else ''}:{port}"


def log_pipeline_run(
    outputs: dict,
    *,
    namespace: str,
    name: str,
    source: str,
    parameters: dict,
    model_dir: Path | None,
    tags: dict[str, str] | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    config: dict[str, str] | None = None,
) -> str:
    """The cluster pipeline's tracking step: log the run to the server the ConfigMap
    (``fareflow-cluster`` in ``namespace``; ``config`` given: that instead) names. Returns the
    MLflow run id, or "" when no server is named or logging failed (one warning line: a
    tracking failure never fails the pipeline)."""
    if config is None:
        from components.common import k8s_api

        try:
            config = k8s_api.config_map("fareflow-cluster", namespace)
        except Exception as err:
            print(f"warning: not logged to MLflow: ConfigMap {namespace}/fareflow-cluster: {_one_line(err)}")
            return ""
    uri = cluster_tracking_uri(config)
    if not uri:
        print("MLflow: no tracking server in the fareflow-cluster ConfigMap (components/mlflow adds one)")
        return ""
    try:
        tracked = from_outputs(
            outputs, name=name, source=source, parameters=parameters, model_dir=model_dir, tags=tags
        )
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            summary = Path(tmp) / "summary.json"
            summary.write_text(json.dumps(outputs, indent=2, default=str) + "\n", encoding="utf-8")
            tracked.artifacts.append((summary, None))
            where = log_tracked(tracked, uri, experiment)
    except TrackingError as err:
        print(f"warning: not logged to MLflow: {err}")
        return ""
    print(f"MLflow: run {where['mlflow_run_id']} in experiment {experiment!r} at {uri}")
    return where["mlflow_run_id"]


# ---------------------------------------------------------------- logging


@contextlib.contextmanager
def _mlflow_quietly():
    """MLflow's HTTP settings bounded (unless the user set them) and its, alembic's and
    urllib3's log lines held back for the call; everything restored after."""
    saved_env = {key: os.environ.get(key) for key in HTTP_DEFAULTS}
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import mlflow  # noqa: F401  (it sets its loggers' levels when imported: import first)

    saved_levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:400]


def log_tracked(tracked: TrackedRun, uri: str, experiment: str = DEFAULT_EXPERIMENT) -> dict:
    """Log ``tracked`` to the MLflow store at ``uri``; return where (``mlflow_run_id``,
    ``experiment_id``, ``artifact_uri``). A run already logged there (same fareflow run id in
    the experiment) is not logged twice: its entry is returned with ``existing`` true.
    Raises TrackingError naming the URI on any failure."""
    with _mlflow_quietly():
        try:
            return _log(tracked, uri, experiment)
        except TrackingError:
            raise
        except Exception as err:  # MLflow, SQLAlchemy, requests: all mean "not logged"
            raise TrackingError(f"MLflow at {uri}: {_one_line(err)}") from err


def _log(tracked: TrackedRun, uri: str, experiment: str) -> dict:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from pipelines import runs

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        experiment_id = client.create_experiment(experiment, artifact_location=artifact_location(uri))
    else:
        experiment_id = found.experiment_id
    existing = client.search_runs(
        [experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{tracked.name}'", max_results=1
    )
    if existing:
        run = existing[0]
        return _where(run, experiment, experiment_id, existing=True)
    run = client.create_run(
        experiment_id, start_time=tracked.start_ms, tags=tracked.tags, run_name=tracked.name
    )
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, tracked.end_ms or now, 0) for k, v in sorted(tracked.metrics.items())]
        metrics += [
            Metric(k, v, tracked.end_ms or now, step)
            for k, points in tracked.series.items()
            for step, v in points
        ]
        params = [Param(k, v) for k, v in sorted(tracked.params.items())]
        # log_batch takes at most 1000 metrics and 100 params per call
        for i in range(0, len(params), 100):
            client.log_batch(run_id, params=params[i : i + 100])
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i : i + 1000])
        for path, into in tracked.artifacts:
            if path.is_dir():
                client.log_artifacts(run_id, str(path), into)
            elif path.name == runs.RUN_RECORD:
                _log_run_record(client, run_id, path, into)
            else:
                client.log_artifact(run_id, str(path), into)
        client.set_terminated(run_id, STATUS.get(tracked.status, "FAILED"), end_time=tracked.end_ms)
    except BaseException:
        with contextlib.suppress(Exception):
            client.set_tag(run_id, "fareflow.tracking", "incomplete: logging failed part way")
            client.set_terminated(run_id, "FAILED")
        raise
    return _where(client.get_run(run_id), experiment, experiment_id, existing=False)


def _where(run, experiment: str, experiment_id: str, existing: bool) -> dict:
    return {
        "mlflow_run_id": run.info.run_id,
        "experiment": experiment,
        "experiment_id": experiment_id,
        "artifact_uri": run.info.artifact_uri,
        "existing": existing,
    }


def log_run(run_dir: Path, uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> dict:
    """Log the run kept in ``run_dir`` and record the result in its run.json (``tracking``).

    ``uri`` None: ``$MLFLOW_TRACKING_URI``, else the embedded store of the runs directory
    (``run_dir``'s parent). Returns run.json's new ``tracking`` entry (plus ``existing``: it
    had been logged before, and was not logged again); raises TrackingError
    (after recording ``logged: false`` with the error) when it could not be logged."""

    run_dir = Path(run_dir)
    uri = resolve_uri(run_dir.parent, uri)
    started = time.perf_counter()
    try:
        where = log_tracked(from_run_dir(run_dir), uri, experiment)
    except TrackingError as err:
        _record(run_dir, {"logged": False, "uri": uri, "experiment": experiment, "error": str(err)})
        raise
    existing = where.pop("existing")
    entry = {"logged": True, "uri": uri, **where, "seconds": round(time.perf_counter() - started, 3)}
    _record(run_dir, entry)
    return {**entry, "existing": existing}


def _record(run_dir: Path, entry: dict) -> None:
    from pipelines import runs

    record = runs.load_record(run_dir)
    if record is not None:
        record["tracking"] = entry
        runs.write_json(run_dir / runs.RUN_RECORD, record)


# ---------------------------------------------------------------- the fareflow run hook


def add_arguments(parser) -> None:
    """``fareflow run``'s tracking flags."""
    group = parser.add_argument_group("experiment tracking (MLflow)")
    group.add_argument(
        "--tracking-uri",
        help=f"MLflow tracking URI to log the run to (default ${TRACKING_URI_ENV}, else "
        f"sqlite:///WORKDIR/{DB_NAME} with artifacts in WORKDIR/{ARTIFACTS_DIR})",
    )
    group.add_argument(
        "--experiment",
        default=DEFAULT_EXPERIMENT,
        help="MLflow experiment the run is logged in (default %(default)s)",
    )
    group.add_argument(
        "--no-tracking", action="store_true", help="do not log the run to MLflow (run.json says so)"
    )


def track_finished_run(run_dir: Path, args, prog: str = "fareflow run") -> dict | None:
    """Log a finished run as ``add_arguments``' flags say; never raises: a failure is one
    warning line on stderr naming the URI, and run.json records that it was not logged."""
    if getattr(args, "no_tracking", False):
        _record(run_dir, {"logged": False, "reason": "--no-tracking"})
        return None
    experiment = getattr(args, "experiment", None) or DEFAULT_EXPERIMENT
    try:
        return log_run(run_dir, getattr(args, "tracking_uri", None), experiment)
    except Exception as err:
        print(
            f"{prog}: warning: not logged to MLflow: {err}; the run is kept in {run_dir} "
            f"('fareflow runs log {Path(run_dir).name}' logs it later)",
            file=sys.stderr,
        )
        return None
