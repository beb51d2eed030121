"""The sample step's settings: ``SampleConfig`` (its fields are the CLI's flags) and its checks
(docs/sample.md). Light to import: ``fareflow sample --help`` reads only this."""

from __future__ import annotations

import math
from dataclasses import dataclass

from components.common.configspec import option
from components.common.errors import UserError

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)


def parse_fractions(value: str | tuple | list) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' -> (0.8, 0.1, 0.1): three positive numbers summing to 1."""
    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or not all(math.isfinite(p) and p > 0 for p in parts) or abs(sum(parts) - 1) > 1e-6:
        raise UserError(
            f"--fractions: expected three positive numbers train,validation,test summing to 1 (e.g. 0.8,0.1,0.1), got {text!r}"
        )
    return parts  # type: ignore[return-value]


@dataclass(frozen=True)
class SampleConfig:
    input_uri: str = option(
        flag="--input", help="clean Parquet data set (hive year=/month=), path or s3:// URI"
    )
    population_stats_uri: str = option(
        flag="--population-stats", help="directory with stats.json and reservoir.parquet"
    )
    output_uri: str = option(
        flag="--output", help="output directory: train/ validation/ test/ with part-NNNNN.parquet"
    )
    rows: int = option(0, flag="--rows", help="sample size; 0 (default) = automatic (standard-error rule)")
    fractions: tuple[float, float, float] = option(
        DEFAULT_FRACTIONS,
        flag="--fractions",
        help="train,validation,test fractions (default 0.8,0.1,0.1)",
        parse=parse_fractions,
        format=lambda parts: ",".join(repr(float(p)) for p in parts),
    )
    seed: int = option(0, flag="--seed", help="base seed (split hash; attempt i samples with seed + i)")
    shards: int = option(1, flag="--shards", help="Parquet files per split (one per training worker)")
    alpha: float = option(0.05, flag="--alpha", help="family-wise significance level (Bonferroni)")
    max_attempts: int = option(10, flag="--max-attempts", help="seeds to try before failing (default 10)")
    se_tolerance: float = option(
        3e-4,
        flag="--se-tolerance",
        help="automatic size: stop doubling when the SE gain is below this fraction of sigma (default 3e-4)",
    )

    def validate(self) -> None:
        parse_fractions(self.fractions)
        if self.rows < 0:
            raise UserError(f"--rows: expected 0 (automatic) or a positive number of rows, got {self.rows}")
        if self.shards < 1:
            raise UserError(f"--shards: expected at least 1 shard per split, got {self.shards}")
        if self.max_attempts < 1:
            raise UserError(f"--max-attempts: expected at least 1, got {self.max_attempts}")
        if not 0 < self.alpha < 1:
            raise UserError(f"--alpha: expected a number in (0, 1), got {self.alpha}")
