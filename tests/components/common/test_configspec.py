"""The config spec: flags, defaults and help come from the dataclass fields, and every
config survives ``to_argv`` -> the step's own CLI parser -> ``from_args`` unchanged."""

from __future__ import annotations

import argparse
import dataclasses
import random

import pytest

from components.common import configspec
from components.common.configspec import add_arguments, from_args, option, to_argv

from .configs import random_config

ROUNDS = 300


@dataclasses.dataclass(frozen=True)
class Example:
    input_uri: str = option(flag="--input", help="where to read")
    count: int = option(3, flag="--count", help="how many")
    rate: float = option(0.5, flag="--rate", help="how fast")
    mode: str = option("a", flag="--mode", help="which", choices=("a", "b"))
    limit: int | None = option(None, flag="--limit", help="at most")
    sizes: tuple[int, ...] = option(
        (1, 2),
        flag="--sizes",
        help="widths",
        parse=lambda t: tuple(int(p) for p in t.split(",")),
        format=lambda v: ",".join(map(str, v)),
    )
    internal: int = 7  # no option: not a flag


def test_flags_defaults_and_required_come_from_the_fields():
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser, Example)
    flags = {a.dest: a for a in parser._actions if a.dest != "help"}
    assert set(flags) == {"input_uri", "count", "rate", "mode", "limit", "sizes"}
    assert flags["input_uri"].required and not flags["count"].required
    assert flags["count"].default == 3 and flags["count"].help == "how many"
    assert flags["mode"].choices == ["a", "b"]
    with pytest.raises(argparse.ArgumentError):
        parser.parse_args(["--input", "x", "--mode", "c"])
    assert from_args(Example, parser.parse_args(["--input", "x"])) == Example("x")


def test_to_argv_writes_every_set_field_and_leaves_out_none():
    argv = to_argv(Example("s3://b/p", count=5, rate=0.1 + 0.2, limit=None, sizes=(8, 4)))
    assert argv == ["--input", "s3://b/p", "--count", "5", "--rate", "0.30000000000000004", "--mode", "a",
                    "--sizes", "8,4"]  # fmt: skip
    assert configspec.parse(Example, argv) == Example("s3://b/p", count=5, rate=0.1 + 0.2, sizes=(8, 4))


def test_round_trip_of_random_examples():
    rng = random.Random(0)
    for _ in range(ROUNDS):
        c = random_config(Example, rng)
        assert configspec.parse(Example, to_argv(c)) == c
