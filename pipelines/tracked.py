"""What MLflow gets for a fareflow run, as pure data: ``from_run_dir`` (a run kept under
WORKDIR/RUN-ID/) and ``from_outputs`` (the cluster pipeline's step summaries) build a
``TrackedRun``: tags, params, metrics, step series and artifact files. No MLflow here; what
each holds is in docs/runs.md#what-each-mlflow-run-holds."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from components.common.errors import UserError

RUN_ID_TAG = "fareflow.run_id"
MODEL_FILES = ("model.json", "model.npz")
MAX_MODEL_BYTES = 64 * 1024 * 1024  # a bigger model.npz is not copied (the model stays in the run)
# The training settings logged as params (train.NAME), from the train step's config.
TRAIN_PARAMS = ("learning_rate", "batch_size", "hidden", "weight_decay", "dropout", "patience", "device")
EPOCH_SERIES = ("validation_rmse", "train_rmse", "validation_mae")


class TrackingError(UserError):
    """The run could not be logged (what failed, and where)."""


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
    from pipelines import records

    record = records.load_record(run_dir)
    if record is None:
        raise TrackingError(f"{run_dir / records.RUN_RECORD}: missing or not a run record")
    outputs = _read_json(run_dir / records.SUMMARY) or {}
    metrics_file = _read_json(run_dir / records.METRICS)
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
        (run_dir / name, None) for name in (records.RUN_RECORD, records.METRICS, records.SUMMARY)
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
    params, metrics (``records.step_metrics``), series and model as ``from_run_dir``."""
    from pipelines import records

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
        metrics={k: float(v) for k, v in records.step_metrics(outputs).items()},
        series=series_of(outputs),
    )
    tracked.artifacts = _model_artifacts(model_dir, tracked.tags)
    return tracked
