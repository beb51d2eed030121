"""Up-front checks shared by the CLIs: an input that is not there or an output that cannot be
written is one line (``UserError``) before any work starts, never a traceback after it.

Only local paths are checked; ``s3://`` and ``http(s)://`` locations are left to the step
(their errors already name the URI)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError


def _remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_creatable(flag: str, path: Path, what: str) -> None:
    """``path`` can be made (or written): its nearest existing ancestor is a writable directory."""
    base = _nearest_existing(path.parent if what == "file" else path)
    if base.exists() and not base.is_dir():
        raise UserError(f"{flag} {path}: {base} is not a directory")
    _probe(flag, path, base)


def _probe(flag: str, path: Path, directory: Path) -> None:
    """Create and remove a scratch file in ``directory``: the real test (root passes
    ``os.access`` on read-only mounts and ``/proc``, a write does not)."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".fareflow-write-check-"):
            pass
    except OSError as err:
        raise UserError(
            f"{flag} {path}: cannot create files in {directory} ({err.strerror or err})"
        ) from None


def input_path(flag: str, uri: str, *, kind: str = "any") -> None:
    """A local input ``uri`` exists (``kind``: ``"file"``, ``"dir"`` or ``"any"``) and is readable.
    Globs (``*``, ``?``, ``[``) are left to the step."""
    if not uri:
        raise UserError(f"{flag}: expected a path or URI, got an empty value")
    if _remote(uri) or any(c in uri for c in "*?["):
        return
    path = _local(uri)
    if not path.exists():
        raise UserError(f"{flag} {uri}: no such file or directory")
    if kind == "dir" and not path.is_dir():
        raise UserError(f"{flag} {uri}: not a directory")
    if kind == "file" and not path.is_file():
        raise UserError(f"{flag} {uri}: not a file")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise UserError(f"{flag} {uri}: permission denied")


def output_file(flag: str, path: str | None) -> None:
    """A local output file ``path`` (if given) can be created or replaced."""
    if not path or _remote(path):
        return
    p = _local(path)
    if p.is_dir():
        raise UserError(f"{flag} {path}: is a directory, expected a file path")
    if p.exists() and not os.access(p, os.W_OK):
        raise UserError(f"{flag} {path}: permission denied")
    _check_creatable(flag, p, "file")


def output_dir(flag: str, uri: str | None) -> None:
    """A local output directory ``uri`` (if given) exists as a directory or can be created."""
    if not uri or _remote(uri):
        return
    p = _local(uri)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {uri}: exists and is not a directory")
    _check_creatable(flag, p, "dir")
