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


def test_a_checkpoint_dir_inside_the_model_directory_is_refused(tmp_path):
    import pytest

    from components.common.errors import UserError

    out = tmp_path / "model"
    for inside in (out, out / "ckpt", f"{out}/"):
        cfg = TrainConfig(splits_uri=str(tmp_path / "s"), output_uri=str(out), checkpoint_uri=str(inside))
        with pytest.raises(UserError, match="--checkpoint-dir: .* is inside the model directory"):
            cfg.validate()
    with pytest.raises(UserError, match="inside the model directory"):
        TrainConfig(splits_uri="s3://b/s", output_uri="s3://b/m", checkpoint_uri="s3://b/m/c").validate()
    # beside it (a name that only starts like it included) is fine
    for beside in (tmp_path / "model.checkpoints", tmp_path / "modelx", "s3://b/m2"):
        TrainConfig(
            splits_uri=str(tmp_path / "s"), output_uri=str(out), checkpoint_uri=str(beside)
        ).validate()
