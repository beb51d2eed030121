"""Turn a QualityResult into the step's KFP outputs (no kfp import: metrics is duck-typed)."""

from __future__ import annotations

from pathlib import Path

from .report import render_html, render_markdown
from .result import QualityResult


def metric_values(result: QualityResult) -> dict[str, float]:
    """rows_in, rows_clean, rows_rejected, reject_pct_total and reject_pct_<rule> per rule."""
    s = result.summary
    values: dict[str, float] = {
        "rows_in": float(s["rows_in"]),
        "rows_clean": float(s["rows_clean"]),
        "rows_rejected": float(s["rows_rejected"]),
        "reject_pct_total": round(s["rejected_pct"], 4),
    }
    for name, pct in s["rejected_pct_by_rule"].items():
        values[f"reject_pct_{name}"] = round(pct, 4)
    return values


def publish(result: QualityResult, *, html_path: str, markdown_path: str, metrics=None) -> dict:
    """Write the report files and log metrics; return the summary (for the task's output)."""
    for path, text in ((html_path, render_html(result)), (markdown_path, render_markdown(result))):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    if metrics is not None:
        for name, value in metric_values(result).items():
            metrics.log_metric(name, value)
    return {k: v for k, v in result.summary.items() if k != "rejected_pct_by_rule"} | {
        "rejected_pct_by_rule": {k: round(v, 4) for k, v in result.summary["rejected_pct_by_rule"].items()}
    }


def finish_component(
    result: QualityResult, *, clean, rejected, population_stats, report, summary_md, metrics
) -> dict:
    """The shared tail of the ``quality`` and ``quality_merge`` components (kfp artifacts
    duck-typed): reports, metrics (also saved to their file), artifact metadata, then the
    gate, which raises after every output is written so the report shows why."""
    from components.common.artifacts import save_metrics

    summary = publish(result, html_path=report.path, markdown_path=summary_md.path, metrics=metrics)
    save_metrics(metrics)
    clean.metadata.update({"rows": summary["rows_clean"], "partitions": summary["partitions"]})
    rejected.metadata.update({"rows": summary["rows_rejected"]})
    summary["artifacts"] = {
        "report": report.uri,
        "summary_md": summary_md.uri,
        "clean": clean.uri,
        "rejected": rejected.uri,
        "population_stats": population_stats.uri,
    }
    result.check_gate()
    return summary
