"""A small progress bar for long steps, shown only on a terminal (rich, on stderr)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(
    total: float | None, description: str, *, enabled: bool | None = None, unit: str = "bytes"
) -> Iterator[Callable[[float], None]]:
    """Yield ``advance(n)``; draws a transient rich bar on stderr when it is a terminal.

    ``enabled=None`` means "if stderr is a terminal"; ``unit="bytes"`` shows sizes and
    transfer speed, anything else shows plain counts. ``total=None`` gives a spinner.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda n: None
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
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        *counts,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
