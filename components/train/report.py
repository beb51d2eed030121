"""The train step's report: self-contained HTML (learning curves, predicted vs actual and
residuals on test, metrics) and a Markdown summary."""

from __future__ import annotations

import numpy as np

from components.common.report import (
    Section,
    figure_to_data_uri,
    fmt,
    html_page,
    html_table,
    img_tag,
    markdown_table,
    new_figure,
    paragraph,
)

from .result import TrainResult

METRIC_ROWS: tuple[tuple[str, str], ...] = (
    ("train", "train"),
    ("validation", "validation"),
    ("test", "test"),
)


def metric_rows(result: TrainResult) -> list[list]:
    m = result.metrics
    rows = [[name, m[f"{key}_rmse"], m[f"{key}_mae"]] for name, key in METRIC_ROWS]
    rows.append(["baseline: train mean on test", m["baseline_rmse"], None])
    if "best_possible_rmse" in m:
        rows.append([NOISE_FLOOR_LABEL, m["best_possible_rmse"], None])
    return rows


NOISE_FLOOR_LABEL = "expected noise floor (generator truth)"
NOISE_FLOOR_NOTE = (
    "The expected noise floor is the RMSE of the generator's own expected fare, E[fare | origin, "
    "destination, pick-up time], over the clean rows (truth.json's best_rmse): the error left "
    "by the fare's noise alone. It is an expectation, not a bound -- on a finite test split a "
    "model can land slightly below it."
)


def history_rows(result: TrainResult) -> list[list]:
    return [
        [
            h["epoch"],
            h["train_rmse"],
            h["validation_rmse"],
            h["validation_mae"],
            round(h["rows_per_s"]),
            h["seconds"],
        ]
        for h in result.history
    ]


HISTORY_HEADERS = ["epoch", "train RMSE", "validation RMSE", "validation MAE", "rows/s", "seconds"]


def curve_scale(history: list[dict], metrics: dict) -> tuple[float, float, bool]:
    """The learning curve's y range and whether the mean baseline is drawn: the range of the
    curves (and the noise floor) with a margin; the baseline only when it is near them -- it is
    often far above, and drawn it would squash the curves into a line."""
    curves = [v for h in history for v in (h["train_rmse"], h["validation_rmse"]) if np.isfinite(v)]
    floor = metrics.get("best_possible_rmse")
    low = min([*curves, *([floor] if floor is not None else [])], default=0.0)
    high = max(curves, default=1.0)
    pad = 0.08 * (high - low or high or 1.0)
    baseline = metrics["baseline_rmse"]
    draw = baseline <= high + 3 * pad
    if draw:
        high = max(high, baseline)
    return max(0.0, low - pad), high + pad, draw


def _curve(result: TrainResult) -> str:
    fig, ax = new_figure()
    epochs = [h["epoch"] for h in result.history]
    ax.plot(epochs, [h["train_rmse"] for h in result.history], marker="o", label="train (during epoch)")
    ax.plot(epochs, [h["validation_rmse"] for h in result.history], marker="o", label="validation")
    low, high, draw_baseline = curve_scale(result.history, result.metrics)
    baseline, floor = result.metrics["baseline_rmse"], result.metrics.get("best_possible_rmse")
    title = "Learning curve"
    if draw_baseline:
        ax.axhline(baseline, color="grey", linestyle="--", label="mean baseline (test)")
    else:
        title += f" (mean baseline {baseline:.3f}, off the scale)"
    if floor is not None:
        ax.axhline(floor, color="green", linestyle=":", label="expected noise floor")
    ax.axvline(result.best_epoch, color="black", alpha=0.3, label=f"best epoch ({result.best_epoch})")
    ax.set_ylim(low, high)
    ax.set_xticks(epochs)  # whole epochs
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE ($)")
    ax.set_title(title)
    ax.legend()
    return img_tag(figure_to_data_uri(fig), "training and validation RMSE per epoch")


def _scatter(result: TrainResult) -> str:
    fig, ax = new_figure(5.5, 5.0)
    actual, predicted = result.test_actual, result.test_predicted
    ax.scatter(actual, predicted, s=4, alpha=0.3)
    if actual.size:
        lo, hi = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, label="perfect")
        ax.legend()
    ax.set_xlabel("actual fare ($)")
    ax.set_ylabel("predicted fare ($)")
    ax.set_title(f"Test: predicted vs actual ({actual.size:,} rows shown)")
    return img_tag(figure_to_data_uri(fig), "predicted versus actual fare on the test split")


def _residuals(result: TrainResult) -> str:
    fig, ax = new_figure()
    residuals = result.test_predicted - result.test_actual
    mean = float(np.mean(residuals)) if residuals.size else float("nan")
    title = f"Test residuals (mean {mean:.3f})"
    if residuals.size:
        # the 0.5-99.5 % range: a few large misses would otherwise leave the bulk in one bar
        lo, hi = np.percentile(residuals, [0.5, 99.5])
        outside = int(np.count_nonzero((residuals < lo) | (residuals > hi)))
        ax.hist(residuals, bins=60, range=(float(lo), float(hi)) if hi > lo else None)
        if outside and hi > lo:
            title += f"; {outside} of {residuals.size:,} beyond [{lo:.1f}, {hi:.1f}] not shown"
    ax.axvline(0, color="black", linewidth=1)
    ax.set_xlabel("predicted - actual ($)")
    ax.set_ylabel("test rows")
    ax.set_title(title)
    return img_tag(figure_to_data_uri(fig), "histogram of test residuals")


def _headline(result: TrainResult) -> str:
    m = result.metrics
    gain = 1 - m["test_rmse"] / m["baseline_rmse"] if m["baseline_rmse"] else float("nan")
    stop = " (stopped early)" if result.stopped_early else ""
    workers = (
        f"{result.world_size} {'Horovod' if result.config.backend == 'horovod' else 'DDP'} processes ({result.backend})"
        if result.world_size > 1
        else "1 process"
    )
    return (
        f"Test RMSE {m['test_rmse']:.4f} vs {m['baseline_rmse']:.4f} for predicting the train mean "
        f"({gain:.1%} lower); best epoch {result.best_epoch} of {len(result.history)} run{stop}; "
        f"{result.rows['train']:,} train rows on {workers}, {result.device}; {m['rows_per_s']:,.0f} rows/s."
    )


def render_html(result: TrainResult) -> str:
    c = result.config
    settings = [
        ["splits", c.splits_uri],
        ["model", c.output_uri],
        ["hidden layers", ",".join(str(h) for h in c.hidden)],
        ["dropout", c.dropout],
        ["epochs (max)", c.epochs],
        ["batch size (global)", c.batch_size],
        ["learning rate", c.learning_rate],
        ["weight decay", c.weight_decay],
        ["patience", c.patience],
        ["seed", c.seed],
    ]
    note = paragraph(NOISE_FLOOR_NOTE) if "best_possible_rmse" in result.metrics else ""
    sections = [
        Section("Metrics", html_table(metric_rows(result), ["split", "RMSE", "MAE"]) + note),
        Section("Learning curve", _curve(result)),
        Section("Test predictions", _scatter(result) + _residuals(result)),
        Section("Epochs", html_table(history_rows(result), HISTORY_HEADERS)),
        Section("Settings", html_table(settings, ["setting", "value"])),
    ]
    return html_page("Train report", sections, intro_html=paragraph(_headline(result)))


def render_markdown(result: TrainResult) -> str:
    parts = [
        "# Train report",
        "",
        _headline(result),
        "",
        "## Metrics",
        "",
        markdown_table(metric_rows(result), ["split", "RMSE", "MAE"]),
        "",
        *([NOISE_FLOOR_NOTE, ""] if "best_possible_rmse" in result.metrics else []),
        "## Epochs",
        "",
        markdown_table(history_rows(result), HISTORY_HEADERS),
        "",
        f"Model: `{result.config.output_uri}` (hidden {fmt(list(result.config.hidden))}).",
        "",
    ]
    return "\n".join(parts)
