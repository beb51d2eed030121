"""Pruning that saves compute: with the default settings a clearly bad trial stops after its
first epoch instead of at its last, the starting point's trial (trial 0) is never pruned however
bad it is, and the settings reach Optuna's MedianPruner."""

from __future__ import annotations

import optuna
import pytest

import components.tune.study
from components.common.errors import UserError
from components.tune import core
from components.tune.core import DEFAULTS, TuneConfig
from components.tune.study import BASE_ATTR, enqueue_base, open_study

GOOD = dict(DEFAULTS)
# The smallest learning rate with the largest batch and smallest layers: after an epoch it is far above the
# median of the good trials (it has barely left its initial RMSE).
BAD = {**DEFAULTS, "learning_rate": 1e-4, "batch_size": 2048, "hidden": "64,32"}


def quiet(_message: str) -> None:
    pass


def config(splits, **kwargs) -> TuneConfig:
    return TuneConfig(str(splits), epochs=4, max_rows=800, device="cpu", seed=0, **kwargs)


def test_the_defaults_prune_from_the_first_epoch_after_two_finished_trials():
    defaults = TuneConfig("s")
    assert (defaults.pruning, defaults.prune_startup_trials, defaults.prune_warmup_epochs) == (True, 2, 0)
    pruner = components.tune.study.pruner(defaults)
    assert isinstance(pruner, optuna.pruners.MedianPruner)
    assert (pruner._n_startup_trials, pruner._n_warmup_steps, pruner._interval_steps) == (2, 1, 1)
    custom = components.tune.study.pruner(
        TuneConfig("s", prune_startup_trials=3, prune_warmup_epochs=2, prune_interval_epochs=2)
    )
    assert (custom._n_startup_trials, custom._n_warmup_steps, custom._interval_steps) == (3, 3, 2)
    assert isinstance(components.tune.study.pruner(TuneConfig("s", pruning=False)), optuna.pruners.NopPruner)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prune_startup_trials", 0, "--prune-startup-trials: expected at least 1"),
        ("prune_warmup_epochs", -1, "--prune-warmup-epochs: expected 0 or more"),
        ("prune_interval_epochs", 0, "--prune-interval-epochs: expected at least 1"),
    ],
)
def test_bad_pruning_settings_are_one_line(field, value, message):
    with pytest.raises(UserError, match=message):
        TuneConfig("s", **{field: value}).validate()


def _study_with(splits, tmp_path, trials: list[tuple[dict, dict]], **kwargs):
    """A SQLite study holding the starting point and then ``trials`` (params, user attrs),
    enqueued in that order, and the config that runs them."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = config(splits, storage=f"sqlite:///{tmp_path / 'study.db'}", trials=1 + len(trials), **kwargs)
    study = open_study(cfg)
    assert enqueue_base(study, cfg)
    for params, attrs in trials:
        study.enqueue_trial(params, user_attrs=attrs)
    return cfg


def test_a_clearly_bad_trial_is_pruned_after_its_first_epoch_with_the_defaults(shared_splits, tmp_path):
    cfg = _study_with(shared_splits, tmp_path, [({**GOOD, "dropout": 0.05}, {}), (BAD, {})])
    result = core.run(cfg, log=quiet)
    states = [(t["number"], t["state"], t["epochs_run"]) for t in result.trials]
    # trials 0 and 1 are the start-up trials (all 4 epochs); the bad one stops at epoch 1 of 4
    assert states == [(0, "COMPLETE", 4), (1, "COMPLETE", 4), (2, "PRUNED", 1)], states
    bad = result.trials[2]
    assert bad["params"]["learning_rate"] == BAD["learning_rate"]
    assert bad["intermediate"][1] > max(t["intermediate"][1] for t in result.trials[:2])
    # without pruning the same trial runs to its last epoch: the pruner saved 3 of its 4 epochs
    unpruned = core.run(
        _study_with(
            shared_splits, tmp_path / "off", [({**GOOD, "dropout": 0.05}, {}), (BAD, {})], pruning=False
        ),
        log=quiet,
    )
    assert [(t["state"], t["epochs_run"]) for t in unpruned.trials][2] == ("COMPLETE", 4)


def test_the_starting_point_is_never_pruned_however_bad(shared_splits, tmp_path):
    """The starting point's trial, run after two good ones (as a worker's retry of a killed trial
    0 is), reports every epoch and completes; the same parameters as an ordinary trial are pruned."""
    good = [(GOOD, {}), ({**GOOD, "dropout": 0.05}, {})]
    # the study's own trial 0 is the (good) default; the bad point comes third, marked as the base
    cfg = _study_with(shared_splits, tmp_path / "a", [*good[1:], (BAD, {BASE_ATTR: True})])
    marked = core.run(cfg, log=quiet)
    assert [(t["state"], t["epochs_run"]) for t in marked.trials][2] == ("COMPLETE", 4)
    plain = core.run(_study_with(shared_splits, tmp_path / "b", [*good[1:], (BAD, {})]), log=quiet)
    assert [(t["state"], t["epochs_run"]) for t in plain.trials][2] == ("PRUNED", 1)
    # and a bad starting point passed as base_params is recognised by its parameters too
    cfg = config(shared_splits, storage=f"sqlite:///{tmp_path / 'c.db'}", trials=3, base_params=BAD)
    study = open_study(cfg)
    for params in (GOOD, {**GOOD, "dropout": 0.05}):
        study.enqueue_trial(params)
    study.enqueue_trial(BAD)  # not marked: the trial's parameters are the config's base
    result = core.run(cfg, log=quiet)
    assert [(t["state"], t["epochs_run"]) for t in result.trials][2] == ("COMPLETE", 4)
