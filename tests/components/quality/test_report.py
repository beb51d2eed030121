from __future__ import annotations

import json
import re

from components.common import report as common
from components.common.publish import publish_cli, publish_component
from components.quality import report


def test_html_report_is_self_contained_with_the_four_figures(quality_run):
    result, _ = quality_run
    page = report.render_html(result)
    assert page.startswith("<!DOCTYPE html>")
    # no external resources: every src is an inline data URI, no stylesheet/script links
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in page and "<script" not in page and "http" not in page
    for alt in (
        "rows rejected per rule",
        "histogram of fare ($)",
        "histogram of great-circle distance",
        "scatter map of pick-up",
    ):
        assert alt in page
    for name in result.ruleset.names:
        assert name in page
    assert "FAIL" in page  # the fixture fails two thresholds; the report says so


def test_markdown_summary_has_rule_counts_and_profile(quality_run):
    result, _ = quality_run
    md = report.render_markdown(result)
    assert md.startswith("# fareflow data quality")
    row = next(line for line in md.splitlines() if line.startswith("| missing_fare |"))
    assert row.split("|")[2].strip() == "15" and row.split("|")[3].strip() == "1.25"
    assert "**Gate FAILED.**" in md and "| fare |" in md


def test_profile_null_pct_and_histograms_are_exact(quality_run):
    result, _ = quality_run
    raw = result.raw_profile
    assert raw["FAREAMOUNT"]["nulls"] == 15 and raw["FAREAMOUNT"]["rows"] == 1200
    assert raw["FAREAMOUNT"]["min"] == -12.5 and raw["FAREAMOUNT"]["max"] == 745557.28
    assert sum(result.histograms["fare"]["clean"]) == result.counts["rows_clean"]
    assert sum(result.histograms["fare"]["raw"]) == 1200 - 15  # null fares are not binned
    assert result.clean_profile["fare"]["quantiles"]["p50"] is not None


def test_metrics_hold_counts_and_reject_pct_per_rule(quality_run, tmp_path):
    result, _ = quality_run
    logged = {}

    class FakeMetrics:
        path, metadata, uri = str(tmp_path / "metrics"), logged, "file://metrics"

        def log_metric(self, name, value):
            logged[name] = value

    summary = publish_component(result, metrics=FakeMetrics())  # the result carries the protocol itself
    assert logged == result.metrics() and summary == {**result.summary(), "artifacts": {}}
    assert json.loads((tmp_path / "metrics").read_text()) == logged
    assert logged["rows_in"] == 1200 and logged["rows_clean"] == result.counts["rows_clean"]
    assert logged["reject_pct_missing_fare"] == 1.25
    assert {f"reject_pct_{n}" for n in result.ruleset.names} <= set(logged)


def test_common_report_helpers():
    fig, ax = common.new_figure()
    ax.plot([0, 1], [0, 1])
    uri = common.figure_to_data_uri(fig)
    assert uri.startswith("data:image/png;base64,") and len(uri) > 1000
    assert (
        common.markdown_table([["a|b", 1.5, None]], ["x", "y", "z"])
        == "| x | y | z |\n|---|---|---|\n| a\\|b | 1.5 |  |"
    )
    page = common.html_page("T<1>", [common.Section("S", common.html_table([["<b>", 12345]], ["h"]))])
    assert "T&lt;1&gt;" in page and "&lt;b&gt;" in page and "12,345" in page


def test_summary_is_the_counts_with_percentages_rounded_and_publish_cli_writes_it(quality_run, tmp_path):
    result, _ = quality_run
    summary = result.summary()
    assert {k: v for k, v in summary.items() if k != "rejected_pct_by_rule"} == {
        k: v for k, v in result.counts.items() if k != "rejected_pct_by_rule"
    }
    assert summary["rejected_pct_by_rule"] == {
        k: round(v, 4) for k, v in result.counts["rejected_pct_by_rule"].items()
    }
    publish_cli(
        result, report.render_html, report.render_markdown,
        summary_json=str(tmp_path / "s.json"), report_dir=str(tmp_path / "r"),
    )  # fmt: skip
    assert json.loads((tmp_path / "s.json").read_text()) == json.loads(json.dumps(summary))
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["report.html", "summary.md"]
    assert (tmp_path / "r" / "summary.md").read_text() == report.render_markdown(result)


def test_rules_prose_is_left_aligned_and_counts_are_integers(quality_run):
    """The rules table's scope, reason and SQL are text (left-aligned, class "text"); numbers
    stay right-aligned; the population table's row counts print as integers."""
    result, _ = quality_run
    page = report.render_html(result)
    rule = result.ruleset.rules[0]
    assert f'<td class="text">{common.html.escape(rule.description)}</td>' in page
    assert f'<td class="text">{common.html.escape(rule.reject_if)}</td>' in page
    assert "td.text { text-align: left; }" in page.replace("td:first-child, th:first-child, ", "")
    count = int(next(iter(result.stats["columns"].values()))["count"])
    assert f"<td>{count:,}</td>" in page
    assert '<td class="text">' not in common.html_table([[1, 2.5]], ["a", "b"])
