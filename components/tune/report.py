"""The tune step's report: self-contained HTML (optimization history, learning rate and batch
size against validation RMSE, the trials table) and a Markdown summary."""

from __future__ import annotations

import math

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

from .core import PARAM_NAMES, SEARCH_SPACE, TuneResult, redact

TRIAL_HEADERS = ["trial", "state", "validation RMSE", "epochs", *PARAM_NAMES, "seconds"]
STATE_STYLE = {"COMPLETE": ("o", "tab:blue"), "PRUNED": ("x", "tab:orange"), "FAIL": ("s", "tab:red")}


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def trial_rows(result: TuneResult) -> list[list]:
    rows = []
    for t in result.trials:
        p = t["params"]
        rows.append(
            [
                t["number"],
                t["state"],
                t["value"],
                t["epochs_run"],
                *(p.get(n) for n in PARAM_NAMES),
                t["seconds"],
            ]
        )
    return rows


def best_rows(result: TuneResult) -> list[list]:
    from .core import DEFAULTS

    return [[name, result.best_params[name], DEFAULTS[name]] for name in PARAM_NAMES]


def _history(result: TuneResult) -> str:
    fig, ax = new_figure()
    for state, (marker, color) in STATE_STYLE.items():
        pts = [
            (t["number"], t["value"]) for t in result.trials if t["state"] == state and _finite(t["value"])
        ]
        if pts:
            label = state.lower() + (" (at the epoch pruned)" if state == "PRUNED" else "")
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=label)
    best, xs, ys = math.inf, [], []
    for t in result.trials:
        if t["state"] == "COMPLETE" and _finite(t["value"]):
            best = min(best, t["value"])
        if math.isfinite(best):
            xs.append(t["number"])
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="black", label="best so far")
    if _finite(result.default_value):
        ax.axhline(result.default_value, color="grey", linestyle="--", label="train defaults (trial 0)")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation RMSE ($)")
    ax.set_title("Optimization history")
    ax.legend()
    return img_tag(figure_to_data_uri(fig), "validation RMSE per trial with the best so far")


def _param_scatter(result: TuneResult, name: str) -> str:
    fig, ax = new_figure(5.5, 4.0)
    for state, (marker, color) in STATE_STYLE.items():
        pts = [
            (t["params"][name], t["value"])
            for t in result.trials
            if t["state"] == state and name in t["params"] and _finite(t["value"])
        ]
        if pts:
            ax.scatter(
                [p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=state.lower()
            )
    if SEARCH_SPACE[name][0] == "log-uniform":
        ax.set_xscale("log")
    if SEARCH_SPACE[name][1] and SEARCH_SPACE[name][0] == "categorical":
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(SEARCH_SPACE[name][1]), [str(v) for v in SEARCH_SPACE[name][1]])
    ax.set_xlabel(name)
    ax.set_ylabel("validation RMSE ($)")
    ax.set_title(f"{name} vs validation RMSE")
    ax.legend()
    return img_tag(figure_to_data_uri(fig), f"{name} against validation RMSE per trial")


def _facts(result: TuneResult) -> list[list]:
    c = result.config
    counts = result.counts()
    return [
        ["best validation RMSE", result.best_value],
        ["train defaults' validation RMSE", result.default_value],
        ["best trial", result.best_trial],
        [
            "trials (complete / pruned / failed)",
            f"{counts['COMPLETE']} / {counts['PRUNED']} / {counts['FAIL']}",
        ],
        ["trials run now", result.new_trials],
        ["epochs per trial (at most)", c.epochs],
        ["rows per split (at most)", c.max_rows if c.max_rows is not None else "all"],
        ["seed", c.seed],
        ["study", c.study_name],
        ["storage", redact(c.storage)],
        ["seconds", result.seconds],
    ]


def render_html(result: TuneResult) -> str:
    intro = paragraph(result.note) if result.note else ""
    sections = [
        Section(
            "Best hyper-parameters", html_table(best_rows(result), ["parameter", "best", "train default"])
        ),
        Section("Study", html_table(_facts(result), ["", "value"])),
    ]
    if result.trials:
        sections += [
            Section("Optimization history", _history(result)),
            Section(
                "Parameters against validation RMSE",
                _param_scatter(result, "learning_rate") + _param_scatter(result, "batch_size"),
            ),
            Section(
                "Trials",
                paragraph("A pruned trial's RMSE is the last one it reported, at the epoch it stopped.")
                + html_table(trial_rows(result), TRIAL_HEADERS),
            ),
        ]
    space = [[name, kind, ", ".join(fmt(v) for v in values)] for name, (kind, values) in SEARCH_SPACE.items()]
    sections.append(
        Section("Search space", html_table(space, ["parameter", "distribution", "range / choices"]))
    )
    return html_page(f"Tune report: {result.config.study_name}", sections, intro_html=intro)


def render_markdown(result: TuneResult) -> str:
    lines = ["# Tune summary", ""]
    if result.note:
        lines += [f"_{result.note}_", ""]
    lines += [
        "## Best hyper-parameters",
        "",
        markdown_table(best_rows(result), ["parameter", "best", "train default"]),
    ]
    lines += ["", "## Study", "", markdown_table(_facts(result), ["", "value"])]
    if result.trials:
        lines += ["", "## Trials", "", markdown_table(trial_rows(result), TRIAL_HEADERS)]
    return "\n".join(lines) + "\n"
