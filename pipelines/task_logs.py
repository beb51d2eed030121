"""Where ``fareflow run``'s task output goes: ``logs/pipeline.log`` and the running task's
``logs/STEP.log`` instead of the terminal (``verbose`` also echoes it).

``capture_logs`` redirects ``sys.stdout`` (where kfp.local logs and streams each task's output)
into a ``LogSink``, which hands each whole line the running task prints to ``on_line``
(the console reads progress from it). See docs/local.md#the-console."""

from __future__ import annotations

import contextlib
import io
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


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
