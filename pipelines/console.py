"""The console of ``fareflow run``: one line per step (state, rows, elapsed, a note).

``StepBoard`` is a rich live table on a terminal and one plain line per finished step
otherwise (with a plain line per finished tune trial). A running step's note is its progress
(``pipelines.progress``); the board is fed by the task events (``pipelines.kfp_local``) and the
task log lines (``pipelines.task_logs``). See docs/local.md#the-console."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pipelines.progress import StepProgress

STATE_STYLE = {
    "pending": "dim",
    "running": "yellow",
    "done": "green",
    "cached": "cyan",
    "failed": "bold red",
}


@dataclass
class StepLine:
    name: str
    state: str = "pending"
    started: float | None = None
    seconds: float | None = None
    rows: int | None = None
    note: str = ""

    def elapsed(self) -> float | None:
        if self.seconds is not None:
            return self.seconds
        return None if self.started is None else time.monotonic() - self.started


def rows_of(step: str, summary: dict | None) -> tuple[int | None, str]:
    """The row count a step's line shows (rows it hands on) and a short note."""
    s = summary or {}

    def num(value: Any) -> int | None:
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    if step == "ingest":
        q = num(s.get("rows_quarantined"))
        return num(s.get("rows_written")), f"{q:,} quarantined" if q else ""
    if step == "quality":
        pct = s.get("rejected_pct")
        return num(s.get("rows_clean")), f"{pct:.1f}% rejected" if isinstance(pct, int | float) else ""
    if step == "sample":
        return num(s.get("sample_rows")), f"{int(s.get('attempts', 1))} attempt(s)" if s else ""
    if step == "tune":
        trials = s.get("trials")
        best = s.get("best_validation_rmse")
        note = f"{len(trials)} trial(s)" if isinstance(trials, list) else ""
        if isinstance(best, int | float):
            note += f", best validation RMSE {best:.4f}"
        return None, note.strip(", ")
    if step == "train":
        rows = (s.get("rows") or {}).get("train") if isinstance(s.get("rows"), dict) else None
        rmse = (s.get("metrics") or {}).get("test_rmse")
        return num(rows), f"test RMSE {rmse:.4f}" if isinstance(rmse, int | float) else ""
    return None, ""


@dataclass
class StepBoard:
    """Live lines for the steps of one run (rich ``Live`` on a terminal)."""

    steps: list[str]
    console: Any = None  # rich Console (default: stderr)
    live: bool | None = None  # default: when the console is a terminal
    lines: dict[str, StepLine] = field(default_factory=dict)
    trials: int | None = None  # the tune step's trials, for "trial i/N" and its ETA
    progress_lines: bool = True  # without a live board: a plain line per finished tune trial

    def __post_init__(self) -> None:
        if self.console is None:
            from rich.console import Console

            self.console = Console(stderr=True)
        if self.live is None:
            self.live = bool(self.console.is_terminal)
        self.lines = {name: StepLine(name) for name in self.steps}
        self._live = None
        self._progress: dict[str, StepProgress] = {}

    def _line(self, name: str) -> StepLine:
        if name not in self.lines:
            self.lines[name] = StepLine(name)
        return self.lines[name]

    def render(self):
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        for _ in range(5):
            table.add_column()
        for line in self.lines.values():
            elapsed = line.elapsed()
            state = line.state if line.state != "running" else "running…"
            progress = self._progress.get(line.name) if line.state == "running" else None
            table.add_row(
                f"[bold]{line.name}[/bold]",
                f"[{STATE_STYLE.get(line.state, '')}]{state}[/]",
                "" if line.rows is None else f"{line.rows:,} rows",
                "" if elapsed is None else f"{elapsed:.1f}s",
                (progress.text() if progress is not None else "") or line.note,  # ETA counts down
            )
        return table

    def plain(self, line: StepLine) -> str:
        elapsed = line.elapsed()
        parts = [f"{line.name:<8}", f"{line.state:<7}"]
        parts.append("" if line.rows is None else f"{line.rows:>10,} rows")
        parts.append("" if elapsed is None else f"{elapsed:7.1f}s")
        if line.note:
            parts.append(line.note)
        return "  ".join(p for p in parts if p)

    def __enter__(self) -> StepBoard:
        if self.live:
            from rich.live import Live

            self._live = Live(
                self.render(),
                console=self.console,
                refresh_per_second=4,
                get_renderable=self.render,
                redirect_stdout=False,  # stdout is the task-log sink (capture_logs), not the screen
                redirect_stderr=False,
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def start(self, name: str) -> None:
        line = self._line(name)
        line.state, line.started, line.seconds = "running", time.monotonic(), None
        line.note = ""
        self._progress[name] = StepProgress(name, total=self.trials if name == "tune" else None)

    def progress(self, name: str, log_line: str) -> None:
        """A line the running step ``name`` printed: its progress, when the line tells some, is
        the step line's note (redrawn live; without a live board, a plain line per tune trial)."""
        progress = self._progress.get(name)
        line = self.lines.get(name)
        if progress is None or line is None or line.state != "running":
            return
        trials = progress.done
        if not progress.feed(log_line):
            return
        line.note = progress.text()
        if not self.live and self.progress_lines and progress.done > trials:
            self.console.print(self.plain(line), markup=False, highlight=False, soft_wrap=True)

    def finish(self, name: str, state: str, summary: dict | None = None) -> None:
        line = self._line(name)
        line.seconds = 0.0 if line.started is None else time.monotonic() - line.started
        line.state = state
        line.rows, line.note = rows_of(name, summary) if state != "failed" else (None, "")
        self._progress.pop(name, None)
        if not self.live:
            self.console.print(self.plain(line), markup=False, highlight=False, soft_wrap=True)

    def note(self, name: str, text: str) -> None:
        self._line(name).note = text
