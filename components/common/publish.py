"""Publishing a step's result, one way for every step and both ways a step runs.

The protocol: a step's result has ``summary()`` (JSON-able: the task's output, ``--summary-json``)
and ``metrics()`` (the numbers logged to the kfp ``Metrics`` artifact); its rendering is the
step's report module's ``render_html(result)``/``render_markdown(result)``, passed beside it (a
result is built in the step's core, below its report, so it cannot render itself).

The publisher: ``publish_cli`` writes ``--report-dir`` (``report.html`` + ``summary.md``) and
``--summary-json``; ``publish_component`` writes a component's ``HTML``/``Markdown``/``Metrics``
artifacts (kfp artifacts duck-typed: ``.path``, ``.uri``, ``.log_metric``) and returns the summary
with the artifacts' URIs. No kfp import here."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from .artifacts import save_metrics, save_reports

REPORT_HTML = "report.html"
SUMMARY_MD = "summary.md"

Render = Callable[[Any], str]


class Summarized(Protocol):
    """What a CLI publishes of a result: its summary (a CLI logs no metrics)."""

    def summary(self) -> dict: ...


class StepResult(Summarized, Protocol):
    """What a step's run returns, as the publisher reads it."""

    def metrics(self) -> dict[str, float]: ...


def write_summary_json(summary: dict, path: str | Path, *, indent: int = 2) -> None:
    """``--summary-json``: the summary as JSON, parent directories created."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=indent) + "\n", encoding="utf-8")


def write_report_dir(directory: str | Path, html_text: str, markdown_text: str) -> None:
    """``--report-dir``: ``report.html`` (self-contained) and ``summary.md``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_HTML).write_text(html_text, encoding="utf-8")
    (out / SUMMARY_MD).write_text(markdown_text, encoding="utf-8")


def written_report(directory: str | Path) -> tuple[Render, Render]:
    """The renderers of a report already written to ``directory`` by ``write_report_dir`` (e.g.
    by rank 0 of a launched run, whose result object stays in its process)."""
    out = Path(directory)
    return (
        lambda _result: (out / REPORT_HTML).read_text(encoding="utf-8"),
        lambda _result: (out / SUMMARY_MD).read_text(encoding="utf-8"),
    )


def publish_cli(
    result: Summarized,
    render_html: Render | None = None,
    render_markdown: Render | None = None,
    *,
    summary_json: str | None = None,
    report_dir: str | None = None,
) -> dict:
    """A CLI's outputs for ``result``: the report directory, then the summary JSON; returns the
    summary. A step without a report (no renderers) takes no ``report_dir``."""
    summary = result.summary()
    if report_dir:
        if render_html is None or render_markdown is None:
            raise ValueError("report_dir given for a result without a report")
        write_report_dir(report_dir, render_html(result), render_markdown(result))
    if summary_json:
        write_summary_json(summary, summary_json)
    return summary


def publish_component(
    result: StepResult,
    render_html: Render | None = None,
    render_markdown: Render | None = None,
    *,
    report=None,
    summary_md=None,
    metrics=None,
    artifacts: Mapping[str, Any] | None = None,
) -> dict:
    """A kfp component's outputs for ``result``: the ``report`` (HTML) and ``summary_md``
    (Markdown) artifacts, ``result.metrics()`` logged to ``metrics`` and saved to its file; returns
    the summary with ``"artifacts"``: the URIs of the report artifacts and of ``artifacts``."""
    if (report, summary_md) != (None, None):
        if None in (report, summary_md, render_html, render_markdown):
            raise ValueError("the report and summary_md artifacts need each other and both renderers")
        save_reports(report, summary_md, render_html(result), render_markdown(result))
    if metrics is not None:
        for name, value in result.metrics().items():
            metrics.log_metric(name, value)
        save_metrics(metrics)
    summary = result.summary()
    uris = {name: a.uri for name, a in (("report", report), ("summary_md", summary_md)) if a is not None}
    summary["artifacts"] = uris | {name: a.uri for name, a in (artifacts or {}).items()}
    return summary
