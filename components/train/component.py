"""KFP component over ``components.train.launch`` (logic and tests live in the step's modules)."""

# No "from __future__ import annotations": kfp reads the annotations as objects.

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.common.images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def train(
    splits: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[HTML],
    summary_md: Output[Markdown],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    hidden: str,
    weight_decay: float,
    dropout: float,
    workers: int,
    seed: int,
    backend: str = "ddp",
) -> dict:
    """Train the fare model on ``splits`` (the sample step's output) with ``workers`` processes
    on this pod -- DDP ranks (torchrun) or, with ``backend="horovod"``, Horovod ranks (horovodrun,
    gloo on CPU); ``model.path`` becomes the model directory."""
    import tempfile

    from components.common.publish import publish_component, written_report
    from components.train.config import TrainConfig, parse_hidden
    from components.train.launch import launch_local
    from components.train.result import TrainSummary

    config = TrainConfig(
        splits_uri=splits.path,
        output_uri=model.path,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        hidden=parse_hidden(hidden),
        weight_decay=weight_decay,
        dropout=dropout,
        seed=seed,
        backend=backend,
        # a kfp task's artifact paths are new on every execution, so nothing could resume from
        # checkpoints beside them (the cluster's PyTorchJob keeps them on S3 instead)
        keep_checkpoints=0,
        resume=False,
    )
    with tempfile.TemporaryDirectory(prefix="fareflow-train-report-") as tmp:
        # rank 0 (this process, or one of the launched ones) writes the report to tmp
        result = TrainSummary(launch_local(config, workers, report_dir=tmp))
        summary = publish_component(
            result, *written_report(tmp), report=report, summary_md=summary_md, metrics=metrics,
            artifacts={"model": model},
        )  # fmt: skip
    model.metadata.update(
        {
            "framework": "pytorch",
            "format": "fareflow",
            "best_epoch": summary["best_epoch"],
            **summary["metrics"],
        }
    )
    return summary
