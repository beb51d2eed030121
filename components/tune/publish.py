"""The tune step's component tail, shared by the local ``tune`` and the cluster ``tune_job``
components: publish the result (report, summary, metrics artifacts) and hand the best trial's
settings on, typed, as the train step's inputs of the same names."""

from __future__ import annotations

from collections import namedtuple

from components.common.publish import publish_component
from components.tune.report import render_html, render_markdown

# The components' NamedTuple outputs, in their order (kfp reads the values by position).
TuneOutputs = namedtuple(
    "TuneOutputs", ["learning_rate", "batch_size", "hidden", "weight_decay", "dropout", "summary"]
)


def base_params(
    learning_rate: float, batch_size: int, hidden: str, weight_decay: float, dropout: float
) -> dict:
    """The pipeline's training settings as the study's trial 0."""
    return {
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "hidden": hidden,
        "weight_decay": weight_decay,
        "dropout": dropout,
    }


def publish_tune(result, *, report, summary_md, metrics) -> TuneOutputs:
    summary = publish_component(
        result, render_html, render_markdown, report=report, summary_md=summary_md, metrics=metrics
    )
    best = result.best_params
    return TuneOutputs(
        float(best["learning_rate"]),
        int(best["batch_size"]),
        str(best["hidden"]),
        float(best["weight_decay"]),
        float(best["dropout"]),
        summary,
    )
