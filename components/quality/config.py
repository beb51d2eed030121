"""The quality step's settings: ``QualityConfig`` (the fields with an ``option`` are the CLI's
flags; docs/quality.md)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from components.common import contract
from components.common.configspec import option

if TYPE_CHECKING:  # imported when needed: ``fareflow quality --help`` reads only this module
    from .rules import RuleSet

# DuckDB's limit per worker: a full-size month (1.27M rows) peaks at ~1.15 GB RSS without it
# and ~0.84 GB with it (the same files; ~20% more CPU for what it spills), so two workers and
# the parent stay under 2 GiB. Partitions of up to ~400k rows never reach it.
WORKER_MEMORY_MB = 600


@dataclass
class QualityConfig:
    input_uri: str = option(
        flag="--input", help="ingest output: directory or s3:// URI with year=/month= Parquet"
    )
    output_uri: str = option(flag="--output", help="clean data set (directory or s3:// URI)")
    rejected_uri: str | None = option(
        None, flag="--rejected", help="rejected rows (default: OUTPUT_rejected)"
    )
    stats_uri: str | None = option(
        None,
        flag="--stats",
        help="population statistics directory: stats.json + reservoir.parquet (default: OUTPUT_stats)",
    )
    partials_uri: str | None = None  # per-partition statistics; default: <stats>/partitions
    ruleset: RuleSet | None = None  # default: the shipped rules (the CLI: --rules, --max-reject-pct)
    workers: int = option(
        0, flag="--workers", help="processes, one partition each at a time (default: CPU cores)"
    )
    seed: int = option(0, flag="--seed", help="seed of the hash that picks the population reservoir")
    reservoir_rows: int = contract.RESERVOIR_ROWS
    overwrite: bool = option(
        False, flag="--overwrite", help="replace the contents of existing output directories"
    )
    progress: bool | None = option(  # None: if stderr is a terminal
        None,
        flag="--progress",
        help="a progress bar on stderr (partitions, rows, ETA; default: when stderr is a terminal)",
    )
    worker_memory_mb: int = option(
        WORKER_MEMORY_MB,
        flag="--worker-memory-mb",
        help="DuckDB memory limit per worker process, spilling to disk beyond it (0: DuckDB's default)",
    )

    def resolved(self) -> QualityConfig:
        from .layout import join_uri
        from .rules import load_rules

        rejected = self.rejected_uri or self.output_uri.rstrip("/") + "_rejected"
        stats = self.stats_uri or self.output_uri.rstrip("/") + "_stats"
        return QualityConfig(
            **{
                **asdict(self),
                "ruleset": self.ruleset or load_rules(),
                "rejected_uri": rejected,
                "stats_uri": stats,
                "partials_uri": self.partials_uri or join_uri(stats, "partitions"),
                "workers": self.workers or os.cpu_count() or 1,
            }
        )
