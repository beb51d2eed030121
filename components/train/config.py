"""The train step's settings: ``TrainConfig`` and its checks (docs/train.md)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from components.common import model_dir
from components.common.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    splits_uri: str
    output_uri: str
    epochs: int = 8
    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    hidden: tuple[int, ...] = (128, 64, 32)
    dropout: float = 0.0
    seed: int = 0
    patience: int = 3  # epochs without a better validation RMSE before stopping; 0 = never stop early
    min_delta: float = 0.0  # a validation RMSE must beat the best by more than this to count
    device: str = "auto"
    max_rows: int | None = None  # use at most this many rows of each split (None = all)
    truth_uri: str | None = None  # the generator's truth.json, for best_possible_rmse

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
        if self.device not in DEVICES:
            raise UserError(f"--device: expected one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.max_rows is not None and self.max_rows < 1:
            raise UserError(f"--max-rows: expected a positive number of rows, got {self.max_rows}")
        self.architecture()

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
