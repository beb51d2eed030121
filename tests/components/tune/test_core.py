from __future__ import annotations

import math

import optuna
import pytest

from components.common.errors import UserError
from components.train import core as train_core
from components.tune import core, space
from components.tune.config import redact
from components.tune.core import DEFAULTS, TuneConfig


def quiet(_message: str) -> None:
    pass


def tune(splits, **kwargs) -> core.TuneResult:
    kwargs.setdefault("epochs", 3)
    return core.run(TuneConfig(splits_uri=str(splits), device="cpu", **kwargs), log=quiet)


def test_defaults_are_the_train_steps_and_inside_the_search_space():
    from components.common.configspec import from_args
    from components.train.__main__ import build_parser

    # what `fareflow train` runs with no hyper-parameter flag, and a trial with DEFAULTS
    train_cli = from_args(
        train_core.TrainConfig, build_parser().parse_args(["--splits", "s", "--output", "o"])
    )
    trial = space.train_config(TuneConfig("s"), DEFAULTS, "o")
    assert set(DEFAULTS) == set(space.PARAM_NAMES)
    for field in ("learning_rate", "batch_size", "hidden", "weight_decay", "dropout"):
        assert getattr(trial, field) == getattr(train_cli, field), field
    # the types Optuna's suggestions have (an enqueued trial must match its distributions)
    assert {k: type(v) for k, v in DEFAULTS.items()} == {
        "learning_rate": float, "batch_size": int, "hidden": str, "weight_decay": float, "dropout": float,
    }  # fmt: skip
    for name, (kind, values) in space.SEARCH_SPACE.items():
        if kind == "categorical":
            assert DEFAULTS[name] in values
        else:
            assert values[0] <= DEFAULTS[name] <= values[1]


def test_trials_zero_is_off_and_returns_the_defaults_without_reading_input(tmp_path):
    result = tune(tmp_path / "nothing-here", trials=0)
    assert result.best_params == DEFAULTS and result.best_params is not DEFAULTS
    assert result.best_value is None and result.trials == [] and result.note == core.OFF_NOTE
    summary = result.summary()
    assert summary["best_params"] == DEFAULTS and summary["note"] == core.OFF_NOTE


def test_trial_0_is_the_defaults_and_the_best_is_no_worse(shared_splits):
    result = tune(shared_splits, trials=3, seed=1)
    assert len(result.trials) == 3 and result.new_trials == 3
    first = result.trials[0]
    assert first["number"] == 0 and first["params"] == DEFAULTS and first["state"] == "COMPLETE"
    assert result.default_value == first["value"]
    complete = [t["value"] for t in result.trials if t["state"] == "COMPLETE"]
    assert result.best_value == min(complete) <= result.default_value
    best = result.trials[result.best_trial]
    assert best["value"] == result.best_value and best["params"] == result.best_params
    assert set(result.best_params) == set(space.PARAM_NAMES)
    # the best parameters, retrained alone, give the same validation RMSE (one CPU process is deterministic)
    retrained = train_core.run(
        space.train_config(result.config, result.best_params, str(shared_splits.parent / "check")),
        log=quiet,
        progress=False,
    )
    assert retrained.metrics["validation_rmse"] == pytest.approx(result.best_value, rel=1e-9)
    for t in result.trials:
        assert 1 <= t["epochs_run"] <= 3 and len(t["intermediate"]) == t["epochs_run"]
        kind_ok = [
            1e-4 <= t["params"]["learning_rate"] <= 1e-2,
            t["params"]["batch_size"] in space.BATCH_CHOICES,
            t["params"]["hidden"] in space.HIDDEN_CHOICES,
            1e-6 <= t["params"]["weight_decay"] <= 1e-2,
            0 <= t["params"]["dropout"] <= 0.3,
        ]
        assert all(kind_ok), t


def test_same_seed_same_study_other_seed_other_trials(shared_splits):
    a = tune(shared_splits, trials=3, seed=5, max_rows=800)
    b = tune(shared_splits, trials=3, seed=5, max_rows=800)
    c = tune(shared_splits, trials=3, seed=6, max_rows=800)
    assert a.best_params == b.best_params and a.best_value == b.best_value
    assert [(t["params"], t["value"], t["state"]) for t in a.trials] == [
        (t["params"], t["value"], t["state"]) for t in b.trials
    ]
    assert a.trials[1]["params"] != c.trials[1]["params"]  # trial 0 is the defaults in both


def test_pruning_stops_trials_worse_than_the_median(shared_splits):
    result = tune(
        shared_splits, trials=6, seed=0, epochs=3, max_rows=800, prune_startup_trials=1, prune_warmup_epochs=0
    )
    pruned = [t for t in result.trials if t["state"] == "PRUNED"]
    assert pruned, [(t["state"], t["intermediate"]) for t in result.trials]
    assert result.trials[0]["state"] == "COMPLETE"  # the start-up trial is never pruned
    for t in pruned:
        assert t["epochs_run"] < 3 and len(t["intermediate"]) == t["epochs_run"]
        # the pruner's rule: worse than the median of the earlier trials at that epoch
        step = t["epochs_run"]
        earlier = [u["intermediate"][step] for u in result.trials[: t["number"]] if step in u["intermediate"]]
        assert t["intermediate"][step] > sorted(earlier)[(len(earlier) - 1) // 2]
    assert result.counts()["PRUNED"] == len(pruned)


def test_warmup_epochs_are_never_pruned(shared_splits):
    result = tune(
        shared_splits, trials=5, seed=0, epochs=2, max_rows=800, prune_startup_trials=1, prune_warmup_epochs=2
    )
    assert all(t["state"] == "COMPLETE" and t["epochs_run"] == 2 for t in result.trials)


class FakeTrial:
    def __init__(self, prune_at: int | None):
        self.prune_at, self.reported, self.user_attrs = prune_at, [], {}

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return self.prune_at is not None and self.reported[-1][0] >= self.prune_at


def test_pruning_callback_stops_core_run_at_the_pruned_epoch(shared_splits, tmp_path):
    trial = FakeTrial(prune_at=2)
    config = space.train_config(
        TuneConfig(str(shared_splits), epochs=5, device="cpu"), DEFAULTS, str(tmp_path / "m")
    )
    with pytest.raises(optuna.TrialPruned, match="pruned at epoch 2"):
        train_core.run(config, log=quiet, progress=False, on_epoch=space.pruning_callback(trial))
    assert [step for step, _ in trial.reported] == [1, 2] and trial.user_attrs["epochs_run"] == 2
    assert all(math.isfinite(v) and v > 0 for _, v in trial.reported)
    assert not (tmp_path / "m").exists()  # stopped before writing a model
    # without pruning the same callback lets every epoch through, with the RMSEs of the history
    trial = FakeTrial(prune_at=None)
    result = train_core.run(config, log=quiet, progress=False, on_epoch=space.pruning_callback(trial))
    assert trial.reported == [(h["epoch"], h["validation_rmse"]) for h in result.history]


def test_pruning_callback_marks_a_non_finite_rmse_as_diverged():
    trial = FakeTrial(prune_at=None)
    with pytest.raises(space.Diverged):
        space.pruning_callback(trial)(3, float("nan"))
    assert trial.reported == [] and trial.user_attrs["epochs_run"] == 3


def test_sqlite_study_is_stored_and_a_second_run_continues_it(shared_splits, tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = tune(shared_splits, trials=2, seed=2, max_rows=600, storage=url, study_name="s1")
    assert [t["number"] for t in first.trials] == [0, 1]
    stored = optuna.load_study(study_name="s1", storage=url)
    assert len(stored.trials) == 2 and stored.trials[0].params == DEFAULTS
    assert stored.best_value == first.best_value
    second = tune(shared_splits, trials=2, seed=3, max_rows=600, storage=url, study_name="s1")
    assert second.new_trials == 2 and [t["number"] for t in second.trials] == [0, 1, 2, 3]
    assert sum(t["params"] == DEFAULTS for t in second.trials) == 1  # the defaults are not enqueued again
    assert second.trials[:2] == first.trials and second.best_value <= first.best_value
    assert len(optuna.load_study(study_name="s1", storage=url).trials) == 4
    other = tune(shared_splits, trials=1, max_rows=600, storage=url, study_name="s2")
    assert [t["params"] for t in other.trials] == [DEFAULTS]


def test_storage_password_is_never_shown():
    assert redact("postgresql://fare:s3cret@db:5432/optuna") == "postgresql://fare:***@db:5432/optuna"
    assert redact("sqlite:///x.db") == "sqlite:///x.db" and redact("") == "in-memory"
    config = TuneConfig("s", storage="postgresql://fare:s3cret@db/optuna")
    assert "s3cret" not in str(config.to_dict())


def test_bad_storage_is_a_one_line_user_error(shared_splits):
    with pytest.raises(UserError, match=r"^--storage nosuchdb://u:\*\*\*@h/x: cannot open study") as err:
        tune(shared_splits, trials=1, storage="nosuchdb://u:pw@h/x")
    assert "\n" not in str(err.value) and "pw" not in str(err.value)


def test_missing_success_is_refused_before_any_trial(make_splits):
    splits = make_splits(success=False)
    with pytest.raises(UserError, match="no _SUCCESS marker"):
        tune(splits, trials=2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"trials": -1}, "--trials"),
        ({"epochs": 0}, "--epochs"),
        ({"timeout_s": 0.0}, "--timeout"),
        ({"max_rows": 0}, "--max-rows"),
        ({"study_name": " "}, "--study-name"),
        ({"prune_startup_trials": 0}, "--prune-startup-trials"),
    ],
)
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(UserError, match=message):
        TuneConfig("s", **kwargs).validate()


def test_a_diverging_trial_is_failed_and_the_study_goes_on(shared_splits, monkeypatch):
    suggest = space.suggest

    def exploding(trial, base=None):
        params = suggest(trial, base)
        return {**params, "learning_rate": 1e9} if trial.number == 1 else params

    monkeypatch.setattr(space, "suggest", exploding)
    result = tune(shared_splits, trials=3, seed=0, epochs=2, max_rows=600)
    assert [t["state"] for t in result.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert result.trials[1]["value"] is None and result.best_trial != 1
    assert result.counts() == {"COMPLETE": 2, "PRUNED": 0, "FAIL": 1}


def test_given_base_params_are_trial_0_and_the_answer_when_off(make_splits, tmp_path):
    """The pipeline passes its own training settings: they start the study (trial 0) and are
    returned unchanged when tuning is off."""
    base = {"learning_rate": 0.005, "hidden": "64,32", "dropout": 0.1}
    off = tune(tmp_path / "nothing-here", trials=0, base_params=base)
    assert off.best_params == {**DEFAULTS, **base}
    on = tune(make_splits(n=1500), trials=2, epochs=2, base_params=base)
    assert on.trials[0]["params"] == {**DEFAULTS, **base}
    assert on.default_value == on.trials[0]["value"]  # "defaults" = the given starting point
    with pytest.raises(UserError, match="base parameters \\['epochs'\\]"):
        tune(tmp_path, trials=0, base_params={"epochs": 3})


@pytest.mark.filterwarnings("ignore:Fixed parameter dropout with value 0.5 is out of range:UserWarning")
def test_a_starting_point_outside_the_search_space_is_still_trial_0(make_splits):
    """Pipeline settings need not be among the categorical choices (batch 1000, layers 32,16),
    nor inside the float ranges (dropout 0.5): trial 0 runs them as given."""
    splits = make_splits(n=1500)
    base = {"batch_size": 1000, "hidden": "32,16", "dropout": 0.5}
    result = tune(splits, trials=2, epochs=1, base_params=base)
    assert result.trials[0]["params"] == {**DEFAULTS, **base}
    assert result.trials[0]["state"] == "COMPLETE"
    with pytest.raises(UserError, match="weight_decay=0.0: a tuned run starts from a positive value"):
        tune(splits, trials=2, epochs=1, base_params={"weight_decay": 0.0})


def test_each_trial_logs_its_epochs_for_the_run_console(shared_splits):
    """fareflow run's tune line shows the running trial's epoch from these lines
    (pipelines/console.py parses ``trial N epoch e/E: ...``)."""
    from pipelines.console import StepProgress

    lines: list[str] = []
    config = TuneConfig(str(shared_splits), trials=2, epochs=2, seed=3, max_rows=800, device="cpu")
    core.run(config, log=lines.append)
    epochs = [line for line in lines if " epoch " in line and line.startswith("trial ")]
    assert [line.split(":")[0] for line in epochs] == [
        "trial 0 epoch 1/2", "trial 0 epoch 2/2", "trial 1 epoch 1/2", "trial 1 epoch 2/2"
    ]  # fmt: skip
    progress = StepProgress("tune", total=2)
    assert progress.feed(f"tune: {epochs[0]}") and (progress.epoch, progress.epochs) == (1, 2)
    assert progress.text().startswith("trial 1/2, epoch 1/2")
