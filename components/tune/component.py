"""KFP component over ``components.tune.core`` (logic and tests live there)."""

# No "from __future__ import annotations": kfp reads the annotations as objects.

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output

from components.common.images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def tune(
    splits: Input[Dataset],
    trials: int,
    epochs: int,
    seed: int,
    learning_rate: float,
    batch_size: int,
    hidden: str,
    weight_decay: float,
    dropout: float,
    report: Output[HTML],
    summary_md: Output[Markdown],
    metrics: Output[Metrics],
    workers: int = 1,
) -> NamedTuple(
    "TuneOutputs",
    [
        ("learning_rate", float),
        ("batch_size", int),
        ("hidden", str),
        ("weight_decay", float),
        ("dropout", float),
        ("summary", dict),
    ],
):
    """Tune the train step's hyper-parameters on ``splits`` (an in-memory Optuna study of
    ``trials`` trials of at most ``epochs`` epochs, TPE seeded with ``seed``, median pruning);
    ``trials`` 0 switches tuning off. The given ``learning_rate`` ... ``dropout`` are trial 0 (and
    the answer when tuning is off); the outputs are the best trial's, the train step's inputs of
    the same names; ``summary`` holds every trial. ``workers`` > 1: that many processes on one
    study in a SQLite file of the task's (``fareflow tune --workers``), the CPUs split between
    them (the cluster runs N > 1 as a Kubernetes Job instead: components.cluster.component)."""
    from components.tune import core
    from components.tune.publish import base_params, publish_tune

    base = base_params(learning_rate, batch_size, hidden, weight_decay, dropout)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fareflow-tune-study-") as tmp:
        if workers > 1 and trials > 0:  # N processes need a study they share
            config = core.TuneConfig(
                splits_uri=splits.path, total_trials=trials, epochs=epochs, seed=seed, base_params=base,
                storage=f"sqlite:///{tmp}/study.db", workers=workers,
            )  # fmt: skip
        else:
            config = core.TuneConfig(
                splits_uri=splits.path, trials=trials, epochs=epochs, seed=seed, base_params=base
            )
        result = core.run(config)
    return publish_tune(result, report=report, summary_md=summary_md, metrics=metrics)
