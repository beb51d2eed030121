"""The tune step's report: self-contained HTML (the best parameters, the study's facts, the
figures of components.tune.plots, every trial, the search space) and a Markdown summary."""

from __future__ import annotations

from components.common.report import Section, fmt, html_page, html_table, markdown_table, paragraph

from .config import redact
from .core import TuneResult
from .plots import FIGURES, figure_sections, importance_absent_reason
from .space import PARAM_NAMES, SEARCH_SPACE

__all__ = ["FIGURES", "TRIAL_HEADERS", "best_rows", "render_html", "render_markdown", "trial_rows"]

TRIAL_HEADERS = ["trial", "state", "validation RMSE", "epochs", *PARAM_NAMES, "seconds"]


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
    from .config import DEFAULTS

    return [[name, result.best_params[name], DEFAULTS[name]] for name in PARAM_NAMES]


# ---------------------------------------------------------------- the report


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
        sections += figure_sections(result)
        sections.append(
            Section(
                "Trials",
                paragraph("A pruned trial's RMSE is the last one it reported, at the epoch it stopped.")
                + html_table(trial_rows(result), TRIAL_HEADERS),
            )
        )
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
        reason = importance_absent_reason(result)
        if reason:
            lines += ["", f"_{reason}_"]
        lines += ["", "## Trials", "", markdown_table(trial_rows(result), TRIAL_HEADERS)]
    return "\n".join(lines) + "\n"
