"""Scratch directories that a killed process does not leave behind for good.

A ``tempfile.TemporaryDirectory`` is removed only when its process leaves normally: one killed
with -9 (or by the kernel's OOM killer) leaves it in the temporary directory, and a tune study
keeps every trial's model there. A scratch directory here is named after its prefix, the
process's PID namespace and its PID (``PREFIX-ns4026531836-pid1234-XXXXXXXX``); making one
first removes those of the same prefix whose process is gone. Only directories of this user,
of this PID namespace (another container sharing the directory has PIDs of its own) and of a
PID that no longer exists are removed: a live process's scratch is never touched."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

_OWNER = re.compile(r"-ns(?P<ns>\d+)-pid(?P<pid>\d+)-[^/]*")  # the whole rest of the name


def _pid_namespace() -> str:
    """This process's PID namespace inode ("0" where /proc does not say)."""
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return "0"
    return "".join(ch for ch in link if ch.isdigit()) or "0"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep(prefix: str, parent: str | None = None) -> list[str]:
    """Remove the scratch directories of ``prefix`` under ``parent`` (default: the temporary
    directory) whose process has gone; return their paths."""
    root = parent or tempfile.gettempdir()
    ns, uid = _pid_namespace(), os.getuid()
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(f"{prefix}-"):
            continue
        # fullmatch: a longer prefix that starts with this one ("a-b" for "a") is another owner's
        owner = _OWNER.fullmatch(entry.name[len(prefix) :])
        if owner is None or owner["ns"] != ns:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != uid:
                continue
        except OSError:
            continue
        if not _alive(int(owner["pid"])):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def owner_prefix(prefix: str, pid: int | None = None) -> str:
    """The start of the name of a scratch directory of ``prefix`` made by ``pid`` (this process)."""
    return f"{prefix}-ns{_pid_namespace()}-pid{os.getpid() if pid is None else pid}-"


def make(prefix: str, parent: str | None = None) -> str:
    """A new scratch directory (the caller removes it), after sweeping dead ones of ``prefix``."""
    sweep(prefix, parent)
    return tempfile.mkdtemp(prefix=owner_prefix(prefix), dir=parent)


@contextmanager
def scratch_dir(prefix: str, parent: str | None = None) -> Iterator[str]:
    """:func:`make`, removed when the block ends (normally or by an exception)."""
    path = make(prefix, parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
