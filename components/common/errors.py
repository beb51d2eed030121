"""Errors a user can act on.

A ``UserError`` carries a one-line message naming the file/line/field and what was
expected. CLIs catch it at the top and exit non-zero without a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


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


def cli_entry(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Wrap a CLI ``main(argv) -> int`` so that UserError becomes one line on stderr."""

    def wrapped(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as err:
            prog = _program_name(main)
            print(f"{prog}: error: {err}", file=sys.stderr)
            return err.exit_code

    wrapped.__name__ = main.__name__
    wrapped.__doc__ = main.__doc__
    wrapped.__module__ = main.__module__
    return wrapped
