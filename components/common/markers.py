"""Completion markers by name and the step-agnostic completion check: a location holds a
committed output when its ``_SUCCESS`` marker exists, whichever step wrote it. The protocol that
writes them (step-named markers, staging, refusal to overwrite) is components.common.staged.
"""

from __future__ import annotations

import pyarrow.fs as pafs

from .errors import UserError
from .filesystem import resolve_filesystem

SUCCESS_MARKER = "_SUCCESS"
INCOMPLETE_MARKER = "_INCOMPLETE"


def output_is_complete(uri: str) -> bool:
    """Whether ``uri`` holds a committed output (its ``_SUCCESS`` marker exists), whichever step
    wrote it. ``components.common.staged.require_complete`` also checks the step."""
    fs, root = resolve_filesystem(uri)
    return fs.get_file_info(f"{root}/{SUCCESS_MARKER}").type == pafs.FileType.File


def not_complete(uri: str) -> UserError:
    return UserError(f"{uri}: no {SUCCESS_MARKER} marker: not a complete output (a failed or running write?)")


def require_complete(uri: str) -> None:
    """Step-agnostic: any step's ``_SUCCESS`` will do (train's and tune's split readers); readers
    that know the step they expect use ``components.common.staged.require_complete``."""
    if not output_is_complete(uri):
        raise not_complete(uri)
