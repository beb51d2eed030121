"""The sample config is the CLI's one spec: every flag of ``fareflow sample`` but
``--report-dir``/``--summary-json`` is a ``SampleConfig`` field, and any config survives
to_argv -> the CLI -> from_args."""

from __future__ import annotations

import random

import pytest

from components.common.configspec import from_args, to_argv
from components.common.errors import UserError
from components.sample.__main__ import build_parser
from components.sample.config import DEFAULT_FRACTIONS, SampleConfig
from tests.components.common.configs import option_fields, random_config

NOT_CONFIG = {"help", "report_dir", "summary_json"}  # where the results go, not how to sample
REQUIRED = ["--input", "c", "--population-stats", "p", "--output", "o"]


def _parse(argv: list[str]) -> SampleConfig:
    return from_args(SampleConfig, build_parser().parse_args(argv))


def test_every_config_flag_of_the_cli_is_a_config_field():
    dests = {a.dest for a in build_parser()._actions} - NOT_CONFIG
    assert dests == option_fields(SampleConfig) == set(SampleConfig.__dataclass_fields__)


def test_each_flag_sets_its_field():
    argv = [*REQUIRED, "--rows", "4096", "--fractions", "0.7,0.2,0.1", "--seed", "3", "--shards", "4",
            "--alpha", "0.01", "--max-attempts", "2", "--se-tolerance", "0.001"]  # fmt: skip
    assert _parse(argv) == SampleConfig(
        "c", "p", "o", rows=4096, fractions=(0.7, 0.2, 0.1), seed=3, shards=4, alpha=0.01,
        max_attempts=2, se_tolerance=0.001,
    )  # fmt: skip
    assert to_argv(_parse(argv)) == argv


def test_cli_defaults_are_the_config_defaults():
    assert _parse(REQUIRED) == SampleConfig("c", "p", "o")
    assert SampleConfig("c", "p", "o").fractions == DEFAULT_FRACTIONS == (0.8, 0.1, 0.1)


def test_bad_fractions_are_one_user_error():
    with pytest.raises(UserError, match="--fractions: expected three positive numbers"):
        build_parser().parse_args([*REQUIRED, "--fractions", "0.8,0.3,0.1"])


def _fractions(rng: random.Random) -> tuple[float, float, float]:
    if rng.random() < 0.2:
        return DEFAULT_FRACTIONS
    train = rng.uniform(0.01, 0.98)
    validation = rng.uniform(0.001, (1 - train) * 0.99)
    return (train, validation, 1 - train - validation)


def test_parse_of_to_argv_is_the_config():
    rng = random.Random(1603)
    for _ in range(300):
        config = random_config(SampleConfig, rng, fractions=_fractions(rng))
        assert _parse(to_argv(config)) == config
