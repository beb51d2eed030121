"""fareflow quality (python -m components.quality): apply the data-quality rules.

Reads the ingest output (year=/month= Parquet), writes the clean data set, the rejected
rows (with the first rule they failed) and the population statistics, optionally a report
(HTML + Markdown) and a summary JSON, then applies the gate. Exit codes: 0 clean data
written and gate passed; 2 unusable input or bad options; 3 gate failed (the outputs and
report are still written so the failure can be inspected).
"""

from __future__ import annotations

from components.common.cpu import streaming_process

streaming_process()  # before anything below imports numpy or pyarrow

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from components.common.configspec import add_arguments, from_args  # noqa: E402
from components.common.errors import UserError, cli_entry  # noqa: E402

from .config import QualityConfig  # noqa: E402


def _threshold(text: str) -> tuple[str, float | None]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected RULE=PCT (or total=PCT, RULE=none), got {text!r}")
    if value.strip().lower() in {"none", "off", ""}:
        return name, None
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: PCT must be a number") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fareflow quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p, QualityConfig)
    p.add_argument("--rules", help="YAML file adding to / overriding the default rules (see docs/quality.md)")
    p.add_argument(
        "--max-reject-pct",
        action="append",
        type=_threshold,
        default=[],
        metavar="RULE=PCT",
        help="override a gate threshold, in %% of input rows (repeatable; RULE may be 'total'; PCT 'none' removes it)",
    )
    p.add_argument("--no-gate", action="store_true", help="report threshold violations but exit 0")
    p.add_argument("--report-dir", help="write report.html and summary.md here")
    p.add_argument(
        "--summary-json",
        help="write the summary (rows_in, rows_clean, rows_rejected, rejected_by_rule, gate_passed) here",
    )
    p.add_argument(
        "--quiet", action="store_true", help="print nothing on success (errors still go to stderr)"
    )
    return p


def _main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from components.common import cli
    from components.common.publish import REPORT_HTML, publish_cli

    from . import core
    from .report import render_html, render_markdown
    from .rules import load_rules

    cli.input_path("--input", args.input_uri, kind="dir")
    if args.rules:
        cli.input_path("--rules", args.rules, kind="file")
    for flag, value in (
        ("--output", args.output_uri),
        ("--rejected", args.rejected_uri),
        ("--stats", args.stats_uri),
        ("--report-dir", args.report_dir),
    ):
        cli.output_dir(flag, value)
    cli.output_file("--summary-json", args.summary_json)
    started = time.perf_counter()
    ruleset = load_rules(args.rules)
    if args.max_reject_pct:
        ruleset = ruleset.with_thresholds(dict(args.max_reject_pct))
    if args.workers < 0:
        raise UserError("--workers must be >= 0")
    if args.worker_memory_mb < 0:
        raise UserError(f"--worker-memory-mb {args.worker_memory_mb}: expected an integer >= 0")
    config = from_args(QualityConfig, args, ruleset=ruleset)
    if args.quiet:
        config = replace(config, progress=False)
    result = core.run(config)
    seconds = time.perf_counter() - started
    publish_cli(
        result,
        render_html,
        render_markdown,
        summary_json=args.summary_json,
        report_dir=args.report_dir,
    )
    if not args.quiet:
        s = result.counts
        print(
            f"quality: {s['rows_in']:,} rows in, {s['rows_clean']:,} clean, {s['rows_rejected']:,} rejected "
            f"({s['rejected_pct']:.2f}%) in {seconds:.1f}s"
        )
        for name, n in s["rejected_by_rule"].items():
            print(f"  {name:<34} {n:>12,}  {s['rejected_pct_by_rule'][name]:7.3f}%")
        if args.report_dir:
            print(f"report: {Path(args.report_dir) / REPORT_HTML}")
    if not result.gate_passed:
        if args.no_gate:
            print(f"warning (--no-gate): {result.gate_message()}", file=sys.stderr)
            return 0
        result.check_gate()
    return 0


main = cli_entry(_main, prog="fareflow quality")

if __name__ == "__main__":
    sys.exit(main())
