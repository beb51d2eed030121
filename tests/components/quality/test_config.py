"""The quality config is the CLI's one spec: every flag of ``fareflow quality`` that sets a
``QualityConfig`` field is declared by that field, and any config survives to_argv -> the CLI
-> from_args. The rules (``--rules``, ``--max-reject-pct``) and where results go are not fields."""

from __future__ import annotations

import inspect
import random

from components.common.configspec import from_args, to_argv
from components.quality.__main__ import parser
from components.quality.component import quality
from components.quality.config import WORKER_MEMORY_MB, QualityConfig
from tests.components.common.configs import option_fields, random_config

NOT_CONFIG = {"help", "rules", "max_reject_pct", "no_gate", "report_dir", "summary_json", "quiet"}


def _parse(argv: list[str]) -> QualityConfig:
    return from_args(QualityConfig, parser().parse_args(argv))


def test_every_config_flag_of_the_cli_is_a_config_field():
    dests = {a.dest for a in parser()._actions} - NOT_CONFIG
    assert dests == option_fields(QualityConfig)
    assert set(QualityConfig.__dataclass_fields__) - dests == {"partials_uri", "ruleset", "reservoir_rows"}


def test_each_flag_sets_its_field():
    argv = ["--input", "raw", "--output", "s3://b/clean", "--rejected", "r", "--stats", "st", "--workers", "3",
            "--seed", "9", "--overwrite", "--no-progress", "--worker-memory-mb", "0"]  # fmt: skip
    expected = QualityConfig(
        "raw", "s3://b/clean", rejected_uri="r", stats_uri="st", workers=3, seed=9, overwrite=True, progress=False,
        worker_memory_mb=0,
    )  # fmt: skip
    assert _parse(argv) == expected and to_argv(expected) == argv


def test_cli_and_component_defaults_are_the_config_defaults():
    assert _parse(["--input", "i", "--output", "o"]) == QualityConfig("i", "o")
    assert QualityConfig("i", "o").worker_memory_mb == WORKER_MEMORY_MB
    defaults = {k: p.default for k, p in inspect.signature(quality.python_func).parameters.items()}
    assert defaults["seed"] == QualityConfig.seed and defaults["workers"] == QualityConfig.workers


def test_parse_of_to_argv_is_the_config():
    rng = random.Random(1604)
    for _ in range(300):
        config = random_config(QualityConfig, rng)
        assert _parse(to_argv(config)) == config
