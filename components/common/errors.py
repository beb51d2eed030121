"""Errors a user can act on.

A ``UserError`` carries a one-line message naming the file/line/field and what was
expected. CLIs catch it at the top and exit non-zero without a traceback, as
``PROG: error: MESSAGE`` (argparse's own form, so usage errors and input errors read alike).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import overload


class UserError(Exception):
    """Bad input or configuration; the message is shown to the user as-is (one line)."""

    exit_code = 2


def _program_name(main: Callable) -> str:
    """``components.ingest`` for ``components/ingest/__main__.py``, also under ``python -m``."""
    module = getattr(main, "__module__", None) or "fareflow"
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = spec.name if spec else "fareflow"
    return module.removesuffix(".__main__")


def one_line(text: object) -> str:
    """``text`` on one line: inner newlines and runs of white space become single spaces."""
    return " ".join(str(text).split())


MainFn = Callable[[list[str] | None], int]


@overload
def cli_entry(main: MainFn, *, prog: str | None = None) -> MainFn: ...
@overload
def cli_entry(main: None = None, *, prog: str | None = None) -> Callable[[MainFn], MainFn]: ...
def cli_entry(main=None, *, prog=None):
    """Wrap a CLI ``main(argv) -> int`` so that UserError becomes one line on stderr.

    ``prog`` is the name errors start with (``fareflow ingest``, the same as the argparse
    parser's ``prog``); by default the module name (``components.ingest``). Usable as
    ``@cli_entry``, ``@cli_entry(prog=...)`` or ``cli_entry(fn, prog=...)``.
    """
    if main is None:
        return lambda fn: cli_entry(fn, prog=prog)

    def wrapped(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as err:
            message = str(err)
            message = one_line(message) if "\n" in message else message
            print(f"{prog or _program_name(main)}: error: {message}", file=sys.stderr)
            return err.exit_code

    wrapped.__name__ = main.__name__
    wrapped.__doc__ = main.__doc__
    wrapped.__module__ = main.__module__
    return wrapped
