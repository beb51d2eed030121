"""The quality step's result as ``components.common.publish`` reads it, and the tail that the
``quality`` and ``quality_merge`` components share (no kfp import: artifacts are duck-typed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from components.common.publish import publish_component

from . import report as report_module
from .result import QualityResult


@dataclass(frozen=True)
class Published:
    """``QualityResult`` with the publish protocol's ``summary()`` and ``metrics()``. (The
    result's own ``summary`` is a field, the run's counts as the step's core, report and tests
    read them; renaming it would let the result carry the protocol itself.)"""

    result: QualityResult

    def summary(self) -> dict:
        """The task's output and ``--summary-json``: the counts, percentages by rule rounded to
        4 places (as in the metrics)."""
        s = self.result.summary
        return {k: v for k, v in s.items() if k != "rejected_pct_by_rule"} | {
            "rejected_pct_by_rule": {k: round(v, 4) for k, v in s["rejected_pct_by_rule"].items()}
        }

    def metrics(self) -> dict[str, float]:
        """rows_in, rows_clean, rows_rejected, reject_pct_total and reject_pct_<rule> per rule."""
        s = self.result.summary
        values: dict[str, float] = {
            "rows_in": float(s["rows_in"]),
            "rows_clean": float(s["rows_clean"]),
            "rows_rejected": float(s["rows_rejected"]),
            "reject_pct_total": round(s["rejected_pct"], 4),
        }
        for name, pct in s["rejected_pct_by_rule"].items():
            values[f"reject_pct_{name}"] = round(pct, 4)
        return values


def render_html(published: Published) -> str:
    return report_module.render_html(published.result)


def render_markdown(published: Published) -> str:
    return report_module.render_markdown(published.result)


def publish(result: QualityResult, *, html_path: str, markdown_path: str, metrics=None) -> dict:
    """The report files at two paths and the metrics logged (no artifact files); the summary.
    The components and the CLI publish through ``components.common.publish``."""
    published = Published(result)
    for path, text in ((html_path, render_html(published)), (markdown_path, render_markdown(published))):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    if metrics is not None:
        for name, value in published.metrics().items():
            metrics.log_metric(name, value)
    return published.summary()


def finish_component(
    result: QualityResult, *, clean, rejected, population_stats, report, summary_md, metrics
) -> dict:
    """The shared tail of the ``quality`` and ``quality_merge`` components: reports, metrics,
    artifact metadata, then the gate, which raises after every output is written so the report
    shows why."""
    summary = publish_component(
        Published(result),
        render_html,
        render_markdown,
        report=report,
        summary_md=summary_md,
        metrics=metrics,
        artifacts={"clean": clean, "rejected": rejected, "population_stats": population_stats},
    )
    clean.metadata.update({"rows": summary["rows_clean"], "partitions": summary["partitions"]})
    rejected.metadata.update({"rows": summary["rows_rejected"]})
    result.check_gate()
    return summary
