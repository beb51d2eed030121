"""fareflow sample (python -m components.sample): splits with a statistical check.

The flags but ``--report-dir``/``--summary-json`` are ``SampleConfig``'s fields. Exit status:
0 passed; 1 the sample failed the check in every attempt (report and summary still written);
2 bad arguments or input.
"""

from __future__ import annotations

from components.common.cpu import streaming_process

streaming_process()  # before anything below imports numpy or pyarrow

import argparse  # noqa: E402
import sys  # noqa: E402

from components.common.configspec import add_arguments, from_args  # noqa: E402
from components.common.errors import cli_entry  # noqa: E402

from .config import SampleConfig  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fareflow sample",
        description="Reproducible train/validation/test splits of the clean data, checked against the population.",
    )
    add_arguments(p, SampleConfig)
    p.add_argument("--report-dir", help="write report.html and summary.md here")
    p.add_argument(
        "--summary-json", help="write the summary (rows per split, seed, attempts, min_p_value, passed)"
    )
    return p


@cli_entry(prog="fareflow sample")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from components.common import cli
    from components.common.publish import publish_cli

    from . import core
    from .report import render_html, render_markdown

    cli.input_path("--input", args.input_uri, kind="dir")
    cli.input_path("--population-stats", args.population_stats_uri, kind="dir")
    cli.output_dir("--output", args.output_uri)
    cli.output_dir("--report-dir", args.report_dir)
    cli.output_file("--summary-json", args.summary_json)

    config = from_args(SampleConfig, args)
    result = core.run(config)
    summary = publish_cli(
        result, render_html, render_markdown, summary_json=args.summary_json, report_dir=args.report_dir
    )
    if not result.passed:
        raise core.SampleCheckFailed(result.failure_message())
    rows = ", ".join(f"{k} {v:,}" for k, v in summary["rows"].items())
    print(
        f"sample: passed: {rows}; seed {summary['seed']}, {summary['attempts']} attempt(s), "
        f"min p {summary['min_p_value']:.3g} -> {config.output_uri}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
