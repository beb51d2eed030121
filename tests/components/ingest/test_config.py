"""The ingest config is the CLI's one spec: every flag of ``fareflow ingest`` but
``--summary-json`` is an ``IngestConfig`` field, and any config survives to_argv -> the CLI ->
from_args (``--block-mb`` is MiB on the command line, bytes in the config)."""

from __future__ import annotations

import random

import pytest

from components.common.configspec import from_args, to_argv
from components.ingest.__main__ import build_parser
from components.ingest.core import IngestConfig
from components.ingest.files import BLOCK_SIZE
from tests.components.common.configs import option_fields, random_config

NOT_CONFIG = {"help", "summary_json"}  # where the summary goes, not how to ingest


def _parse(argv: list[str]) -> IngestConfig:
    return from_args(IngestConfig, build_parser().parse_args(argv))


def test_every_config_flag_of_the_cli_is_a_config_field():
    dests = {a.dest for a in build_parser()._actions} - NOT_CONFIG
    assert dests == option_fields(IngestConfig)
    assert set(IngestConfig.__dataclass_fields__) - dests == {"compression"}  # not a flag


def test_each_flag_sets_its_field():
    argv = [
        "--source",
        "s3://b/raw",
        "--output",
        "out",
        "--quarantine",
        "q",
        "--block-mb",
        "0.5",
        "--progress",
    ]
    assert _parse(argv) == IngestConfig(
        "s3://b/raw", "out", quarantine_uri="q", block_size=1 << 19, progress=True
    )
    assert _parse(["--source", "s", "--output", "o", "--no-progress"]).progress is False


def test_cli_defaults_are_the_config_defaults():
    assert _parse(["--source", "s", "--output", "o"]) == IngestConfig("s", "o")
    assert IngestConfig("s", "o").block_size == BLOCK_SIZE == 8 << 20  # the help's "(default 8)"
    assert to_argv(IngestConfig("s", "o")) == ["--source", "s", "--output", "o", "--block-mb", "8.0"]


@pytest.mark.parametrize("value", ["nan", "0", "-1", "inf", "abc"])
def test_block_mb_must_be_a_positive_number(value, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--source", "s", "--output", "o", f"--block-mb={value}"])
    assert exc.value.code == 2 and "argument --block-mb:" in capsys.readouterr().err


def test_parse_of_to_argv_is_the_config():
    rng = random.Random(1602)
    for _ in range(300):
        block = rng.choice([BLOCK_SIZE, 1024, 1, rng.randint(1, 1 << 34)])
        config = random_config(IngestConfig, rng, block_size=block)
        assert _parse(to_argv(config)) == config
