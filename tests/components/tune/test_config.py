"""The tune config is the CLI's one spec: every flag of ``fareflow tune`` but
``--summary-json``/``--report-dir`` is a ``TuneConfig`` field, and any config the CLI can
express survives to_argv -> the CLI -> from_args (``--trials`` and ``--total-trials`` are
alternatives: exactly one is given)."""

from __future__ import annotations

import random

import pytest

from components.common.configspec import from_args, to_argv
from components.tune.__main__ import build_parser
from components.tune.config import DEFAULT_STUDY, TuneConfig
from tests.components.common.configs import option_fields, random_config

NOT_CONFIG = {"help", "summary_json", "report_dir"}  # where the results go, not how to tune


def _parse(argv: list[str]) -> TuneConfig:
    return from_args(TuneConfig, build_parser().parse_args(argv))


def test_every_config_flag_of_the_cli_is_a_config_field():
    dests = {a.dest for a in build_parser()._actions} - NOT_CONFIG
    assert dests == option_fields(TuneConfig)
    not_flags = set(TuneConfig.__dataclass_fields__) - dests
    assert not_flags == {"base_params", "max_retries", "connect_timeout_s"}


def test_each_flag_sets_its_field():
    argv = ["--splits", "s3://b/splits", "--total-trials", "12", "--timeout", "60.0", "--seed", "2",
            "--epochs", "3", "--storage", "sqlite:///s.db", "--study-name", "st", "--max-rows", "500",
            "--device", "cpu", "--workers", "2", "--heartbeat", "1.5", "--no-pruning",
            "--prune-startup-trials", "3", "--prune-warmup-epochs", "1", "--prune-interval-epochs", "2"]  # fmt: skip
    expected = TuneConfig(
        "s3://b/splits", total_trials=12, timeout_s=60.0, seed=2, epochs=3, storage="sqlite:///s.db",
        study_name="st", max_rows=500, device="cpu", workers=2, heartbeat_s=1.5, pruning=False,
        prune_startup_trials=3, prune_warmup_epochs=1, prune_interval_epochs=2,
    )  # fmt: skip
    assert _parse(argv) == expected
    assert _parse(to_argv(expected)) == expected and "--trials" not in to_argv(expected)


def test_trials_or_total_trials_exactly_one(capsys):
    assert _parse(["--splits", "s", "--trials", "0"]) == TuneConfig("s", trials=0)
    assert _parse(["--splits", "s", "--trials", "8"]) == TuneConfig("s")  # the default's value is given
    assert _parse(["--splits", "s", "--total-trials", "5"]) == TuneConfig("s", total_trials=5)
    for argv in (["--splits", "s"], ["--splits", "s", "--trials", "8", "--total-trials", "5"]):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 2 and "--total-trials" in capsys.readouterr().err


def test_cli_defaults_are_the_config_defaults():
    config = _parse(["--splits", "s", "--trials", "8"])
    assert config == TuneConfig("s") and config.study_name == DEFAULT_STUDY and config.storage == ""
    assert to_argv(TuneConfig("s")) == ["--splits", "s", "--trials", "8", "--seed", "0", "--epochs", "4",
                                        "--storage", "", "--study-name", DEFAULT_STUDY, "--device", "auto",
                                        "--pruning", "--prune-startup-trials", "2", "--prune-warmup-epochs",
                                        "0", "--prune-interval-epochs", "1", "--workers", "1", "--heartbeat",
                                        "10.0"]  # fmt: skip


def test_parse_of_to_argv_is_the_config():
    rng = random.Random(1605)
    for _ in range(300):
        if rng.random() < 0.5:  # N new trials
            budget = {"trials": rng.choice([0, 1, rng.randint(2, 500)]), "total_trials": None}
        else:  # until the study holds N (trials then keeps its default)
            budget = {"trials": TuneConfig.trials, "total_trials": rng.randint(0, 500)}
        config = random_config(TuneConfig, rng, **budget)
        assert _parse(to_argv(config)) == config
