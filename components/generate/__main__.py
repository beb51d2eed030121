"""CLI: ``python -m components.generate --out DIR [--rows N] [--months A:B] [--seed S] [--zip]``.

The flags are ``GenerateConfig``'s fields. Exit status: 0 written; 2 bad arguments or output
directory (one line on stderr)."""

from __future__ import annotations

import argparse
import sys

from components.common import cli
from components.common.configspec import add_arguments, from_args
from components.common.errors import cli_entry

from . import core


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fareflow generate",
        description="Write synthetic trip files in the DC taxi format (taxi_YYYY_MM.txt) plus truth.json.",
    )
    add_arguments(parser, core.GenerateConfig)
    return parser


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


@cli_entry(prog="fareflow generate")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.output_dir("--out", args.output_uri)
    config = from_args(core.GenerateConfig, args)
    result = core.run(config, progress=True)
    truth = result.truth
    print(
        f"generate: {result.rows:,} rows in {len(result.files)} file(s) under {config.output_uri} "
        f"in {result.seconds:.1f}s ({result.rows / max(result.seconds, 1e-9):,.0f} rows/s); "
        f"clean rows {truth['clean']['rows']:,}, fare mean {_fmt(truth['clean']['fare_mean'])} "
        f"std {_fmt(truth['clean']['fare_std'])}, best RMSE {_fmt(truth['best_rmse'], 3)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
