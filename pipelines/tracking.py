"""Experiment tracking: each finished ``fareflow run`` (succeeded, failed or interrupted)
logged to MLflow, and the cluster pipeline's tracking step.

``track_finished_run`` (with ``add_arguments``' flags) and ``log_run`` (``fareflow runs log``)
log a run kept in WORKDIR/RUN-ID/ and write the result into its run.json (``tracking``);
``log_pipeline_run`` logs the cluster pipeline's run to the server the platform ConfigMap
names. A tracking failure never fails a run: one warning line naming the URI. What is logged:
``pipelines.tracked``; the MLflow calls: ``pipelines.mlflow_store``; docs/runs.md."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pipelines.mlflow_store import (
    ARTIFACTS_DIR,
    DB_NAME,
    DEFAULT_EXPERIMENT,
    TRACKING_URI_ENV,
    error_line,
    log_tracked,
    resolve_uri,
)
from pipelines.tracked import TrackingError, from_outputs, from_run_dir


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
    from pipelines import records

    record = records.load_record(run_dir)
    if record is not None:
        record["tracking"] = entry
        records.write_json(run_dir / records.RUN_RECORD, record)


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
            print(f"warning: not logged to MLflow: ConfigMap {namespace}/fareflow-cluster: {error_line(err)}")
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
