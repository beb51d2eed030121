"""What a failed task's log says went wrong: ``task_failure(log_text)`` finds its last
traceback's exception line and whether it is a ``UserError`` (bad input: the message says what
to fix) or something else (a bug, a crash). See docs/local.md#the-console."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipelines.task_logs import strip_ansi

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
