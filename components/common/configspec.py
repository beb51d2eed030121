"""A step's config dataclass as its one spec: each field's ``option(...)`` metadata names its
flag and help, so the CLI (``add_arguments``/``from_args``) and the argument list that
reproduces a config (``to_argv``) come from the same place (as torchx builds a CLI from a
typed component). ``parse(cls, to_argv(c)) == c`` for every config."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

_KEY = "fareflow.option"


@dataclasses.dataclass(frozen=True)
class Option:
    flag: str
    help: str
    parse: Callable[[str], Any] | None = None  # text -> value (default: from the field's type)
    format: Callable[[Any], str] | None = None  # value -> text (default: repr for floats, str)
    choices: Sequence[str] | None = None


def option(
    default: Any = dataclasses.MISSING,
    *,
    flag: str,
    help: str,
    parse: Callable[[str], Any] | None = None,
    format: Callable[[Any], str] | None = None,
    choices: Sequence[str] | None = None,
) -> Any:
    """A dataclass field with its CLI flag; no default makes the flag required."""
    meta = {_KEY: Option(flag, help, parse, format, choices)}
    return dataclasses.field(default=default, metadata=meta)


def _options(cls: type) -> list[tuple[dataclasses.Field, Option, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, f.metadata[_KEY], hints[f.name]) for f in dataclasses.fields(cls) if _KEY in f.metadata]


def _base_type(hint: Any) -> tuple[Any, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per option field of ``cls`` (dest = the field name)."""
    for f, opt, hint in _options(cls):
        base, _ = _base_type(hint)
        kwargs: dict[str, Any] = {"dest": f.name, "help": opt.help}
        if opt.parse is not None:
            kwargs["type"] = opt.parse
        elif base in (int, float):
            kwargs["type"] = base
        if opt.choices is not None:
            kwargs["choices"] = list(opt.choices)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default
        parser.add_argument(opt.flag, **kwargs)


def from_args(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """The config from parsed arguments (option fields) plus ``values`` (other fields)."""
    return cls(**{f.name: getattr(args, f.name) for f, _, _ in _options(cls)}, **values)


def parse(cls: type, argv: Sequence[str]) -> Any:
    """``cls`` from an argument list of its flags only."""
    parser = argparse.ArgumentParser(prog=cls.__name__, exit_on_error=False)
    add_arguments(parser, cls)
    return from_args(cls, parser.parse_args(list(argv)))


def _text(value: Any, opt: Option) -> str:
    if opt.format is not None:
        return opt.format(value)
    return repr(value) if isinstance(value, float) else str(value)


def to_argv(config: Any) -> list[str]:
    """The flags that reproduce ``config`` (a field that is None is left out)."""
    argv: list[str] = []
    for f, opt, _ in _options(type(config)):
        value = getattr(config, f.name)
        if value is not None:
            argv += [opt.flag, _text(value, opt)]
    return argv
