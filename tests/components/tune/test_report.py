"""The tune report and its figures (components.tune.plots): Optuna's own plots over every trial
(pruned and failed ones drawn or counted, whole-number trial and epoch axes), importances only
where they mean something."""

from __future__ import annotations

import math
import re
import warnings

import matplotlib
import numpy as np
import pytest

from components.tune import plots, report
from components.tune.config import TuneConfig
from components.tune.core import DEFAULTS, PARAM_NAMES, TuneResult

matplotlib.use("Agg")

P1 = {"learning_rate": 0.003, "batch_size": 256, "hidden": "64,32", "weight_decay": 1e-5, "dropout": 0.1}
P2 = {"learning_rate": 2e-4, "batch_size": 2048, "hidden": "256,128,64", "weight_decay": 1e-3, "dropout": 0.2}
P3 = {"learning_rate": 0.009, "batch_size": 512, "hidden": "64,32", "weight_decay": 1e-4, "dropout": 0.05}


def trial(number: int, state: str, value, params: dict, intermediate: dict) -> dict:
    return {
        "number": number,
        "state": state,
        "params": {**DEFAULTS, **params},
        "value": value,
        "epochs_run": len(intermediate),
        "intermediate": intermediate,
        "seconds": 1.5,
    }


def result_of(trials: list[dict]) -> TuneResult:
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    best = min(complete, key=lambda t: t["value"]) if complete else None
    return TuneResult(
        config=TuneConfig(splits_uri="splits", epochs=3),
        best_params=dict(best["params"]) if best else dict(DEFAULTS),
        best_value=best["value"] if best else None,
        default_value=trials[0]["value"] if trials and trials[0]["state"] == "COMPLETE" else None,
        trials=trials,
        new_trials=len(trials),
        best_trial=best["number"] if best else None,
    )


@pytest.fixture
def mixed() -> TuneResult:
    """Two completed trials, one pruned at epoch 2 (its RMSE far above the rest), one failed."""
    return result_of(
        [
            trial(0, "COMPLETE", 4.1, {}, {1: 4.5, 2: 4.3, 3: 4.1}),
            trial(1, "COMPLETE", 3.9, P1, {1: 4.4, 2: 4.0, 3: 3.9}),
            trial(2, "PRUNED", 5.2, P2, {1: 5.5, 2: 5.2}),
            trial(3, "FAIL", None, P3, {1: 6.0}),
        ]
    )


def images(page: str) -> list[str]:
    """The alt texts of the page's embedded PNGs."""
    return re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]+)">', page)


@pytest.fixture(autouse=True)
def _close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def test_a_study_with_completed_pruned_and_failed_trials_has_all_four_plots(mixed):
    page = report.render_html(mixed)
    assert images(page) == [report.FIGURES[k] for k in ("history", "slice", "importances", "intermediate")]
    for title in ("Optimization history", "Parameters against validation RMSE", "Parameter importances"):
        assert f"<h2>{title}</h2>" in page
    # every figure's caption counts what it shows
    assert "2 completed, 1 pruned, 1 failed" in page
    assert "1 pruned trial(s) as orange crosses; 1 failed trial(s) have no RMSE to draw" in page
    assert "Validation RMSE after each epoch of 3 trial(s)" in page
    assert "1 failed trial(s) are not drawn" in page
    # the report's text is kept: best trial, counts, the trials and parameters tables
    assert "<td>trials (complete / pruned / failed)</td><td>2 / 1 / 1</td>" in page
    assert "<td>best trial</td><td>1</td>" in page
    assert "<td>PRUNED</td>" in page and "<td>FAIL</td>" in page and "<td>256,128,64</td>" in page
    assert "No parameter importances" not in page


def test_the_history_draws_pruned_and_failed_trials_on_a_whole_number_trial_axis(mixed):
    with plots._optuna_plotting():
        ax = plots.history_axes(plots.study_of(mixed), mixed)
    labels = ax.get_legend_handles_labels()[1]
    assert "pruned (RMSE at the epoch it stopped)" in labels and "failed (no RMSE)" in labels
    offsets = {
        label: handle.get_offsets().tolist()
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)
        if hasattr(handle, "get_offsets")
    }
    assert offsets["pruned (RMSE at the epoch it stopped)"] == [[2.0, 5.2]]
    assert [x for x, _ in offsets["failed (no RMSE)"]] == [3.0]
    lo, hi = ax.get_xlim()
    assert lo < 0 and hi > 3  # trials 0..3 all inside the axes
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks)
    lo, hi = ax.get_ylim()
    assert lo < 3.9 and hi > 5.2  # the pruned trial's RMSE is inside the view


def test_the_slice_plot_covers_every_parameter_and_shows_pruned_trials(mixed):
    with plots._optuna_plotting():
        axes = plots.slice_axes(plots.study_of(mixed), mixed)
    flat = list(np.ravel(axes))
    assert sorted(ax.get_xlabel() for ax in flat) == sorted(PARAM_NAMES)
    for ax in flat:
        crosses = [
            c for c in ax.collections if c.get_offsets().shape[0] and c.get_label() != "Infeasible Trial"
        ]
        pruned = [c for c in crosses if np.allclose(c.get_offsets()[:, 1], [5.2])]
        assert len(pruned) == 1, ax.get_xlabel()
        x = float(pruned[0].get_offsets()[0, 0])
        lo, hi = ax.get_xlim()
        assert lo <= x <= hi, f"{ax.get_xlabel()}: pruned point at {x} outside {lo, hi}"
    colorbar = [a for a in flat[0].figure.axes if a not in flat]
    assert len(colorbar) == 1 and colorbar[0].get_ylabel() == "Trial"
    assert all(float(t).is_integer() for t in colorbar[0].get_yticks())


def test_intermediate_values_draw_completed_and_pruned_trials_per_whole_epoch(mixed):
    with plots._optuna_plotting():
        ax = plots.intermediate_axes(plots.study_of(mixed))
    lines = {line.get_label(): list(line.get_xdata()) for line in ax.get_lines()}
    assert lines == {"Trial0": [1, 2, 3], "Trial1": [1, 2, 3], "Trial2": [1, 2]}
    assert ax.get_xlabel() == "epoch"
    assert all(float(t).is_integer() for t in ax.get_xticks())


def test_a_single_trial_has_no_importances_and_says_why():
    result = result_of([trial(0, "COMPLETE", 4.1, {}, {1: 4.4, 2: 4.1})])
    page = report.render_html(result)
    assert images(page) == [report.FIGURES[k] for k in ("history", "slice", "intermediate")]
    reason = "No parameter importances: they need at least 2 completed trials, the study has 1."
    assert reason in page
    assert reason in report.render_markdown(result)


def test_completed_trials_with_the_same_parameters_have_no_importances():
    result = result_of(
        [
            trial(0, "COMPLETE", 4.1, {}, {1: 4.1}),
            trial(1, "COMPLETE", 4.2, {}, {1: 4.2}),
            trial(2, "PRUNED", 5.0, P1, {1: 5.0}),
        ]
    )
    assert plots.importance_absent_reason(result) == (
        "No parameter importances: every completed trial has the same parameters."
    )
    assert report.FIGURES["importances"] not in images(report.render_html(result))


def test_pruned_trials_do_not_count_towards_the_importances():
    result = result_of([trial(0, "COMPLETE", 4.1, {}, {1: 4.1}), trial(1, "PRUNED", 5.0, P1, {1: 5.0})])
    assert "the study has 1" in plots.importance_absent_reason(result)


def test_tuning_off_has_no_plots():
    result = TuneResult(TuneConfig(splits_uri="", trials=0), dict(DEFAULTS), None, None, note="tuning off")
    page = report.render_html(result)
    assert images(page) == [] and "tuning off" in page
    assert "## Trials" not in report.render_markdown(result)


def test_the_rebuilt_study_holds_every_trial_as_it_was(mixed):
    study = plots.study_of(mixed)
    got = [(t.number, t.state.name, t.value, dict(t.intermediate_values)) for t in study.trials]
    want = [(t["number"], t["state"], t["value"], t["intermediate"]) for t in mixed.trials]
    assert got == want
    assert [t.params for t in study.trials] == [t["params"] for t in mixed.trials]


def test_defaults_outside_the_search_space_widen_its_distributions():
    outside = {"learning_rate": 0.05, "batch_size": 4096, "hidden": "32"}
    dists = plots.distributions([trial(0, "COMPLETE", 4.0, outside, {})])
    assert dists["learning_rate"].high == 0.05 and dists["learning_rate"].log
    assert 4096 in dists["batch_size"].choices and "32" in dists["hidden"].choices
    result = result_of(
        [trial(0, "COMPLETE", 4.0, outside, {1: 4.0}), trial(1, "COMPLETE", 3.8, P1, {1: 3.8})]
    )
    assert len(images(report.render_html(result))) == 4


def test_rendering_leaks_no_warnings_filter_style_or_figures(mixed):
    import gc

    import matplotlib.pyplot as plt

    before_filters, before_style = list(warnings.filters), matplotlib.rcParams["axes.facecolor"]
    gc.collect()  # what earlier tests left (e.g. PostgreSQL connections) is finalized before, not inside
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report.render_html(mixed)
    # Optuna's ExperimentalWarning silenced (a finalizer's ResourceWarning is not the report's)
    assert [str(w.message) for w in caught if not issubclass(w.category, ResourceWarning)] == []
    assert warnings.filters == before_filters  # ... only around its calls
    assert matplotlib.rcParams["axes.facecolor"] == before_style  # Optuna's ggplot style undone
    assert plt.get_fignums() == []  # every figure closed


def test_a_real_study_renders(shared_splits):
    """End to end on a small real study: whatever pruned or completed, every trial is counted."""
    from components.tune import core

    result = core.run(
        TuneConfig(splits_uri=str(shared_splits), trials=3, epochs=2, max_rows=600, device="cpu"),
        log=lambda _m: None,
    )
    page = report.render_html(result)
    c = result.counts()
    assert f"{c['COMPLETE']} completed, {c['PRUNED']} pruned, {c['FAIL']} failed" in page
    assert report.FIGURES["history"] in images(page) and report.FIGURES["intermediate"] in images(page)
    assert all(math.isfinite(t["value"]) for t in result.trials if t["state"] == "COMPLETE")
