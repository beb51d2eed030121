from __future__ import annotations

import re

from components.train import core
from components.train.config import TrainConfig
from components.train.report import curve_scale, render_html, render_markdown


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
    assert "expected noise floor (generator truth)" in page and "baseline: train mean on test" in page
    assert "It is an expectation, not a bound" in page
    # the test RMSE appears in the metrics table as html_table formats it (4 significant digits)
    assert f"<td>{result.metrics['test_rmse']:.4g}</td>" in page
    assert page.count("<tr><td>") >= 5 + 3  # metric rows + one row per epoch
    md = render_markdown(result)
    assert md.startswith("# Train report")
    assert re.search(r"\| test \| " + re.escape(f"{result.metrics['test_rmse']:.4g}"), md)
    assert len([line for line in md.splitlines() if re.match(r"\| \d \|", line)]) == 3  # epochs table


def test_the_learning_curve_is_scaled_to_the_curves_not_to_a_far_baseline():
    history = [{"train_rmse": t, "validation_rmse": v} for t, v in ((3.0, 2.9), (2.5, 2.45), (2.4, 2.42))]
    low, high, drawn = curve_scale(history, {"baseline_rmse": 4.54, "best_possible_rmse": 2.3})
    assert not drawn  # 4.54 is far above curves between 2.4 and 3.0: it would squash them
    assert 2.0 < low < 2.3 and 3.0 < high < 3.2  # the curves and the noise floor, with a margin
    low, high, drawn = curve_scale(history, {"baseline_rmse": 3.1})
    assert drawn and high > 3.1 and low < 2.4
