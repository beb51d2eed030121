"""The console of ``fareflow run``: one live line per step, the kfp/task logs in files.

``capture_logs`` sends everything kfp.local prints (its own log lines and each task's
streamed output) to ``logs/pipeline.log`` and the running task's ``logs/STEP.log`` instead
of the terminal (``verbose`` also echoes it). ``watch_tasks`` reports each task's start and
end, and whether it was served from the cache, to a ``StepBoard``: a rich live table on a
terminal (step, state, rows, elapsed), one plain line per finished step otherwise. A running
step's line shows its progress, read from the lines its task prints (``StepProgress``): tune's
trial i/N, the running trial's epoch, the best validation RMSE so far and an ETA; train's
epoch and ETA (without a live board, a plain line per finished tune trial).

kfp.local 2.17 has no hook for task events, so ``watch_tasks`` wraps its two task-level
functions (``task_executor.execute_single_task`` and
``task_dispatcher.run_single_task_implementation``) for the duration of a run; the wrappers
only observe (same arguments, same results)."""

from __future__ import annotations

import contextlib
import io
import math
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


# ---------------------------------------------------------------- task logs


class LogSink(io.TextIOBase):
    """A text stream that writes to the pipeline log, the current task's log, and (verbose)
    the terminal."""

    def __init__(
        self,
        logs_dir: Path,
        echo: IO[str] | None = None,
        on_line: Callable[[str, str], None] | None = None,
    ) -> None:
        self.logs_dir = logs_dir
        logs_dir.mkdir(parents=True, exist_ok=True)
        self._all = open(logs_dir / "pipeline.log", "a", encoding="utf-8")  # noqa: SIM115
        self._task: IO[str] | None = None
        self._step: str | None = None
        self._partial = ""  # the running task's text after its last newline
        self._echo = echo
        self._on_line = on_line  # on_line(step, line): each whole line the running task prints
        self._lock = threading.Lock()

    def task_log(self, step: str) -> Path:
        return self.logs_dir / f"{step}.log"

    def begin_task(self, step: str) -> None:
        with self._lock:
            self._close_task()
            self._task = open(self.task_log(step), "a", encoding="utf-8")  # noqa: SIM115
            self._step, self._partial = step, ""

    def end_task(self) -> None:
        with self._lock:
            self._close_task()

    def _close_task(self) -> None:
        if self._task is not None:
            self._task.close()
            self._task = None
        self._step, self._partial = None, ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        plain = strip_ansi(text)
        lines: list[str] = []
        with self._lock:
            self._all.write(plain)
            if self._task is not None:
                self._task.write(plain)
            if self._echo is not None:
                self._echo.write(text)
            step = self._step
            if step is not None and self._on_line is not None:
                *lines, self._partial = (self._partial + plain).split("\n")
        for line in lines:  # outside the lock: the callback may draw on the console
            self._on_line(step, line.rstrip("\r"))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._all.closed:
                return
            self._all.flush()
            if self._task is not None:
                self._task.flush()
            if self._echo is not None:
                self._echo.flush()

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._close_task()
            self._all.close()
        super().close()


@contextlib.contextmanager
def capture_logs(
    logs_dir: Path, verbose: bool = False, on_line: Callable[[str, str], None] | None = None
) -> Iterator[LogSink]:
    """Redirect ``sys.stdout`` (where kfp.local logs and streams task output) into a LogSink;
    ``on_line(step, line)`` sees each whole line the running task prints (its progress)."""
    sink = LogSink(logs_dir, echo=sys.stdout if verbose else None, on_line=on_line)
    try:
        with contextlib.redirect_stdout(sink):
            yield sink
    finally:
        sink.close()


# ---------------------------------------------------------------- failures

_EXCEPTION_LINE = re.compile(r"^\s*(?P<cls>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")


@dataclass(frozen=True)
class TaskFailure:
    exception: str | None  # "components.common.errors.UserError", or None when no traceback
    message: str  # the exception's message (one line), or the log's last line
    user_error: bool  # a UserError (or subclass): bad input, the message says what to fix
    traceback: str  # the last traceback in the log ("" if none)


def _is_user_error(qualified: str) -> bool:
    """Whether ``pkg.module.Class`` names a subclass of UserError (only fareflow's own modules
    are imported to find out)."""
    import importlib

    from components.common.errors import UserError

    module, _, name = qualified.rpartition(".")
    if not module or module.split(".")[0] not in {"components", "pipelines"}:
        return False
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return False
    return isinstance(cls, type) and issubclass(cls, UserError)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def task_failure(log_text: str) -> TaskFailure:
    """What a failed task's log says went wrong: its last traceback's exception line (the first
    line after the frames at the traceback's own indentation, plus continuation lines)."""
    lines = [strip_ansi(line).rstrip() for line in log_text.splitlines()]
    starts = [
        i for i, line in enumerate(lines) if line.lstrip().startswith("Traceback (most recent call last)")
    ]
    if not starts:
        last = next((line.strip() for line in reversed(lines) if line.strip()), "")
        return TaskFailure(None, last or "the task failed without output", False, "")
    body = lines[starts[-1] :]
    indent = _indent(body[0])
    for i in range(1, len(body)):
        if not body[i].strip() or _indent(body[i]) > indent:
            continue
        end = i + 1
        while end < len(body) and body[end].strip():
            end += 1
        match = _EXCEPTION_LINE.match(body[i].strip())
        if match is None:
            break
        cls = match["cls"]
        message = " ".join([match["msg"] or "", *(b.strip() for b in body[i + 1 : end])]).strip()
        return TaskFailure(cls, message or cls, _is_user_error(cls), "\n".join(body[:end]))
    return TaskFailure(None, body[-1].strip(), False, "\n".join(body))


# ---------------------------------------------------------------- step progress

# What the tasks print as they go (their log lines; docs/tune.md, docs/train.md):
#   tune: [worker I: ]trial N COMPLETE|PRUNED|FAIL: validation RMSE V after E epoch(s); {...}
#   tune: [worker I: ]trial N epoch E/EE: train RMSE ..., validation RMSE V ...
#   train: epoch E/EE: train RMSE ..., validation RMSE V (best), R rows/s
_WORKER = r"(?:worker \d+: )?"
TRIAL_DONE = re.compile(
    rf"(?:^|[\s:\]])tune: {_WORKER}trial (?P<trial>\d+) (?P<state>COMPLETE|PRUNED|FAIL): "
    r"validation RMSE (?P<value>\S+)"
)
TRIAL_EPOCH = re.compile(
    rf"(?:^|[\s:\]])tune: {_WORKER}trial (?P<trial>\d+):? epoch (?P<epoch>\d+)/(?P<epochs>\d+)\b"
    r"(?:.*?validation RMSE (?P<value>[-+\w.]+))?"
)
TRAIN_EPOCH = re.compile(
    r"(?:^|[\s:\]])train: epoch (?P<epoch>\d+)/(?P<epochs>\d+):(?:.*?validation RMSE (?P<value>[-+\w.]+))?"
)


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: an ETA or an elapsed time at a glance."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class StepProgress:
    """A running step's progress, read from its log lines: tune's trials (``total`` of them) and
    their epochs, train's epochs; ``text()`` is the step line's note (with an ETA)."""

    step: str
    total: int | None = None  # tune: the trials to run (fareflow run's --tune-trials)
    started: float = field(default_factory=time.monotonic)
    done: int = 0  # tune: finished trials
    states: dict[str, int] = field(default_factory=dict)
    best: float | None = None  # tune: best completed validation RMSE; train: best so far
    epoch: int = 0  # the running trial's (tune) or the run's (train) last finished epoch
    epochs: int | None = None
    value: float | None = None  # the last epoch's validation RMSE

    def feed(self, line: str) -> bool:
        """Read one log line; True when it moved the progress on."""
        if self.step == "tune":
            m = TRIAL_DONE.search(line)
            if m:
                self.done += 1
                self.states[m["state"]] = self.states.get(m["state"], 0) + 1
                value = _number(m["value"])
                if m["state"] == "COMPLETE" and value is not None:
                    self.best = value if self.best is None else min(self.best, value)
                self.epoch, self.value = 0, None
                return True
            m = TRIAL_EPOCH.search(line)
        elif self.step == "train":
            m = TRAIN_EPOCH.search(line)
        else:
            return False
        if not m:
            return False
        self.epoch, self.epochs, self.value = int(m["epoch"]), int(m["epochs"]), _number(m["value"])
        if self.step == "train" and self.value is not None:
            self.best = self.value if self.best is None else min(self.best, self.value)
        return True

    def fraction(self) -> float | None:
        """How much of the step is done, 0..1 (None: nothing to tell yet)."""
        within = self.epoch / self.epochs if self.epochs else 0.0
        if self.step == "tune":
            if not self.total:
                return None
            return min(1.0, (self.done + within) / self.total)
        return within if self.epochs else None

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the pace so far (pruning and early stopping can only shorten it)."""
        f = self.fraction()
        if not f:
            return None
        elapsed = (time.monotonic() if now is None else now) - self.started
        return elapsed * (1 - f) / f

    def text(self, now: float | None = None) -> str:
        parts = []
        if self.step == "tune":
            if self.total:
                current = min(self.done + 1, self.total)
                parts.append(
                    f"{self.done}/{self.total} trials done"
                    if self.done >= self.total
                    else f"trial {current}/{self.total}"
                )
            else:
                parts.append(f"{self.done} trial(s) done")
        if self.epochs and self.epoch:
            parts.append(f"epoch {self.epoch}/{self.epochs}")
        if self.step == "tune" and self.states.get("PRUNED"):
            parts.append(f"{self.states['PRUNED']} pruned")
        if self.best is not None:
            parts.append(f"best {self.best:.4f}")
        eta = self.eta(now)
        if eta is not None and (self.fraction() or 0) < 1:
            parts.append(f"ETA {duration(eta)}")
        return ", ".join(parts) if (self.done or self.epochs) else ""


# ---------------------------------------------------------------- the step board

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


# ---------------------------------------------------------------- task events


@contextlib.contextmanager
def watch_tasks(on_start: Callable[[str], None], on_end: Callable[[str, str, dict], None]) -> Iterator[None]:
    """Call ``on_start(task)`` and ``on_end(task, state, outputs)`` around each kfp.local task;
    ``state`` is ``done``, ``cached`` (served from the cache: the task did not run) or
    ``failed``."""
    from kfp.local import status, task_dispatcher
    from kfp.local.orchestrator import task_executor

    execute = task_executor.execute_single_task
    run_impl = task_dispatcher.run_single_task_implementation
    ran: list[bool] = []

    def run_single_task_implementation(*args, **kwargs):
        if ran:
            ran[-1] = True
        return run_impl(*args, **kwargs)

    def execute_single_task(*args, **kwargs):
        name = kwargs.get("task_name") or (args[0] if args else "?")
        ran.append(False)
        on_start(name)
        outputs, task_status = {}, status.Status.FAILURE
        try:
            outputs, task_status = execute(*args, **kwargs)
            return outputs, task_status
        finally:
            did_run = ran.pop()
            state = ("done" if did_run else "cached") if task_status == status.Status.SUCCESS else "failed"
            on_end(name, state, outputs)

    task_executor.execute_single_task = execute_single_task
    task_dispatcher.run_single_task_implementation = run_single_task_implementation
    try:
        yield
    finally:
        task_executor.execute_single_task = execute
        task_dispatcher.run_single_task_implementation = run_impl
