"""The one publisher: a CLI's --summary-json/--report-dir and a component's artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.common import publish


class Result:
    def __init__(self, rows: int) -> None:
        self.rows = rows

    def summary(self) -> dict:
        return {"rows": self.rows, "note": "ok"}

    def metrics(self) -> dict[str, float]:
        return {"rows": float(self.rows), "ratio": 0.5}


def render_html(result: Result) -> str:
    return f"<p>{result.rows} rows</p>"


def render_markdown(result: Result) -> str:
    return f"# {result.rows} rows\n"


class Artifact:
    """A kfp Output artifact as the publisher sees it (path, uri, metadata, log_metric)."""

    def __init__(self, path: Path) -> None:
        self.path, self.uri, self.metadata = str(path), f"file://{path}", {}

    def log_metric(self, name: str, value: float) -> None:
        self.metadata[name] = value


def test_cli_writes_the_report_dir_and_the_summary_json(tmp_path):
    summary = publish.publish_cli(
        Result(3), render_html, render_markdown,
        summary_json=str(tmp_path / "deep" / "s.json"), report_dir=str(tmp_path / "r"),
    )  # fmt: skip
    assert summary == {"rows": 3, "note": "ok"}
    assert json.loads((tmp_path / "deep" / "s.json").read_text()) == summary
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [publish.REPORT_HTML, publish.SUMMARY_MD]
    assert (tmp_path / "r" / "report.html").read_text() == "<p>3 rows</p>"
    assert (tmp_path / "r" / "summary.md").read_text() == "# 3 rows\n"


def test_cli_writes_only_what_is_asked_and_a_report_needs_renderers(tmp_path):
    assert publish.publish_cli(Result(1)) == {"rows": 1, "note": "ok"}
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="without a report"):
        publish.publish_cli(Result(1), report_dir=str(tmp_path / "r"))


def test_component_writes_reports_and_metrics_and_returns_the_summary_with_uris(tmp_path):
    report, md, metrics, data = (Artifact(tmp_path / "task" / n) for n in ("report", "summary_md", "m", "d"))
    summary = publish.publish_component(
        Result(7), render_html, render_markdown, report=report, summary_md=md, metrics=metrics,
        artifacts={"data": data},
    )  # fmt: skip
    assert Path(report.path).read_text() == "<p>7 rows</p>" and Path(md.path).read_text() == "# 7 rows\n"
    assert metrics.metadata == {"rows": 7.0, "ratio": 0.5}
    assert json.loads(Path(metrics.path).read_text()) == {"ratio": 0.5, "rows": 7.0}  # kfp.local's cache
    assert summary == {
        "rows": 7,
        "note": "ok",
        "artifacts": {"report": report.uri, "summary_md": md.uri, "data": data.uri},
    }


def test_component_without_a_report_and_mismatched_report_outputs(tmp_path):
    metrics = Artifact(tmp_path / "m")
    summary = publish.publish_component(Result(2), metrics=metrics)
    assert summary["artifacts"] == {} and metrics.metadata["rows"] == 2.0
    with pytest.raises(ValueError, match="need each other"):
        publish.publish_component(Result(2), render_html, report=Artifact(tmp_path / "r"))


def test_written_report_reads_back_what_write_report_dir_wrote(tmp_path):
    publish.write_report_dir(tmp_path, "<html/>", "# md\n")
    html, markdown = publish.written_report(tmp_path)
    assert (html(None), markdown(None)) == ("<html/>", "# md\n")


def test_results_known_by_their_summary_give_the_metrics_of_their_steps():
    """Ingest's and a launched training run's results are summaries; their metrics come from them."""
    from components.ingest.result import IngestResult
    from components.train.result import TrainSummary

    counts = {"rows_read": 3, "rows_written": 2, "rows_quarantined": 1, "bytes_read": 99, "seconds": 0.5}
    ingest = IngestResult({**counts, "files": 1})
    assert ingest.metrics() == counts and ingest.summary() == {**counts, "files": 1}
    rmse = {"test_rmse": 1.0, "validation_rmse": 1.1, "train_rmse": 0.9, "baseline_rmse": 4.5}
    train = TrainSummary({"metrics": {**rmse, "rows_per_s": 10.0, "test_mae": 0.7}, "best_epoch": 3})
    assert train.metrics() == {**rmse, "rows_per_s": 10.0, "best_epoch": 3}
    assert train.summary()["metrics"]["test_mae"] == 0.7
