"""The MLflow client calls: ``log_tracked`` logs a ``TrackedRun`` to the store at a URI (once:
a run already there under its fareflow run id is not logged again) and raises
``TrackingError`` naming the URI on any failure. HTTP retries are bounded and MLflow's log
lines held back for the call. MLflow (``mlflow-skinny``) is imported only here, only when a
run is logged. See docs/runs.md#where-it-goes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipelines.tracked import RUN_ID_TAG, TrackedRun, TrackingError

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_EXPERIMENT = "fareflow"
DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# fareflow run status -> MLflow run status
STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "running": "KILLED"}
# Bounded retries so a tracking server that is down costs seconds, not minutes (MLflow's
# defaults: 7 retries, backoff factor 2, 120 s timeout). The user's own settings win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
QUIET_LOGGERS = ("mlflow", "alembic", "urllib3", "sqlalchemy")


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


def error_line(err: BaseException) -> str:
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
            raise TrackingError(f"MLflow at {uri}: {error_line(err)}") from err


def _log(tracked: TrackedRun, uri: str, experiment: str) -> dict:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from pipelines import records

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
            elif path.name == records.RUN_RECORD:
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


def _log_run_record(client, run_id: str, path: Path, into: str | None) -> None:
    """run.json as the run left it: without its ``tracking`` entry, which says how an earlier
    attempt to log it went (stale the moment this one succeeds)."""
    import tempfile

    from pipelines import records

    record = json.loads(path.read_text())
    record.pop("tracking", None)
    with tempfile.TemporaryDirectory(prefix="fareflow-track-") as tmp:
        copy = Path(tmp) / path.name
        records.write_json(copy, record)
        client.log_artifact(run_id, str(copy), into)


def _where(run, experiment: str, experiment_id: str, existing: bool) -> dict:
    return {
        "mlflow_run_id": run.info.run_id,
        "experiment": experiment,
        "experiment_id": experiment_id,
        "artifact_uri": run.info.artifact_uri,
        "existing": existing,
    }
