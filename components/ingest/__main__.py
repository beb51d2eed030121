"""CLI: ``python -m components.ingest --source URI --output URI [--quarantine URI] [--summary-json PATH]``.

The flags but ``--summary-json`` are ``IngestConfig``'s fields. Exit status: 0 ingested; 2 bad
arguments or input (one line on stderr)."""

from __future__ import annotations

from components.common.cpu import streaming_process

streaming_process()  # before anything below imports numpy or pyarrow

import argparse  # noqa: E402
import sys  # noqa: E402

from components.common import cli  # noqa: E402
from components.common.configspec import add_arguments, from_args  # noqa: E402
from components.common.errors import cli_entry  # noqa: E402
from components.common.publish import publish_cli  # noqa: E402
from components.ingest import core  # noqa: E402
from components.ingest.result import IngestResult  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fareflow ingest",
        description="Read DC taxi trip files (taxi_YYYY_MM.txt, taxi_YYYY.zip) into typed Parquet "
        "partitioned by year=/month=; rows that do not parse go to a quarantine Parquet.",
    )
    add_arguments(parser, core.IngestConfig)
    parser.add_argument("--summary-json", default=None, help="also write the run summary to this file")
    return parser


def _main(argv: list[str] | None = None) -> int:
    """Run the ingest step from the command line; see ``--help``."""
    args = build_parser().parse_args(argv)
    config = from_args(core.IngestConfig, args)
    # Before the run: a path that cannot be used must not fail after the work (or the commit).
    cli.input_path("--source", args.source_uri)
    cli.output_dir("--output", args.output_uri)
    cli.output_dir("--quarantine", args.quarantine_uri)
    cli.output_file("--summary-json", args.summary_json)
    summary = publish_cli(IngestResult(core.run(config)), summary_json=args.summary_json)
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
