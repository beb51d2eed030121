"""Staged outputs: how every step writes its output location and how the next step trusts it.

A step writes only into a location (local directory or ``s3://`` prefix) that is new, empty or
an earlier output (finished or failed) of the same step; anything else is refused in one line
naming what is there. It marks the output complete last: ``_SUCCESS``, a JSON object naming the
step (``{"step": "ingest", ...}``). Local: files go to a hidden sibling directory renamed into
place on commit. S3 (no rename): ``_INCOMPLETE`` (``{"step": ...}``) first, then the earlier
contents are deleted, files written in place, ``_SUCCESS`` last and ``_INCOMPLETE`` removed.
Readers call :func:`require_complete` with the step they expect. A step whose outputs predate
the markers names the files that mark its older outputs (``legacy``). docs/ingest.md, "Staged
outputs".
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass

import pyarrow.fs as pafs

from .errors import UserError
from .filesystem import resolve_filesystem, split_s3
from .markers import INCOMPLETE_MARKER, SUCCESS_MARKER, not_complete
from .s3 import s3_client, s3_error, s3_list

__all__ = [
    "INCOMPLETE_MARKER",
    "SUCCESS_MARKER",
    "Marker",
    "StagedOutput",
    "check_destination",
    "read_marker",
    "require_complete",
]


@dataclass(frozen=True)
class Marker:
    """A ``_SUCCESS`` or ``_INCOMPLETE`` file as found: ``doc`` is None when it is not a JSON object."""

    name: str
    doc: dict | None

    @property
    def step(self) -> str | None:
        return self.doc.get("step") if self.doc else None

    def describe(self) -> str:
        if self.doc is None:
            return f"a {self.name} that is not a JSON object"
        if not self.step:
            return f"a {self.name} naming no step"
        return f"a {self.name} of the {self.step} step"


def read_marker(fs: pafs.FileSystem, root: str, name: str) -> Marker | None:
    """The marker ``name`` in the directory ``root`` of ``fs``; None when there is none."""
    path = f"{root.rstrip('/')}/{name}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    try:
        with fs.open_input_stream(path) as src:
            doc = json.loads(src.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        doc = None
    return Marker(name, doc if isinstance(doc, dict) else None)


def require_complete(uri: str, step: str) -> dict:
    """The ``_SUCCESS`` document of ``step``'s output at ``uri``; one-line ``UserError`` when it is
    missing (a failed or running write) or names another step."""
    fs, root = resolve_filesystem(uri)
    try:
        success = read_marker(fs, root, SUCCESS_MARKER)
        incomplete = None if success else read_marker(fs, root, INCOMPLETE_MARKER)
    except OSError as err:
        raise UserError(f"{uri}: cannot read its {SUCCESS_MARKER} marker ({err})") from None
    if success is None:
        if incomplete is not None and incomplete.step == step:
            raise UserError(
                f"{uri}: the {step} step has not finished writing it ({INCOMPLETE_MARKER}, no "
                f"{SUCCESS_MARKER}): rerun {step}"
            )
        raise not_complete(uri)
    if success.step != step:
        raise UserError(f"{uri}: holds {success.describe()}, expected the output of the {step} step")
    return success.doc


def _listing(fs: pafs.FileSystem, uri: str, root: str, s3) -> list[str]:
    """Relative names of the files under ``root`` (empty if it does not exist)."""
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise UserError(f"{uri}: exists and is a file, not a directory; give a directory or prefix")
    if s3 is None:
        if info.type == pafs.FileType.NotFound:
            return []
        selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
        return [i.path[len(root) + 1 :] for i in fs.get_file_info(selector) if i.type == pafs.FileType.File]
    # boto3 for listing (and deleting) on S3: it shows everything, including the empty
    # "directory" objects pyarrow leaves behind when it deletes a file.
    bucket, key = split_s3(uri)
    prefix = key.rstrip("/") + "/" if key else ""
    return [o["Key"][len(prefix) :] for o in s3_list(s3, bucket, prefix)]


def _some(names: list[str]) -> str:
    more = f" and {len(names) - 1} more file(s)" if len(names) > 1 else ""
    return f"{sorted(names)[0]}{more}"


def _check(
    fs: pafs.FileSystem,
    uri: str,
    root: str,
    step: str,
    s3,
    legacy: tuple[str, ...] = (),
    what: str | None = None,
) -> list[str]:
    names = _listing(fs, uri, root, s3)
    objects = [n for n in names if n and not n.endswith("/")]  # not S3 "directory" markers
    if not objects:
        return names
    markers = [read_marker(fs, root, n) for n in (SUCCESS_MARKER, INCOMPLETE_MARKER) if n in objects]
    markers = [m for m in markers if m is not None]
    if any(m.step == step for m in markers):
        return names
    if not markers and any(name in objects for name in legacy):
        return names  # written by this step before it had markers
    found = " and ".join(m.describe() for m in markers) or (
        f"{_some(objects)}, no {SUCCESS_MARKER} or {INCOMPLETE_MARKER} marker"
    )
    raise UserError(
        f"{uri}: not empty and not {what or f'an earlier output of the {step} step'} (it holds {found}); "
        "refusing to replace it: give a new or empty location"
    )


def check_destination(uri: str, step: str, *, legacy: tuple[str, ...] = (), what: str | None = None) -> None:
    """Raise ``UserError`` unless ``uri`` is new, empty or an earlier output of ``step`` (what
    :class:`StagedOutput` checks on entry; call it to fail before the work, not after it).

    ``legacy``: file names (at the top of the location) that mark an earlier output the step
    wrote before it had markers, accepted when no marker is there (train's ``model.json``).
    ``what``: how the refusal names the step's output (default "an earlier output of the STEP
    step")."""
    fs, root = resolve_filesystem(uri)
    s3 = None if isinstance(fs, pafs.LocalFileSystem) else s3_client()
    try:
        _check(fs, uri, root, step, s3, legacy, what)
    except OSError as err:
        raise UserError(f"{uri}: cannot use as an output location ({err})") from None
    except Exception as err:
        if type(err).__module__.startswith("botocore"):
            raise s3_error(uri, err) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class StagedOutput:
    """``step``'s output at a local path or ``s3://`` prefix, committed all at once (module doc).

    Write files at :meth:`path` (inside ``fs``) or under :attr:`root_uri`, then :meth:`commit`.
    Locally an earlier output is replaced by the rename; on S3 it is deleted on entry. Use as a
    context manager: leaving it with an exception before the commit discards what was written
    (S3 keeps its ``_INCOMPLETE`` marker, so the location never looks complete).
    """

    def __init__(self, uri: str, step: str, *, legacy: tuple[str, ...] = (), what: str | None = None) -> None:
        self.uri = uri
        self.step = step
        self.legacy, self.what = legacy, what  # as for check_destination
        self.fs, self.target = resolve_filesystem(uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.root = ""  # where files are written until commit (a path inside self.fs)
        self.committed = False
        self._s3 = None if self.local else s3_client()

    def __enter__(self) -> StagedOutput:
        try:
            self._begin()
        except OSError as err:
            raise UserError(f"{self.uri}: cannot write here: {err}") from None
        except Exception as err:
            if type(err).__module__.startswith("botocore"):
                raise s3_error(self.uri, err) from None
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not self.committed:
            self.abort()

    @property
    def root_uri(self) -> str:
        """Where files go until the commit, as a URI (locally the staging directory)."""
        return self.root if self.local else self.uri.rstrip("/")

    def path(self, relative: str) -> str:
        """Path (inside ``self.fs``) to write ``relative`` to; parent directories are created."""
        full = f"{self.root}/{relative}"
        if self.local:
            os.makedirs(os.path.dirname(full), exist_ok=True)
        return full

    def _delete(self, relative: str) -> None:
        bucket, key = split_s3(self.uri)
        self._s3.delete_object(Bucket=bucket, Key=f"{key.rstrip('/')}/{relative}" if key else relative)

    def _begin(self) -> None:
        existing = _check(self.fs, self.uri, self.target, self.step, self._s3, self.legacy, self.what)
        if self.local:
            parent, name = os.path.split(self.target)
            os.makedirs(parent, exist_ok=True)
            self.root = tempfile.mkdtemp(prefix=f".{name}.staging-", dir=parent)
            # mkdtemp makes it 0700; the committed output gets an ordinary directory's mode.
            os.chmod(self.root, 0o777 & ~_umask())
            return
        self.root = self.target
        self._write(
            INCOMPLETE_MARKER, {"step": self.step, "note": f"being written; readers need {SUCCESS_MARKER}"}
        )
        for name in sorted(existing, key=lambda n: n != SUCCESS_MARKER):  # _SUCCESS goes first
            if name != INCOMPLETE_MARKER:
                self._delete(name)

    def _write(self, relative: str, doc: dict) -> None:
        with self.fs.open_output_stream(self.path(relative)) as out:
            out.write((json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())

    def commit(self, marker: dict | None = None) -> None:
        """Write ``_SUCCESS`` (``{"step": step}`` plus ``marker``) last and publish the files."""
        if (marker or {}).get("step", self.step) != self.step:
            raise ValueError(f"marker names step {marker['step']!r}, not {self.step!r}")
        self._write(SUCCESS_MARKER, {**(marker or {}), "step": self.step})
        if self.local:
            old = None
            if os.path.lexists(self.target):
                old = tempfile.mkdtemp(
                    prefix=f".{os.path.basename(self.target)}.old-", dir=os.path.dirname(self.target)
                )
                os.rename(self.target, os.path.join(old, "previous"))
            os.rename(self.root, self.target)
            if old:
                shutil.rmtree(old, ignore_errors=True)
        else:
            self._delete(INCOMPLETE_MARKER)
        self.committed = True

    def abort(self) -> None:
        """Discard what was written (best effort; S3 keeps its ``_INCOMPLETE`` marker)."""
        try:
            if self.local:
                shutil.rmtree(self.root, ignore_errors=True)
                return
            for name in _listing(self.fs, self.uri, self.target, self._s3):
                if name != INCOMPLETE_MARKER:
                    self._delete(name)
        except Exception:  # noqa: BLE001 - cleanup must not hide the original error
            pass
