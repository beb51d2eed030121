"""CLI: ``python -m components.generate --out DIR [--rows N] [--months A:B] [--seed S] [--zip]``."""

from __future__ import annotations

import argparse
import sys

from components.common import cli
from components.common.errors import cli_entry

from .core import GenerateConfig, generate


def build_parser() -> argparse.ArgumentParser:
    defaults = GenerateConfig(out="")
    parser = argparse.ArgumentParser(
        prog="fareflow generate",
        description="Write synthetic trip files in the DC taxi format (taxi_YYYY_MM.txt) plus truth.json.",
    )
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument(
        "--rows", type=int, default=defaults.rows, help="total rows across all months (default %(default)s)"
    )
    parser.add_argument(
        "--months",
        default=defaults.months,
        help="inclusive range YYYY-MM:YYYY-MM or one YYYY-MM (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)")
    parser.add_argument(
        "--zip", action="store_true", help="write yearly taxi_YYYY.zip archives instead of .txt files"
    )
    return parser


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


@cli_entry(prog="fareflow generate")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.output_dir("--out", args.out)
    config = GenerateConfig(out=args.out, rows=args.rows, months=args.months, seed=args.seed, zip=args.zip)
    result = generate(config, progress=True)
    truth = result.truth
    print(
        f"generate: {result.rows:,} rows in {len(result.files)} file(s) under {config.out} "
        f"in {result.seconds:.1f}s ({result.rows / max(result.seconds, 1e-9):,.0f} rows/s); "
        f"clean rows {truth['clean']['rows']:,}, fare mean {_fmt(truth['clean']['fare_mean'])} "
        f"std {_fmt(truth['clean']['fare_std'])}, best RMSE {_fmt(truth['best_rmse'], 3)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
