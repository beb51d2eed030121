"""A step's config dataclass as its one spec: each field's ``option(...)`` metadata names its
flag and help, so the CLI (``add_arguments``/``from_args``) and the argument list that
reproduces a config (``to_argv``) come from the same place (as torchx builds a CLI from a
typed component). ``parse(cls, to_argv(c)) == c`` for every config.

Value flags take their type from the field (``int``, ``float``, ``str``; ``X | None`` for an
optional one) or from ``parse``/``format``. A ``bool`` field without ``parse`` is a switch:
``--flag`` (``store_true``) when it defaults to False, else ``--flag``/``--no-flag``. Fields
sharing a ``one_of`` name are alternatives: exactly one of their flags is given, the others
keep their defaults."""

from __future__ import annotations

import argparse
import dataclasses
import sys
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
    one_of: str | None = None  # the name of a group of alternative flags (exactly one is given)


def option(
    default: Any = dataclasses.MISSING,
    *,
    flag: str,
    help: str,
    parse: Callable[[str], Any] | None = None,
    format: Callable[[Any], str] | None = None,
    choices: Sequence[str] | None = None,
    one_of: str | None = None,
) -> Any:
    """A dataclass field with its CLI flag; no default makes the flag required."""
    meta = {_KEY: Option(flag, help, parse, format, choices, one_of)}
    return dataclasses.field(default=default, metadata=meta)


def _hint(cls: type, f: dataclasses.Field) -> Any:
    """The field's type; a string annotation evaluated in the class's module (what
    ``typing.get_type_hints`` does, but only for option fields: another field's type may be
    imported for type checkers only, to keep a CLI's ``--help`` light)."""
    if not isinstance(f.type, str):
        return f.type
    return eval(f.type, vars(sys.modules[cls.__module__]))  # the class's own annotation text


def _options(cls: type) -> list[tuple[dataclasses.Field, Option, Any]]:
    return [(f, f.metadata[_KEY], _hint(cls, f)) for f in dataclasses.fields(cls) if _KEY in f.metadata]


def _base_type(hint: Any) -> tuple[Any, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _switch(f: dataclasses.Field, opt: Option, hint: Any) -> str | None:
    """``"store_true"``, ``"on_off"`` (``--flag``/``--no-flag``), or None for a value flag."""
    base, optional = _base_type(hint)
    if base is not bool or opt.parse is not None:
        return None
    return "store_true" if f.default is False and not optional else "on_off"


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _add(target: Any, f: dataclasses.Field, opt: Option, hint: Any) -> None:
    kwargs: dict[str, Any] = {"dest": f.name, "help": opt.help}
    switch = _switch(f, opt, hint)
    if switch is not None:
        if _required(f):
            raise TypeError(f"{opt.flag}: a switch (bool field {f.name}) needs a default")
        kwargs["action"] = "store_true" if switch == "store_true" else argparse.BooleanOptionalAction
        kwargs["default"] = f.default
        target.add_argument(opt.flag, **kwargs)
        return
    base, _ = _base_type(hint)
    if opt.parse is not None:
        kwargs["type"] = opt.parse
    elif base in (int, float):
        kwargs["type"] = base
    if opt.choices is not None:
        kwargs["choices"] = list(opt.choices)
    else:  # the name argparse gives a flag's value when the flag names its dest: --max-rows MAX_ROWS
        kwargs["metavar"] = opt.flag.lstrip("-").replace("-", "_").upper()
    if opt.one_of is not None:
        if _required(f):
            raise TypeError(f"{opt.flag}: an alternative (one_of={opt.one_of!r}) needs a default")
        # Not the field's default: argparse counts a flag as given only when its value is not
        # its default (by identity: "--trials 8" with default 8 would read as missing).
        kwargs["default"] = argparse.SUPPRESS
    elif _required(f):
        kwargs["required"] = True
    else:
        kwargs["default"] = f.default
    target.add_argument(opt.flag, **kwargs)


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per option field of ``cls`` (dest = the field name), in field order; the
    alternatives of a ``one_of`` group together, where its first field is."""
    options = _options(cls)
    added: set[str] = set()
    for f, opt, hint in options:
        if opt.one_of is None:
            _add(parser, f, opt, hint)
        elif opt.one_of not in added:
            added.add(opt.one_of)
            group = parser.add_mutually_exclusive_group(required=True)
            for g, gopt, ghint in options:
                if gopt.one_of == opt.one_of:
                    _add(group, g, gopt, ghint)


def from_args(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """The config from parsed arguments (option fields) plus ``values`` (other fields)."""
    parsed = {
        f.name: getattr(args, f.name)
        for f, opt, _ in _options(cls)
        if opt.one_of is None or hasattr(args, f.name)  # an alternative not given: its default
    }
    return cls(**parsed, **values)


def parse(cls: type, argv: Sequence[str]) -> Any:
    """``cls`` from an argument list of its flags only."""
    parser = argparse.ArgumentParser(prog=cls.__name__, exit_on_error=False)
    add_arguments(parser, cls)
    return from_args(cls, parser.parse_args(list(argv)))


def _text(value: Any, opt: Option) -> str:
    if opt.format is not None:
        return opt.format(value)
    return repr(value) if isinstance(value, float) else str(value)


def _chosen(config: Any, options: list[tuple[dataclasses.Field, Option, Any]]) -> dict[str, str]:
    """For each ``one_of`` group, the field whose flag ``to_argv`` writes: the one set off its
    default, else the first that is not None."""
    groups: dict[str, list[dataclasses.Field]] = {}
    for f, opt, _ in options:
        if opt.one_of is not None:
            groups.setdefault(opt.one_of, []).append(f)
    chosen = {}
    for name, fields in groups.items():
        changed = [f for f in fields if getattr(config, f.name) != f.default]
        if len(changed) > 1:
            raise ValueError(
                f"{', '.join(f.name for f in changed)} are alternatives ({name}): "
                "a command line can set only one of them"
            )
        set_ = changed or [f for f in fields if getattr(config, f.name) is not None] or fields
        chosen[name] = set_[0].name
    return chosen


def to_argv(config: Any) -> list[str]:
    """The flags that reproduce ``config`` (a field that is None is left out, a switch that is
    off by default too; of a ``one_of`` group, only the alternative that is set)."""
    options = _options(type(config))
    chosen = _chosen(config, options)
    argv: list[str] = []
    for f, opt, hint in options:
        value = getattr(config, f.name)
        if value is None or (opt.one_of is not None and chosen[opt.one_of] != f.name):
            continue
        switch = _switch(f, opt, hint)
        if switch is None:
            argv += [opt.flag, _text(value, opt)]
        elif value:
            argv.append(opt.flag)
        elif switch == "on_off":
            argv.append("--no-" + opt.flag.removeprefix("--"))
    return argv
