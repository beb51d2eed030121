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


def test_help_names_each_value_by_its_flag():
    parser = argparse.ArgumentParser(prog="example")
    add_arguments(parser, Example)
    usage = parser.format_usage()
    assert "--input INPUT " in usage and "--limit LIMIT" in usage and "--mode {a,b}" in usage
    assert "INPUT_URI" not in usage


@dataclasses.dataclass(frozen=True)
class Switches:
    zip: bool = option(False, flag="--zip", help="archives")
    progress: bool | None = option(None, flag="--progress", help="a bar (default: on a terminal)")
    cache: bool = option(True, flag="--cache", help="reuse")


def test_bool_fields_are_switches():
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser, Switches)
    assert from_args(Switches, parser.parse_args([])) == Switches()
    assert from_args(Switches, parser.parse_args(["--zip", "--no-progress", "--no-cache"])) == Switches(
        True, False, False
    )
    assert from_args(Switches, parser.parse_args(["--progress", "--cache"])) == Switches(progress=True)
    with pytest.raises(SystemExit):  # off by default: no --no- form (argparse exits on unknown flags)
        parser.parse_args(["--no-zip"])
    assert to_argv(Switches()) == ["--cache"]
    assert to_argv(Switches(True, False, False)) == ["--zip", "--no-progress", "--no-cache"]
    for zip_ in (False, True):
        for progress in (None, False, True):
            for cache in (False, True):
                c = Switches(zip_, progress, cache)
                assert configspec.parse(Switches, to_argv(c)) == c


@dataclasses.dataclass(frozen=True)
class Budget:
    name: str = option(flag="--name", help="which")
    trials: int = option(8, flag="--trials", help="new trials", one_of="budget")
    seed: int = option(0, flag="--seed", help="seed")
    total: int | None = option(None, flag="--total", help="until this many", one_of="budget")


def test_one_of_fields_are_alternatives_and_exactly_one_is_given():
    parser = argparse.ArgumentParser(prog="budget", exit_on_error=False)
    add_arguments(parser, Budget)
    assert "(--trials TRIALS | --total TOTAL)" in parser.format_usage()  # adjacent, where trials is
    assert from_args(Budget, parser.parse_args(["--name", "n", "--total", "5"])) == Budget("n", total=5)
    assert from_args(Budget, parser.parse_args(["--name", "n", "--trials", "3"])) == Budget("n", 3)
    # the default's own value counts as given ("--trials 8" is not "no --trials")
    assert from_args(Budget, parser.parse_args(["--name", "n", "--trials", "8"])) == Budget("n")
    for both in (["--trials", "3", "--total", "5"], ["--trials", "8", "--total", "5"]):
        with pytest.raises(argparse.ArgumentError, match="not allowed with argument"):
            parser.parse_args(["--name", "n", *both])
    with pytest.raises(SystemExit):  # argparse reports a missing required group by exiting
        parser.parse_args(["--name", "n"])
    assert to_argv(Budget("n")) == ["--name", "n", "--trials", "8", "--seed", "0"]
    assert to_argv(Budget("n", total=5)) == ["--name", "n", "--seed", "0", "--total", "5"]
    assert to_argv(Budget("n", trials=3, seed=2)) == ["--name", "n", "--trials", "3", "--seed", "2"]
    with pytest.raises(ValueError, match="trials, total are alternatives"):
        to_argv(Budget("n", trials=3, total=5))
    for c in (Budget("n"), Budget("n", total=5), Budget("n", trials=0, seed=9)):
        assert configspec.parse(Budget, to_argv(c)) == c


def test_a_switch_or_an_alternative_without_default_is_refused():
    @dataclasses.dataclass
    class NoDefault:
        flag: bool = option(flag="--flag", help="on")

    @dataclasses.dataclass
    class Required:
        a: int = option(flag="--a", help="a", one_of="g")
        b: int = option(0, flag="--b", help="b", one_of="g")

    for cls in (NoDefault, Required):
        with pytest.raises(TypeError, match="needs a default"):
            add_arguments(argparse.ArgumentParser(), cls)
