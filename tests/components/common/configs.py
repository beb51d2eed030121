"""Random configs for the round-trip property ``parse(to_argv(c)) == c``: each option field
gets a value drawn from its type (and its choices), off its default as often as not."""

from __future__ import annotations

import dataclasses
import random
import string
import typing

from components.common import configspec

_TEXT = string.ascii_letters + string.digits + "/:._=,"


def _value(rng: random.Random, hint, opt: configspec.Option, default):
    base, optional = configspec._base_type(hint)
    if optional and rng.random() < 0.3:
        return None
    if opt.choices is not None:
        return rng.choice(list(opt.choices))
    if base is bool:
        return rng.random() < 0.5
    if base is int:
        return rng.choice([0, 1, rng.randint(2, 10**6)])
    if base is float:
        return rng.choice([0.0, 1e-3, rng.uniform(0, 1), 10 ** rng.uniform(-9, 3), 0.1 + 0.2])
    if base is str:
        # argparse reads a value starting with "-" as a flag: never a URI or name of ours
        return rng.choice(string.ascii_letters) + "".join(rng.choices(_TEXT, k=rng.randint(0, 30)))
    if typing.get_origin(base) is tuple:
        return tuple(rng.randint(1, 512) for _ in range(rng.randint(1, 5)))
    raise TypeError(f"no generator for {hint!r} (field default {default!r})")


def random_config(cls, rng: random.Random, **fixed):
    values = {}
    for f, opt, hint in configspec._options(cls):
        values[f.name] = _value(rng, hint, opt, f.default)
    return cls(**{**values, **fixed})


def option_fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if configspec._KEY in f.metadata}
