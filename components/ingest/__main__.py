"""CLI: ``python -m components.ingest --source URI --output URI [--quarantine URI] [--summary-json PATH]``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from components.common import cli
from components.common.errors import cli_entry
from components.ingest.core import IngestConfig, ingest
from components.ingest.files import BLOCK_SIZE
from components.ingest.writers import QUARANTINE_DIR


def _block_mb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of MiB, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fareflow ingest",
        description="Read DC taxi trip files (taxi_YYYY_MM.txt, taxi_YYYY.zip) into typed Parquet "
        "partitioned by year=/month=; rows that do not parse go to a quarantine Parquet.",
    )
    parser.add_argument(
        "--source",
        required=True,
        help="local file, directory or glob; .zip archive; s3://bucket/prefix; http(s):// URL",
    )
    parser.add_argument(
        "--output", required=True, help="local directory or s3://bucket/prefix (committed atomically)"
    )
    parser.add_argument(
        "--quarantine", default=None, help=f"where unparsable rows go (default: OUTPUT/{QUARANTINE_DIR}/)"
    )
    parser.add_argument("--summary-json", default=None, help="also write the run summary to this file")
    parser.add_argument(
        "--block-mb",
        type=_block_mb,
        default=BLOCK_SIZE / (1 << 20),
        help="MiB of text parsed per step (default 8)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    return parser


def _main(argv: list[str] | None = None) -> int:
    """Run the ingest step from the command line; see ``--help``."""
    args = build_parser().parse_args(argv)
    config = IngestConfig(
        source=args.source,
        output=args.output,
        quarantine=args.quarantine,
        block_size=int(args.block_mb * (1 << 20)),
        progress=args.progress,
    )
    # Before the run: a path that cannot be used must not fail after the work (or the commit).
    cli.input_path("--source", args.source)
    cli.output_dir("--output", args.output)
    cli.output_dir("--quarantine", args.quarantine)
    cli.output_file("--summary-json", args.summary_json)
    summary = ingest(config)
    if args.summary_json:
        Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.summary_json, "w") as fh:
            json.dump(summary, fh, indent=2, sort_keys=True)
            fh.write("\n")
    reasons = ", ".join(f"{k} {v:,}" for k, v in summary["quarantine_reasons"].items())
    print(
        f"ingest: {summary['rows_read']:,} rows from {summary['files']} file(s) "
        f"({summary['bytes_read'] / 1e6:,.1f} MB) in {summary['seconds']:.1f} s: "
        f"{summary['rows_written']:,} written to {summary['output']} "
        f"({len(summary['partitions'])} partitions), {summary['rows_quarantined']:,} quarantined"
        + (f" ({reasons})" if reasons else ""),
        file=sys.stderr,
    )
    return 0


# Errors read "fareflow ingest: error: ..." under ``python -m components.ingest`` too.
main = cli_entry(_main, prog="fareflow ingest")


if __name__ == "__main__":
    sys.exit(main())
