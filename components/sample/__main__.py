"""fareflow sample (python -m components.sample): splits with a statistical check.

Exit status: 0 passed; 1 the sample failed the check in every attempt (report and
summary still written); 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from components.common.errors import cli_entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fareflow sample",
        description="Reproducible train/validation/test splits of the clean data, checked against the population.",
    )
    p.add_argument(
        "--input", required=True, help="clean Parquet data set (hive year=/month=), path or s3:// URI"
    )
    p.add_argument(
        "--population-stats", required=True, help="directory with stats.json and reservoir.parquet"
    )
    p.add_argument(
        "--output", required=True, help="output directory: train/ validation/ test/ with part-NNNNN.parquet"
    )
    p.add_argument(
        "--rows", type=int, default=0, help="sample size; 0 (default) = automatic (standard-error rule)"
    )
    p.add_argument(
        "--fractions", default="0.8,0.1,0.1", help="train,validation,test fractions (default 0.8,0.1,0.1)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="base seed (split hash; attempt i samples with seed + i)"
    )
    p.add_argument("--shards", type=int, default=1, help="Parquet files per split (one per training worker)")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise significance level (Bonferroni)")
    p.add_argument("--max-attempts", type=int, default=10, help="seeds to try before failing (default 10)")
    p.add_argument(
        "--se-tolerance",
        type=float,
        default=3e-4,
        help="automatic size: stop doubling when the SE gain is below this fraction of sigma (default 3e-4)",
    )
    p.add_argument("--report-dir", help="write report.html and summary.md here")
    p.add_argument(
        "--summary-json", help="write the summary (rows per split, seed, attempts, min_p_value, passed)"
    )
    return p


@cli_entry(prog="fareflow sample")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from components.common import cli

    from . import core

    cli.input_path("--input", args.input, kind="dir")
    cli.input_path("--population-stats", args.population_stats, kind="dir")
    cli.output_dir("--output", args.output)
    cli.output_dir("--report-dir", args.report_dir)
    cli.output_file("--summary-json", args.summary_json)

    config = core.SampleConfig(
        input_uri=args.input,
        population_stats_uri=args.population_stats,
        output_uri=args.output,
        rows=args.rows,
        fractions=core.parse_fractions(args.fractions),
        seed=args.seed,
        shards=args.shards,
        alpha=args.alpha,
        max_attempts=args.max_attempts,
        se_tolerance=args.se_tolerance,
    )
    result = core.run(config)
    summary = result.summary()
    if args.report_dir:
        from components.common.publish import write_report_dir

        from .report import render_html, render_markdown

        write_report_dir(args.report_dir, render_html(result), render_markdown(result))
    if args.summary_json:
        path = Path(args.summary_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if not result.passed:
        raise core.SampleCheckFailed(result.failure_message())
    rows = ", ".join(f"{k} {v:,}" for k, v in summary["rows"].items())
    print(
        f"sample: passed: {rows}; seed {summary['seed']}, {summary['attempts']} attempt(s), "
        f"min p {summary['min_p_value']:.3g} -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
