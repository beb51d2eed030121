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
    import os
    import shutil
    import tempfile

    from components.common.artifacts import save_metrics
    from components.train.config import TrainConfig, parse_hidden
    from components.train.launch import launch_local

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
        summary = launch_local(config, workers, report_dir=tmp)
        shutil.copyfile(os.path.join(tmp, "report.html"), report.path)
        shutil.copyfile(os.path.join(tmp, "summary.md"), summary_md.path)
    values = summary["metrics"]
    for name in ("test_rmse", "validation_rmse", "train_rmse", "baseline_rmse", "rows_per_s"):
        metrics.log_metric(name, values[name])
    metrics.log_metric("best_epoch", summary["best_epoch"])
    save_metrics(metrics)
    model.metadata.update(
        {"framework": "pytorch", "format": "fareflow", "best_epoch": summary["best_epoch"], **values}
    )
    summary["artifacts"] = {"model": model.uri, "report": report.uri, "summary_md": summary_md.uri}
    return summary
