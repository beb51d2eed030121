"""A small progress bar for long steps, shown only on a terminal (rich, on stderr)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(
    total: float | None,
    description: str,
    *,
    enabled: bool | None = None,
    unit: str = "bytes",
    rows: bool = False,
) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n, rows=0)``; draws a transient rich bar on stderr when it is a terminal.

    ``enabled=None`` means "if stderr is a terminal"; ``unit="bytes"`` shows sizes and
    transfer speed, anything else shows plain counts. ``total=None`` gives a spinner.
    ``rows=True`` adds the rows done so far and rows/s (``advance(0, rows=n)`` counts rows
    without moving the bar). The bar redraws on rich's own thread (10 times a second), so
    ``advance`` costs a lock and an addition: call it per block, not per row.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda n, rows=0: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    counts = [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [MofNCompleteColumn()]
    if rows:
        counts.append(TextColumn("{task.fields[rows]:>12,} rows {task.fields[rate]:>9,.0f} rows/s"))
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        *counts,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total, rows=0, rate=0.0)
        done = [0]

        def advance(n: float, rows: int = 0) -> None:
            if rows:
                done[0] += rows
                elapsed = progress.tasks[0].elapsed or 0.0
                progress.update(task, advance=n, rows=done[0], rate=done[0] / elapsed if elapsed else 0.0)
            else:
                progress.advance(task, n)

        yield advance
