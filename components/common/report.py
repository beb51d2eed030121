"""Self-contained reports: HTML with inline images, and Markdown.

Kubeflow renders an ``HTML`` artifact in a sandboxed iframe and cannot follow links to
other files, so every figure is embedded as a base64 ``data:`` URI. The helpers are
generic (no step-specific content) so any step can build its report from sections:

    fig = ...matplotlib figure...
    page = html_page("Quality report", [
        Section("Rules", html_table(rows, headers)),
        Section("Fare", img_tag(figure_to_data_uri(fig), "fare histogram")),
    ])

matplotlib is imported lazily with the non-interactive ``Agg`` backend, so importing this
module is cheap and works without a display.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Section:
    """One titled block of a report; ``body_html`` is trusted HTML built with these helpers."""

    title: str
    body_html: str


def new_figure(width: float = 6.4, height: float = 4.0):
    """A matplotlib (figure, axes) pair on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def figure_to_data_uri(fig, *, dpi: int = 90) -> str:
    """Render a matplotlib figure to a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def img_tag(data_uri: str, alt: str) -> str:
    return f'<img src="{data_uri}" alt="{html.escape(alt)}">'


def fmt(value: Any, digits: int = 4) -> str:
    """Format a table cell: floats with ``digits`` significant digits, None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}" if abs(value) >= 1e4 else f"{value:g}"
        return f"{value:.{digits}g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def html_table(
    rows: Iterable[Sequence[Any]], headers: Sequence[str], text_columns: Sequence[int] = ()
) -> str:
    """A table; numbers right-aligned, the first column and ``text_columns`` (prose, SQL) left."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    text = set(text_columns)

    def td(i: int, cell: Any) -> str:
        return (
            f'<td class="text">{html.escape(fmt(cell))}</td>'
            if i in text
            else f"<td>{html.escape(fmt(cell))}</td>"
        )

    body = "".join("<tr>" + "".join(td(i, cell) for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        return fmt(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 1100px; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child, td.text { text-align: left; }
img { max-width: 100%; } .fail { color: #b00020; font-weight: bold; } .pass { color: #1b5e20; font-weight: bold; }
"""


def html_page(title: str, sections: Iterable[Section], *, intro_html: str = "") -> str:
    """A complete, self-contained HTML document (inline CSS, inline images)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        intro_html,
    ]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>{section.body_html}</section>")
    parts.append("</body></html>")
    return "\n".join(parts)
