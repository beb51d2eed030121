"""The tune report's figures: Optuna's own matplotlib plots, drawn from the study the result's
trials table describes (rebuilt in memory: the report needs no storage and works for an
in-memory study that is gone): the optimization history, the slice plot over every searched
parameter, the parameter importances and the intermediate values (validation RMSE per epoch).

Optuna draws only COMPLETE trials in the history and the slice plot; nothing is hidden here:
a pruned trial is drawn on top at the validation RMSE of the epoch it stopped at (an orange
cross), a failed trial (no RMSE: its training diverged) as a red tick on the history's trial
axis, and every figure's caption counts what it shows. Trial and epoch axes have whole-number
ticks. The importances need at least two completed trials whose parameters differ; otherwise
the section says why there is no plot. Optuna's ExperimentalWarning for its matplotlib
functions is silenced around those calls only. The page around them: components.tune.report."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from components.common.report import Section, figure_to_data_uri, img_tag, paragraph

from .core import TuneResult
from .space import PARAM_NAMES, SEARCH_SPACE

TARGET_NAME = "validation RMSE ($)"
PRUNED_STYLE = {"marker": "x", "color": "tab:orange", "s": 50, "zorder": 5}
FAILED_COLOR = "tab:red"

# the report's figures: section title -> the alt text of its image (tests and readers find them)
FIGURES = {
    "history": "Optimization history: validation RMSE per trial with the best so far",
    "slice": "Slice plot: validation RMSE against each searched parameter",
    "importances": "Parameter importances for validation RMSE",
    "intermediate": "Intermediate values: validation RMSE per epoch of each trial",
}


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


# ---------------------------------------------------------------- the study, rebuilt


def distributions(trials: list[dict]) -> dict:
    """Optuna distributions of :data:`SEARCH_SPACE`, widened to hold every value the trials
    took (the enqueued defaults may lie outside a float range or among no categorical choice)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    out = {}
    for name, (kind, args) in SEARCH_SPACE.items():
        seen = [t["params"][name] for t in trials if name in t["params"]]
        if kind == "categorical":
            choices = list(args) + [v for v in dict.fromkeys(seen) if v not in args]
            out[name] = CategoricalDistribution(choices)
        else:
            low, high = min([args[0], *seen]), max([args[1], *seen])
            out[name] = FloatDistribution(low, high, log=kind == "log-uniform")
    return out


def study_of(result: TuneResult):
    """An in-memory Optuna study holding the result's trials (states, values, parameters,
    per-epoch values), for Optuna's plots."""
    import optuna

    dists = distributions(result.trials)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        study = optuna.create_study(direction="minimize", study_name=result.config.study_name)
    finally:
        optuna.logging.set_verbosity(verbosity)
    for t in result.trials:
        state = optuna.trial.TrialState[t["state"]]
        value = t["value"] if state != optuna.trial.TrialState.FAIL and _finite(t["value"]) else None
        if state == optuna.trial.TrialState.COMPLETE and value is None:
            state = optuna.trial.TrialState.FAIL  # a COMPLETE trial must have a value
        params = {k: v for k, v in t["params"].items() if k in dists}
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value,
                params=params,
                distributions={k: dists[k] for k in params},
                intermediate_values={int(k): float(v) for k, v in (t.get("intermediate") or {}).items()},
            )
        )
    return study


# ---------------------------------------------------------------- figures


@contextmanager
def _optuna_plotting() -> Iterator[None]:
    """Agg, rcParams restored afterwards (Optuna switches to the ggplot style), and Optuna's
    ExperimentalWarning for its matplotlib functions silenced (only that warning, and matplotlib's
    note on a one-value axis), restored afterwards."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import optuna

    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # a parameter all completed trials share: Optuna sets equal x limits, matplotlib widens them
        warnings.filterwarnings("ignore", "Attempting to set identical low and high xlims", UserWarning)
        yield


def _image(axes, key: str, *, tight: bool = True) -> str:
    """The figure of ``axes`` (one Axes or an array of them) as an <img>; the figure is closed.
    ``tight``: labels kept inside the figure (Optuna's importances cut long names off)."""
    import matplotlib.pyplot as plt
    import numpy as np

    first = np.ravel(axes)[0] if isinstance(axes, np.ndarray) else axes
    fig = first.figure
    try:
        if tight:
            fig.tight_layout()
        return img_tag(figure_to_data_uri(fig), FIGURES[key])
    finally:
        plt.close(fig)


def _integer_axis(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _pruned(result: TuneResult) -> list[dict]:
    return [t for t in result.trials if t["state"] == "PRUNED" and _finite(t["value"])]


def _failed(result: TuneResult) -> list[dict]:
    """Trials without a validation RMSE to draw (FAIL, or a COMPLETE one without a finite value)."""
    return [
        t
        for t in result.trials
        if t["state"] == "FAIL" or (t["state"] == "COMPLETE" and not _finite(t["value"]))
    ]


def history_axes(study, result: TuneResult):
    """Optuna's optimization history with the pruned and failed trials drawn on top."""
    from optuna.visualization.matplotlib import plot_optimization_history

    ax = plot_optimization_history(study, target_name=TARGET_NAME)
    pruned, failed = _pruned(result), _failed(result)
    if pruned:
        ax.scatter(
            [t["number"] for t in pruned],
            [t["value"] for t in pruned],
            label="pruned (RMSE at the epoch it stopped)",
            **PRUNED_STYLE,
        )
    if failed:
        ax.scatter(
            [t["number"] for t in failed],
            [0.02] * len(failed),
            transform=ax.get_xaxis_transform(),  # x in data, y in axes fraction: on the trial axis
            marker="|",
            s=200,
            color=FAILED_COLOR,
            label="failed (no RMSE)",
            zorder=5,
        )
    if _finite(result.default_value):
        ax.axhline(result.default_value, color="grey", linestyle="--", label="train defaults (trial 0)")
    numbers = [t["number"] for t in result.trials]
    ax.set_xlim(min(numbers) - 0.5, max(numbers) + 0.5)
    _integer_axis(ax.xaxis)
    ax.set_xlabel("trial")
    ax.legend(loc="best", fontsize="small")
    return ax


def _padded(values: list[float], log: bool, ratio: float = 0.05) -> tuple[float, float]:
    """Axis limits around ``values`` with Optuna's slice-plot padding (5 % of the range)."""
    if log:
        lo, hi = math.log10(min(values)), math.log10(max(values))
        pad = (hi - lo) * ratio or 0.1
        return 10 ** (lo - pad), 10 ** (hi + pad)
    lo, hi = min(values), max(values)
    pad = (hi - lo) * ratio or max(abs(lo) * ratio, 0.01)
    return lo - pad, hi + pad


def slice_axes(study, result: TuneResult):
    """Optuna's slice plot over every searched parameter, the pruned trials drawn on top (the
    x limits widened to hold them: Optuna fits them to the completed trials)."""
    import numpy as np
    from optuna.visualization.matplotlib import plot_slice

    axes = plot_slice(study, params=list(PARAM_NAMES), target_name=TARGET_NAME)
    flat = list(np.ravel(axes)) if isinstance(axes, np.ndarray) else [axes]
    names = sorted(PARAM_NAMES)  # Optuna's subplot order
    complete = [t for t in result.trials if t["state"] == "COMPLETE" and _finite(t["value"])]
    pruned = _pruned(result)
    dists = distributions(result.trials)
    handle = None
    for ax, name in zip(flat, names, strict=True):
        pts = [(t["params"][name], t["value"]) for t in pruned if name in t["params"]]
        if not pts:
            continue
        kind = SEARCH_SPACE[name][0]
        if kind == "categorical":
            # Optuna's categories: the completed trials' values in choice order, as repr labels;
            # a pruned trial's new value becomes the next category
            shown = {t["params"][name] for t in complete if name in t["params"]}
            order = [c for c in dists[name].choices if c in shown]
            order += [x for x in dict.fromkeys(x for x, _ in pts) if x not in shown]
            handle = ax.scatter([repr(x) for x, _ in pts], [y for _, y in pts], **PRUNED_STYLE)
            ax.set_xlim(-0.5, len(order) - 0.5)
        else:
            handle = ax.scatter([x for x, _ in pts], [y for _, y in pts], **PRUNED_STYLE)
            xs = [x for x, _ in pts] + [t["params"][name] for t in complete if name in t["params"]]
            ax.set_xlim(*_padded(xs, kind == "log-uniform"))
    from matplotlib.ticker import NullFormatter

    for ax, name in zip(flat, names, strict=True):  # readable ticks on narrow subplots
        kind = SEARCH_SPACE[name][0]
        if kind == "categorical":
            ax.tick_params(axis="x", labelrotation=35)
        elif kind == "log-uniform":
            ax.xaxis.set_minor_formatter(NullFormatter())
    fig = flat[0].figure
    fig.set_size_inches(3.3 * len(flat) + 1.5, 4.6)
    fig.set_layout_engine("constrained")  # room for the rotated labels and the colour bar
    for extra in fig.axes:  # the colour bar: trial numbers
        if extra not in flat and extra.get_ylabel() == "Trial":
            _integer_axis(extra.yaxis)
    if handle is not None:
        fig.legend([handle], ["pruned (RMSE at the epoch it stopped)"], loc="upper left", fontsize="small")
    return axes


def importance_absent_reason(result: TuneResult) -> str | None:
    """Why the study has no importances plot (None: it has one)."""
    complete = [t for t in result.trials if t["state"] == "COMPLETE" and _finite(t["value"])]
    if len(complete) < 2:
        return (
            f"No parameter importances: they need at least 2 completed trials, the study has {len(complete)}."
        )
    varying = [n for n in PARAM_NAMES if len({repr(t["params"].get(n)) for t in complete}) > 1]
    if not varying:
        return "No parameter importances: every completed trial has the same parameters."
    return None


def importance_axes(study):
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization.matplotlib import plot_param_importances

    # PED-ANOVA: Optuna's evaluator that needs no scikit-learn (fANOVA, the default, does)
    return plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), target_name=TARGET_NAME)


def intermediate_axes(study):
    from optuna.visualization.matplotlib import plot_intermediate_values

    ax = plot_intermediate_values(study)
    _integer_axis(ax.xaxis)
    ax.set_xlabel("epoch")
    ax.set_ylabel(TARGET_NAME)
    if ax.get_legend() is not None:
        ax.legend(loc="best", fontsize="small", ncols=2)
    return ax


def _counted(result: TuneResult) -> str:
    c = result.counts()
    return f"{c['COMPLETE']} completed, {c['PRUNED']} pruned, {c['FAIL']} failed"


def figure_sections(result: TuneResult) -> list[Section]:
    """The plot sections: each figure with a caption counting what it shows (no trial hidden)."""
    study = study_of(result)
    n_pruned, n_failed = len(_pruned(result)), len(_failed(result))
    sections = []

    def add(title: str, caption: str, draw: Callable[[], str]) -> None:
        with _optuna_plotting():
            sections.append(Section(title, paragraph(caption) + draw()))

    add(
        "Optimization history",
        f"Every trial of the study ({_counted(result)}): Optuna's history of the completed ones "
        "with the best so far, the pruned ones as orange crosses at the RMSE of the epoch they "
        "stopped at, the failed ones as red ticks on the trial axis.",
        lambda: _image(history_axes(study, result), "history"),
    )
    has_complete = result.counts()["COMPLETE"] > 0
    if has_complete:
        add(
            "Parameters against validation RMSE",
            f"Each searched parameter ({', '.join(sorted(PARAM_NAMES))}) against validation RMSE, "
            f"coloured by trial number; {n_pruned} pruned trial(s) as orange crosses"
            + (f"; {n_failed} failed trial(s) have no RMSE to draw." if n_failed else "."),
            lambda: _image(slice_axes(study, result), "slice", tight=False),
        )
    reason = importance_absent_reason(result)
    if reason is None:
        add(
            "Parameter importances",
            "How much each parameter mattered for reaching the best validation RMSE among the "
            "completed trials (Optuna's PED-ANOVA evaluator; a guide, not a measurement, with few "
            "trials).",
            lambda: _image(importance_axes(study), "importances"),
        )
    else:
        sections.append(Section("Parameter importances", paragraph(reason)))
    with_epochs = [t for t in result.trials if t.get("intermediate") and t["state"] != "FAIL"]
    if with_epochs:
        failed_epochs = [t for t in result.trials if t.get("intermediate") and t["state"] == "FAIL"]
        add(
            "Intermediate values",
            f"Validation RMSE after each epoch of {len(with_epochs)} trial(s) (completed and "
            "pruned: a pruned trial's line ends where it stopped)"
            + (
                f"; {len(failed_epochs)} failed trial(s) are not drawn (Optuna leaves them out)."
                if failed_epochs
                else "."
            ),
            lambda: _image(intermediate_axes(study), "intermediate"),
        )
    else:
        sections.append(
            Section("Intermediate values", paragraph("No trial reported a per-epoch validation RMSE."))
        )
    return sections
