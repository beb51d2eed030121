from __future__ import annotations

import re

from components.train import core
from components.train.config import TrainConfig
from components.train.report import render_html, render_markdown


def test_report_has_curves_scatter_residuals_and_metrics(splits, tmp_path):
    truth = tmp_path / "truth.json"
    truth.write_text('{"best_rmse": 0.5}')
    config = TrainConfig(
        str(splits), str(tmp_path / "m"), epochs=3, batch_size=64, device="cpu", truth_uri=str(truth)
    )
    result = core.run(config)
    page = render_html(result)
    assert page.count('src="data:image/png;base64,') == 3
    for alt in (
        "training and validation RMSE per epoch",
        "predicted versus actual",
        "histogram of test residuals",
    ):
        assert alt in page
    assert "best possible (generator truth)" in page and "baseline: train mean on test" in page
    # the test RMSE appears in the metrics table as html_table formats it (4 significant digits)
    assert f"<td>{result.metrics['test_rmse']:.4g}</td>" in page
    assert page.count("<tr><td>") >= 5 + 3  # metric rows + one row per epoch
    md = render_markdown(result)
    assert md.startswith("# Train report")
    assert re.search(r"\| test \| " + re.escape(f"{result.metrics['test_rmse']:.4g}"), md)
    assert len([line for line in md.splitlines() if re.match(r"\| \d \|", line)]) == 3  # epochs table
