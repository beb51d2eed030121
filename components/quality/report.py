"""The quality report: self-contained HTML (figures inline) and a Markdown summary."""

from __future__ import annotations

import html

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

from .layout import HISTOGRAMS, QUANTILES, RAW_DISTANCE, to_numpy
from .result import QualityResult

TITLE = "fareflow data quality"
QUANTILE_NOTE = (
    "null %, min and max are exact over all rows; quantiles are estimated from a uniform "
    "hash-keyed sample (the population reservoir for clean columns, a 20,000-row sample for "
    "raw columns): with k sampled rows the rank error is about 1/sqrt(k), i.e. ±0.3 "
    "percentile points for 100,000 rows and ±0.7 for 20,000."
)


def _pct(n: int, total: int) -> float:
    return 100.0 * n / total if total else 0.0


def rule_rows(result: QualityResult) -> list[list]:
    s = result.counts
    violated = {v["rule"] for v in result.violations}
    rows = []
    for rule in result.ruleset.rules:
        n = s["rejected_by_rule"][rule.name]
        status = "FAIL" if rule.name in violated else ("ok" if rule.max_reject_pct is not None else "-")
        rows.append([rule.name, n, round(_pct(n, s["rows_in"]), 3), rule.max_reject_pct, status])
    total_status = "FAIL" if "total" in violated else "ok"
    rows.append(
        [
            "total rejected",
            s["rows_rejected"],
            round(s["rejected_pct"], 3),
            result.ruleset.max_total_reject_pct,
            total_status,
        ]
    )
    return rows


RULE_HEADERS = ["rule", "rows rejected", "% of rows in", "allowed %", "gate"]


def profile_rows(profile: dict) -> list[list]:
    rows = []
    for col, p in profile.items():
        q = p.get("quantiles") or {}
        rows.append(
            [col, round(_pct(p["nulls"], p["rows"]), 3), p.get("min"), p.get("max")]
            + [q.get(f"p{round(x * 100)}") for x in QUANTILES]
        )
    return rows


PROFILE_HEADERS = ["column", "null %", "min", "max", *(f"p{round(x * 100)}" for x in QUANTILES)]


def _histogram_figure(result: QualityResult, col: str, label: str) -> str:
    low, high, bins = HISTOGRAMS[col]
    width = (high - low) / bins
    edges = [low + i * width for i in range(bins + 1)]
    fig, ax = new_figure(7.0, 3.6)
    for kind, color in (("raw", "#9e9e9e"), ("clean", "#1565c0")):
        counts = result.histograms[col][kind]
        ax.stairs(
            counts,
            edges,
            label=f"{'before' if kind == 'raw' else 'after'} cleaning ({sum(counts):,} rows)",
            color=color,
            fill=kind == "raw",
            alpha=0.6 if kind == "raw" else 1.0,
        )
    ax.set_yscale("symlog")
    ax.set_xlabel(f"{label} (values outside [{low:g}, {high:g}] counted in the end bins)")
    ax.set_ylabel("rows")
    ax.legend()
    return img_tag(figure_to_data_uri(fig), f"histogram of {label} before and after cleaning")


def _rules_figure(result: QualityResult) -> str:
    names = list(result.ruleset.names)
    pcts = [_pct(result.counts["rejected_by_rule"][n], result.counts["rows_in"]) for n in names]
    fig, ax = new_figure(7.0, 0.35 * len(names) + 1.2)
    ax.barh(names[::-1], pcts[::-1], color="#c62828")
    ax.set_xlabel("% of input rows rejected (first failed rule)")
    return img_tag(figure_to_data_uri(fig), "rows rejected per rule")


def _map_figure(result: QualityResult) -> str:
    res = result.reservoir
    lat, lon = to_numpy(res.column("origin_lat")), to_numpy(res.column("origin_lon"))  # no pandas
    from matplotlib.ticker import MaxNLocator

    fig, ax = new_figure(6.0, 6.0)
    alpha = min(1.0, max(0.03, 3000 / max(1, len(lat))))
    ax.scatter(lon, lat, s=3, alpha=alpha, color="#1565c0", linewidths=0)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    (la0, la1), (lo0, lo1) = contract.DC_LAT_RANGE, contract.DC_LON_RANGE
    ax.plot(
        [lo0, lo1, lo1, lo0, lo0],
        [la0, la0, la1, la1, la0],
        color="#c62828",
        lw=1,
        label="observed DC extent",
    )
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_aspect(1 / 0.777)  # cos(38.9°): equal distances on both axes
    ax.set_title(f"pick-up locations ({res.num_rows:,} sampled clean rows)")
    ax.legend(loc="lower left")
    return img_tag(figure_to_data_uri(fig), "scatter map of pick-up locations")


def _gate_line(result: QualityResult) -> str:
    if result.gate_passed:
        return "Gate passed: every rule and the total are within their thresholds."
    return result.gate_message()


def _counts_line(result: QualityResult) -> str:
    s = result.counts
    return (
        f"{s['rows_in']:,} rows in = {s['rows_clean']:,} clean + {s['rows_rejected']:,} rejected "
        f"({s['rejected_pct']:.2f}%) over {len(s['partitions'])} partition(s); "
        f"invariant {'holds' if s['invariant_ok'] else 'VIOLATED'}."
    )


def render_html(result: QualityResult) -> str:
    css = "pass" if result.gate_passed else "fail"
    intro = f'<p class="{css}">{html.escape(_gate_line(result))}</p>{paragraph(_counts_line(result))}'
    descriptions = html_table(
        [[r.name, r.scope, r.description, r.reject_if] for r in result.ruleset.rules],
        ["rule", "scope", "why", "rejects rows where (DuckDB SQL)"],
        text_columns=(1, 2, 3),
    )
    stats = result.stats["columns"]
    population = html_table(
        [[c, int(s["count"]), s["mean"], s["std"], s["min"], s["max"]] for c, s in stats.items()],
        ["column", "count", "mean", "std (ddof 0)", "min", "max"],
    )
    sections = [
        Section("Rejections by rule", html_table(rule_rows(result), RULE_HEADERS) + _rules_figure(result)),
        Section("Fare before and after cleaning", _histogram_figure(result, contract.LABEL, "fare ($)")),
        Section(
            "Trip distance before and after cleaning",
            _histogram_figure(result, "distance_km", "great-circle distance (km)"),
        ),
        Section("Pick-up locations", _map_figure(result)),
        Section(
            "Clean columns",
            html_table(profile_rows(result.clean_profile), PROFILE_HEADERS) + paragraph(QUANTILE_NOTE),
        ),
        Section(
            "Raw columns (before cleaning)",
            html_table(profile_rows(result.raw_profile), PROFILE_HEADERS)
            + paragraph(
                f"{RAW_DISTANCE}: great-circle distance computed from the raw coordinates. " + QUANTILE_NOTE
            ),
        ),
        Section("Population statistics (for the sample step)", population),
        Section("Rules", descriptions),
    ]
    return html_page(TITLE, sections, intro_html=intro)


def render_markdown(result: QualityResult) -> str:
    status = "PASSED" if result.gate_passed else "FAILED"
    parts = [
        f"# {TITLE}",
        "",
        f"**Gate {status}.** {_gate_line(result)}",
        "",
        _counts_line(result),
        "",
        "## Rejections by rule",
        "",
        markdown_table(rule_rows(result), RULE_HEADERS),
        "",
        "## Clean columns",
        "",
        markdown_table(profile_rows(result.clean_profile), PROFILE_HEADERS),
        "",
        QUANTILE_NOTE,
        "",
        "Histograms of fare and distance before/after cleaning and a map of pick-up locations are in the HTML report.",
    ]
    return "\n".join(parts) + "\n"
