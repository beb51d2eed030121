"""A run directory's record files: their names, the atomic JSON write, the record reader and
the headline figures metrics.json keeps. Shared by ``pipelines.runs`` (listing, comparing,
retention), ``pipelines.local`` (writing them) and tracking (logging them); docs/runs.md."""

from __future__ import annotations

import json
from pathlib import Path

RUN_RECORD = "run.json"
SUMMARY = "summary.json"
METRICS = "metrics.json"

# The figures metrics.json keeps per step (numbers only; nested dicts flattened one level).
METRIC_KEYS = {
    "ingest": ("rows_read", "rows_written", "rows_quarantined", "seconds"),
    "quality": ("rows_in", "rows_clean", "rows_rejected", "rejected_pct"),
    "sample": ("sample_rows", "attempts", "min_p_value"),
    "tune": ("best_validation_rmse", "default_validation_rmse"),
    "train": ("metrics", "best_epoch", "epochs_run", "seconds"),
}


def write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def step_metrics(outputs: dict) -> dict[str, float]:
    """Flat ``step.name -> number`` of the headline figures (what ``runs compare`` compares)."""
    flat: dict[str, float] = {}
    for step, keys in METRIC_KEYS.items():
        summary = outputs.get(step) or {}
        for key in keys:
            value = summary.get(key)
            items = value.items() if isinstance(value, dict) else [(key, value)]
            for name, v in items:
                if isinstance(v, int | float) and not isinstance(v, bool):
                    flat[f"{step}.{name}"] = v
    return flat


def load_record(run_dir: Path) -> dict | None:
    try:
        record = json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None
