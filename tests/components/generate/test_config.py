"""The generate config is the CLI's one spec: every flag of ``fareflow generate`` is a
``GenerateConfig`` field, and any config survives to_argv -> the CLI -> from_args."""

from __future__ import annotations

import random

from components.common.configspec import from_args, to_argv
from components.generate.__main__ import build_parser
from components.generate.core import GenerateConfig
from tests.components.common.configs import option_fields, random_config


def _parse(argv: list[str]) -> GenerateConfig:
    return from_args(GenerateConfig, build_parser().parse_args(argv))


def test_every_flag_of_the_cli_is_a_config_field():
    dests = {a.dest for a in build_parser()._actions} - {"help"}
    assert dests == option_fields(GenerateConfig) == set(GenerateConfig.__dataclass_fields__)


def test_each_flag_sets_its_field():
    argv = ["--out", "d", "--rows", "5000", "--months", "2016-02:2016-03", "--seed", "7", "--zip"]
    assert _parse(argv) == GenerateConfig("d", rows=5000, months="2016-02:2016-03", seed=7, zip=True)
    assert to_argv(GenerateConfig("d", rows=5000, months="2016-02:2016-03", seed=7, zip=True)) == argv


def test_cli_defaults_are_the_config_defaults():
    assert _parse(["--out", "d"]) == GenerateConfig("d")
    assert to_argv(GenerateConfig("d")) == ["--out", "d", "--rows", "200000", "--months", "2015-01:2015-06",
                                            "--seed", "0"]  # fmt: skip


def test_parse_of_to_argv_is_the_config():
    rng = random.Random(1601)
    for _ in range(300):
        config = random_config(GenerateConfig, rng)
        assert _parse(to_argv(config)) == config
