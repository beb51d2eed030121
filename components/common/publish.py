"""Publishing a step's result, one way for every step: the CLIs' ``--summary-json`` and
``--report-dir`` (``report.html`` + ``summary.md``). The kfp artifacts' files are written by
``components.common.artifacts``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

REPORT_HTML = "report.html"
SUMMARY_MD = "summary.md"


class StepResult(Protocol):
    """What a step's run returns: its JSON-able summary (the task's output, ``--summary-json``)."""

    def summary(self) -> dict: ...


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


def publish_cli(
    result: Any,
    render_html: Callable[[Any], str],
    render_markdown: Callable[[Any], str],
    *,
    summary_json: str | None = None,
    report_dir: str | None = None,
) -> None:
    """A CLI's outputs for ``result``: the report directory, then the summary JSON."""
    if report_dir:
        write_report_dir(report_dir, render_html(result), render_markdown(result))
    if summary_json:
        write_summary_json(result.summary(), summary_json)
