"""What ``fareflow run`` prints and keeps when the pipeline finished: ``print_summary`` (each
step's headline figures and where its artifacts are, cached steps marked, the serve command),
``add_truth`` (generated data's best possible RMSE beside the test RMSE) and
``drop_untuned_report`` (tuning off has no report). See docs/local.md."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path


def _fmt(value) -> str | None:
    """A summary value as one short table cell; None for bulky values (lists, big dicts)."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    if isinstance(value, dict):
        if len(value) > 12 or any(isinstance(v, dict | list) for v in value.values()):
            return None
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return None
    return str(value)


# The figures worth a glance per step (the whole summary goes to --summary-json).
HEADLINES = {
    "ingest": (
        "rows_read",
        "rows_written",
        "rows_quarantined",
        "quarantine_reasons",
        "files",
        "bytes_read",
        "seconds",
    ),
    "quality": ("rows_in", "rows_clean", "rows_rejected", "rejected_pct", "rejected_by_rule", "gate_passed"),
    "sample": ("rows", "sample_rows", "size_mode", "seed", "attempts", "min_p_value", "passed"),
    "tune": ("best_params", "best_validation_rmse", "default_validation_rmse", "states", "note"),
    "train": ("metrics", "best_epoch", "epochs_run", "world_size", "device", "seconds"),
}


def add_truth(outputs: dict, source: str) -> None:
    """Generated data comes with ``truth.json``: put the best RMSE any model can reach next to
    the trained model's test RMSE, so the summary says how close training got."""
    truth = Path(source) / "truth.json"
    metrics = (outputs.get("train") or {}).get("metrics")
    if not truth.is_file() or not isinstance(metrics, dict):
        return
    try:
        best = json.loads(truth.read_text()).get("best_rmse")
    except (json.JSONDecodeError, AttributeError):
        print(f"warning: {truth}: not a generator truth.json; best RMSE not shown", file=sys.stderr)
        return
    if isinstance(best, int | float):
        metrics["best_possible_rmse"] = best


def drop_untuned_report(outputs: dict) -> bool:
    """Tuning off (``--tune-trials 0``: a tune summary without trials) has nothing to report:
    the tune step's report artifacts are left out of the run's reports and summary. True when
    they were dropped."""
    tune = outputs.get("tune")
    if not isinstance(tune, dict) or tune.get("trials"):
        return False
    artifacts = tune.get("artifacts") or {}
    dropped = [artifacts.pop(name) for name in ("report", "summary_md") if name in artifacts]
    return bool(dropped)


def print_summary(
    outputs: dict, seconds: float, states: dict | None = None, run_dir: Path | None = None
) -> None:
    """Each step's headline figures, then where its artifacts are; cached steps are marked."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.taxi_fare import PipelineOutputs

    console = Console()
    states = states or {}
    for step in sorted(
        outputs, key=lambda s: PipelineOutputs._fields.index(s) if s in PipelineOutputs._fields else 99
    ):
        summary = dict(outputs[step] or {})
        artifacts = summary.pop("artifacts", {}) or {}
        cached = (states.get(step) or {}).get("state") == "cached"
        title = f"step: {step}" + (" (cached: reused from an earlier run)" if cached else "")
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key in HEADLINES.get(step, tuple(summary)):
            cell = _fmt(summary.get(key))
            if key in summary and cell is not None:
                table.add_row(key, cell)
        for name, uri in artifacts.items():
            table.add_row(f"[cyan]{name}[/cyan]", str(uri))
        console.print(table)
        if step == "train" and artifacts.get("model"):
            # One copyable line: never wrapped, the path shell-quoted, no markup read into it.
            command = (
                f"fareflow serve --model-name taxi-fare --model-dir {shlex.quote(str(artifacts['model']))}"
            )
            console.print(f"serve it: {command}", soft_wrap=True, markup=False, highlight=False)
    if run_dir is not None:
        console.print(
            f"run {run_dir.name}: {run_dir} (record, reports, metrics, logs)",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    console.print(f"[green]pipeline finished[/green] in {seconds:.1f}s")
