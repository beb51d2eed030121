"""The train step's settings: ``TrainConfig`` (its fields are the CLI's flags) and its checks
(docs/train.md)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from components.common import model_dir
from components.common.configspec import option
from components.common.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("ddp", "horovod")  # components.train.distributed.BACKENDS


@dataclass(frozen=True)
class TrainConfig:
    splits_uri: str = option(
        flag="--splits", help="the sample step's output (train/ validation/ test/), path or s3://"
    )
    output_uri: str = option(
        flag="--output", help="model directory to write (model.json, model.pt, model.npz), path or s3://"
    )
    epochs: int = option(8, flag="--epochs", help="at most this many epochs (default 8)")
    batch_size: int = option(
        1024, flag="--batch-size", help="global batch size, split over the workers (default 1024)"
    )
    learning_rate: float = option(1e-3, flag="--lr", help="AdamW learning rate (default 1e-3)")
    weight_decay: float = option(1e-4, flag="--weight-decay", help="AdamW weight decay (default 1e-4)")
    hidden: tuple[int, ...] = option(
        (128, 64, 32),
        flag="--hidden",
        help="hidden layer widths (default 128,64,32)",
        parse=lambda text: parse_hidden(text),
        format=lambda sizes: ",".join(str(h) for h in sizes),
    )
    dropout: float = option(0.0, flag="--dropout", help="dropout after each hidden layer (default 0)")
    seed: int = option(0, flag="--seed", help="seed for weights and shuffling (default 0)")
    patience: int = option(
        3, flag="--patience", help="stop after this many epochs without a better validation RMSE; 0 = never"
    )
    min_delta: float = option(
        0.0, flag="--min-delta", help="least validation RMSE gain that counts (default 0)"
    )
    checkpoint_uri: str | None = option(
        None,
        flag="--checkpoint-dir",
        help="where rank 0 writes a checkpoint after each epoch and on SIGTERM, path or s3:// "
        "(default: OUTPUT.checkpoints beside the model directory)",
    )
    keep_checkpoints: int = option(
        2, flag="--keep-checkpoints", help="keep the newest K checkpoints (default 2); 0 = write none"
    )
    resume: bool = option(
        True,
        flag="--resume",
        help="yes (default): continue from the newest checkpoint; no (or --no-resume): start over",
        parse=lambda text: parse_yes_no("--resume", text),
        format=lambda value: "yes" if value else "no",
    )
    device: str = option("auto", flag="--device", help="default auto: CUDA if present", choices=DEVICES)
    backend: str = option(
        "ddp",
        flag="--backend",
        help="distributed training with several processes: ddp (torch DDP; torchrun, PyTorchJob; "
        "default) or horovod (horovod.torch; horovodrun, MPIJob)",
        choices=BACKENDS,
    )
    max_rows: int | None = option(None, flag="--max-rows", help="use at most this many rows of each split")
    truth_uri: str | None = option(
        None, flag="--truth", help="the generator's truth.json: adds best_possible_rmse to the metrics"
    )

    def validate(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--epochs: expected at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size: expected at least 1, got {self.batch_size}")
        for flag, value in (("--lr", self.learning_rate), ("--weight-decay", self.weight_decay)):
            if not math.isfinite(value) or value < 0 or (flag == "--lr" and value == 0):
                raise UserError(
                    f"{flag}: expected a finite {'positive' if flag == '--lr' else 'non-negative'} number, got {value}"
                )
        if self.patience < 0:
            raise UserError(
                f"--patience: expected 0 (off) or a positive number of epochs, got {self.patience}"
            )
        if not math.isfinite(self.min_delta) or self.min_delta < 0:
            raise UserError(f"--min-delta: expected a non-negative number, got {self.min_delta}")
        if self.backend not in BACKENDS:
            raise UserError(f"--backend: expected one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.device not in DEVICES:
            raise UserError(f"--device: expected one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.max_rows is not None and self.max_rows < 1:
            raise UserError(f"--max-rows: expected a positive number of rows, got {self.max_rows}")
        if self.keep_checkpoints < 0:
            raise UserError(
                f"--keep-checkpoints: expected 0 (none) or a positive number, got {self.keep_checkpoints}"
            )
        if self.checkpoint_uri and _inside(self.checkpoint_uri, self.output_uri):
            raise UserError(
                f"--checkpoint-dir: {self.checkpoint_uri} is inside the model directory {self.output_uri}, "
                "which is replaced when the model is written; give a location beside it (default: "
                "OUTPUT.checkpoints)"
            )
        self.architecture()

    def checkpoint_dir(self) -> str:
        """Where this run's checkpoints go (``--checkpoint-dir``, else OUTPUT.checkpoints)."""
        from . import checkpoint

        return self.checkpoint_uri or checkpoint.default_dir(self.output_uri)

    def architecture(self) -> model_dir.Architecture:
        return model_dir.Architecture(hidden=tuple(int(h) for h in self.hidden), dropout=float(self.dropout))

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}


def parse_hidden(text: str) -> tuple[int, ...]:
    """'128,64,32' -> (128, 64, 32): one or more positive layer widths."""
    try:
        sizes = tuple(int(p) for p in str(text).split(","))
    except ValueError:
        sizes = ()
    if not sizes or any(s < 1 for s in sizes):
        raise UserError(
            f"--hidden: expected comma-separated positive layer widths (e.g. 128,64,32), got {text!r}"
        )
    return sizes


def parse_yes_no(flag: str, text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("yes", "true", "1"):
        return True
    if value in ("no", "false", "0"):
        return False
    raise UserError(f"{flag}: expected yes or no, got {text!r}")


def _inside(path: str, directory: str) -> bool:
    """``path`` is ``directory`` or below it (URIs compared as strings, local paths resolved)."""
    if "://" not in path and "://" not in directory:
        import os

        path, directory = os.path.abspath(path), os.path.abspath(directory)
    path, directory = path.rstrip("/"), directory.rstrip("/")
    return path == directory or path.startswith(directory + "/")
