"""The files of kfp artifacts (duck-typed: ``.path``, ``.metadata``), written for
``components.common.publish``. No kfp import."""

from __future__ import annotations

import json
import os


def save_metrics(metrics) -> None:
    """Write a ``Metrics`` artifact's values to its file as JSON.

    kfp keeps logged metrics in the artifact's metadata and writes no file, but
    ``kfp.local``'s cache treats an output whose file is missing as a cache miss, so
    a task with a ``Metrics`` output would never be served from the cache. The file
    also makes the metrics readable next to the other artifacts.
    """
    os.makedirs(os.path.dirname(metrics.path) or ".", exist_ok=True)
    with open(metrics.path, "w", encoding="utf-8") as f:
        json.dump(dict(metrics.metadata), f, indent=2, sort_keys=True)


def save_reports(report, summary_md, html_text: str, markdown_text: str) -> None:
    """Write a step's ``HTML`` report and ``Markdown`` summary artifacts."""
    for artifact, text in ((report, html_text), (summary_md, markdown_text)):
        os.makedirs(os.path.dirname(artifact.path) or ".", exist_ok=True)
        with open(artifact.path, "w", encoding="utf-8") as f:
            f.write(text)
