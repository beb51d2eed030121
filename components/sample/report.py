"""HTML report (KFP ``HTML`` artifact) and Markdown summary of the sample step."""

from __future__ import annotations

import html

import numpy as np

from components.common import contract
from components.common.report import (
    Section,
    figure_to_data_uri,
    html_page,
    html_table,
    img_tag,
    markdown_table,
    new_figure,
    paragraph,
)

from . import hashing
from .core import SPLITS, SampleResult

HISTOGRAM_COLUMNS: tuple[str, ...] = (contract.LABEL, "distance_km", "hour")
DISCRETE_COLUMNS: tuple[str, ...] = ("year", "month", "weekday", "hour")
_missing = set(HISTOGRAM_COLUMNS + DISCRETE_COLUMNS) - set(contract.CLEAN_SCHEMA.names)
assert not _missing, f"report columns not in CLEAN_SCHEMA: {_missing}"
SE_COLUMNS: tuple[str, ...] = (contract.LABEL, "distance_km", "hour")
_COLORS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#2ca02c"}

TEST_HEADERS = [
    "split",
    "column",
    "n",
    "population mean",
    "sample mean",
    "z",
    "p (z)",
    "KS D",
    "p (KS)",
    "ok",
]


def _mean(value: float) -> str:
    """Means with enough digits to see a difference (coordinates agree to 4 digits)."""
    return f"{value:.7g}"


def _test_rows(result: SampleResult) -> list[list]:
    check = result.last.check
    return [
        [t.split, t.column, t.n, _mean(t.population_mean), _mean(t.sample_mean), t.z, t.z_p, t.ks_stat, t.ks_p,
         "yes" if t.min_p >= check.threshold else "NO"]
        for t in check.tests
    ]  # fmt: skip


def _rows_table(result: SampleResult) -> tuple[list[list], list[str]]:
    rows = []
    for name in SPLITS:
        n = result.last.rows.get(name, 0)
        shards = result.shard_rows.get(name, [])
        shard_text = f"{min(shards):,}-{max(shards):,}" if shards else "not written"
        rows.append([name, n, n / max(sum(result.last.rows.values()), 1), len(shards) or "", shard_text])
    return rows, ["split", "rows", "share", "shards", "rows per shard"]


def _size_rows(result: SampleResult) -> tuple[list[list], list[str]]:
    size, stats = result.size, result.population.columns
    headers = ["n", "doubled to", "SE / sigma", "SE gain on doubling / sigma"]
    headers += [f"SE {c}" for c in SE_COLUMNS] + ["stops improving"]
    rows = []
    for s in size.steps:
        per_col = [stats[c].std * s.se_ratio for c in SE_COLUMNS]
        rows.append(
            [s.n, s.next_n, s.se_ratio, s.improvement_ratio, *per_col, "yes" if s.stops_improving else "no"]
        )
    return rows, headers


def _size_figure(result: SampleResult) -> str:
    size = result.size
    fig, ax = new_figure(6.4, 3.4)
    ns = np.array([s.n for s in size.steps], dtype=float)
    ax.loglog(ns, [s.se_ratio for s in size.steps], "o-", label="SE of the mean / sigma")
    ax.loglog(
        ns,
        [max(s.improvement_ratio, 1e-12) for s in size.steps],
        "s--",
        label="SE gain from doubling / sigma",
    )
    ax.axhline(size.tolerance, color="grey", lw=1, ls=":", label=f"tolerance {size.tolerance:g}")
    ax.axvline(size.rows, color="#b00020", lw=1, label=f"chosen n = {size.rows:,}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sample rows n")
    ax.legend(fontsize=8)
    return img_tag(figure_to_data_uri(fig), "standard error vs sample size")


def _histogram(result: SampleResult, column: str) -> str:
    population = result.population.reservoir.column(column).to_numpy(zero_copy_only=False).astype(float)
    fig, ax = new_figure(6.4, 3.4)
    if column in DISCRETE_COLUMNS:
        lo, hi = float(np.min(population)), float(np.max(population))
        bins = np.arange(lo - 0.5, hi + 1.5, 1.0)
    else:
        lo, hi = np.quantile(population, [0.0, 0.995])
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 61)
    ax.hist(
        population,
        bins=bins,
        density=True,
        color="#bbbbbb",
        label=f"population reservoir ({len(population):,})",
    )
    for name in SPLITS:
        table = result.splits.get(name)
        if table is None or table.num_rows == 0:
            continue
        values = table.column(column).to_numpy(zero_copy_only=False).astype(float)
        ax.hist(values, bins=bins, density=True, histtype="step", lw=1.4, color=_COLORS[name],
                label=f"{name} ({len(values):,})")  # fmt: skip
    ax.set_xlabel(column + (" (99.5% of the population shown)" if column not in DISCRETE_COLUMNS else ""))
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return img_tag(figure_to_data_uri(fig), f"{column}: population vs splits")


def _constant_note(check) -> str:
    names = ", ".join(check.constant_columns)
    return (
        f"Not tested: {names} (constant in the population, so every split matches it exactly; "
        "left out of the Bonferroni family)."
    )


def _method_notes(result: SampleResult) -> str:
    check = result.last.check
    key = ", ".join(hashing.KEY_COLUMNS)
    items = [
        f"Trip key ({key}) hashed with SplitMix64 over the fields' 64-bit values. Sample = the rows with the "
        "smallest sample hash (seed of the attempt); split = a second hash of the key with the base seed "
        f"(fractions {', '.join(f'{f:g}' for f in result.config.fractions)}), so a trip's split never depends on "
        "other rows, the attempt, or months added later.",
        f"Each split x column: two-sided z-test of the mean against the population mean/std (finite-population "
        f"corrected) and two-sample KS test against the population reservoir "
        f"({result.population.reservoir.num_rows:,} rows). Bonferroni: {check.family_size} tests, each must have "
        f"p >= {check.alpha:g} / {check.family_size} = {check.threshold:.3g}.",
        f"{', '.join(DISCRETE_COLUMNS)} are discrete (coordinates are snapped to blocks): the KS test assumes "
        "continuous data, so its p-values there are conservative (too large). The reservoir and the sample can "
        "share rows, which makes KS slightly conservative too. The z-test is not affected by either.",
        f"On failure the next seed is drawn, at most {result.config.max_attempts} attempts.",
    ]
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def render_html(result: SampleResult) -> str:
    a = result.last
    verdict = (
        '<p class="pass">PASSED</p>'
        if result.passed
        else f'<p class="fail">FAILED: {html.escape(result.failure_message())}</p>'
    )
    overview = [
        ["population rows", result.size.population_rows],
        ["sample rows", sum(a.rows.values())],
        ["seed used", a.seed],
        ["base seed", result.config.seed],
        ["attempts", len(result.attempts)],
        ["min p-value", a.check.min_p],
        ["p threshold (Bonferroni)", a.check.threshold],
        ["worst test", a.check.describe_worst()],
    ]
    rows, headers = _rows_table(result)
    sections = [
        Section("Overview", html_table(overview, ["", "value"]) + html_table(rows, headers)),
    ]
    size_body = paragraph(result.size.explanation())
    if result.size.mode == "auto" and result.size.steps:
        size_body += paragraph(
            "Definition: with sigma a column's standard deviation, the standard error of the mean of n rows is "
            "sigma / sqrt(n). Each doubling shrinks it by about 29%, so the rule is on the absolute gain: the chosen n "
            "is the smallest power of two (at least 1,024) where doubling would lower every feature column's standard "
            f"error by less than {result.size.tolerance:g} of that column's sigma (all rows if that is not below the "
            "population size). The SE is the infinite-population one: the sample stands for the trips the model will "
            "see, and without the finite-population correction more data never yields a smaller sample. Divided by "
            f"sigma the curve is the same for every column, so all {len(result.size.columns)} feature columns with "
            "sigma > 0 agree; the SE columns below show it in each column's own units (population sigma)."
        )
        size_rows, size_headers = _size_rows(result)
        size_body += html_table(size_rows, size_headers) + _size_figure(result)
    # the summary and the distributions first; the long table of every split x column test after
    sections.append(Section("Distributions", "".join(_histogram(result, c) for c in HISTOGRAM_COLUMNS)))
    sections.append(Section("Sample size", size_body))
    check_body = html_table(_test_rows(result), TEST_HEADERS)
    if a.check.constant_columns:
        check_body = paragraph(_constant_note(a.check)) + check_body
    sections.append(Section("Statistical check (last attempt)", check_body))
    attempt_rows = [
        [x.seed, x.check.min_p, x.check.describe_worst(), "yes" if x.passed else "no"]
        for x in result.attempts
    ]
    sections.append(Section("Attempts", html_table(attempt_rows, ["seed", "min p", "worst test", "passed"])))
    notes = _method_notes(result)
    if result.warnings:
        notes += (
            "<p><b>Warnings</b></p><ul>"
            + "".join(f"<li>{html.escape(w)}</li>" for w in result.warnings)
            + "</ul>"
        )
    sections.append(Section("Method", notes))
    return html_page("Sample: train / validation / test splits", sections, intro_html=verdict)


def render_markdown(result: SampleResult, lowest: int = 5) -> str:
    a = result.last
    head = "**PASSED**" if result.passed else f"**FAILED**: {result.failure_message()}"
    rows, headers = _rows_table(result)
    worst = sorted(a.check.tests, key=lambda t: t.min_p)[:lowest]
    lines = [
        "# Sample",
        "",
        head,
        "",
        markdown_table(rows, headers),
        "",
        f"- seed used: {a.seed} (base seed {result.config.seed}), attempts: {len(result.attempts)}",
        f"- min p-value: {a.check.min_p:.4g} (threshold {a.check.threshold:.3g} = alpha {a.check.alpha:g} / "
        f"{a.check.family_size} tests, Bonferroni)",
        f"- sample size: {result.size.explanation()}",
        *([f"- {_constant_note(a.check)}"] if a.check.constant_columns else []),
        "",
        f"Lowest p-values ({len(worst)} of {len(a.check.tests)} split x column rows):",
        "",
        markdown_table(
            [
                [
                    t.split,
                    t.column,
                    _mean(t.population_mean),
                    _mean(t.sample_mean),
                    t.z,
                    t.z_p,
                    t.ks_stat,
                    t.ks_p,
                ]
                for t in worst
            ],
            ["split", "column", "population mean", "sample mean", "z", "p (z)", "KS D", "p (KS)"],
        ),
    ]
    for w in result.warnings:
        lines.append(f"\n> warning: {w}")
    return "\n".join(lines) + "\n"


__all__ = ["render_html", "render_markdown"]
