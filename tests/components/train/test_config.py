"""The train config is the CLI's one spec: every flag of ``fareflow train`` that sets the
config is a ``TrainConfig`` field, and any config survives to_argv -> the CLI -> from_args."""

from __future__ import annotations

import random

from components.common import configspec
from components.train.__main__ import build_parser
from components.train.config import TrainConfig
from tests.components.common.configs import option_fields, random_config

NOT_CONFIG = {
    "help",
    "workers",
    "max_restarts",
    "summary_json",
    "report_dir",
}  # how to run, not what to train


def test_every_config_flag_of_the_cli_is_a_config_field():
    dests = {a.dest for a in build_parser()._actions} - NOT_CONFIG
    assert dests == option_fields(TrainConfig)
    assert option_fields(TrainConfig) == set(TrainConfig.__dataclass_fields__)


def test_parse_of_to_argv_is_the_config():
    rng = random.Random(16)
    for _ in range(300):
        config = random_config(TrainConfig, rng)
        argv = configspec.to_argv(config)
        assert configspec.parse(TrainConfig, argv) == config
        assert configspec.from_args(TrainConfig, build_parser().parse_args(argv)) == config


def test_cli_defaults_are_the_config_defaults():
    parsed = configspec.from_args(TrainConfig, build_parser().parse_args(["--splits", "s", "--output", "o"]))
    assert parsed == TrainConfig("s", "o")
