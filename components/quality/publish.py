"""The quality components' shared tail (the one-task ``quality`` and the fan-out's
``quality_merge``): publish the result and its data sets' artifacts, then apply the gate."""

from __future__ import annotations

from components.common.publish import publish_component
from components.quality.report import render_html, render_markdown


def publish_quality(result, *, report, summary_md, metrics, clean, rejected, population_stats) -> dict:
    """Write the report/summary/metrics artifacts and the data sets' row counts, then raise
    ``GateFailed`` if the gate fails -- after every output is written, so the report shows why."""
    summary = publish_component(
        result, render_html, render_markdown, report=report, summary_md=summary_md, metrics=metrics,
        artifacts={"clean": clean, "rejected": rejected, "population_stats": population_stats},
    )  # fmt: skip
    clean.metadata.update({"rows": summary["rows_clean"], "partitions": summary["partitions"]})
    rejected.metadata.update({"rows": summary["rows_rejected"]})
    result.check_gate()
    return summary
