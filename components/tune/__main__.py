"""``python -m components.tune``: an Optuna study over the train step's hyper-parameters.

The flags but ``--summary-json``/``--report-dir`` are ``TuneConfig``'s fields. Exit status:
0 tuned (or tuning off with ``--trials 0``); 2 bad arguments or input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys

from components.common.configspec import add_arguments, from_args
from components.common.errors import cli_entry

from .config import TuneConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fareflow tune",
        description="Tune the fare MLP's hyper-parameters with Optuna (TPE + median pruning) on validation RMSE.",
    )
    add_arguments(p, TuneConfig)
    p.add_argument("--summary-json", help="write the summary (best params, trials table) here")
    p.add_argument("--report-dir", help="write report.html and summary.md here")
    return p


@cli_entry(prog="fareflow tune")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from components.common import cli
    from components.common.publish import publish_cli

    config = from_args(TuneConfig, args)
    if config.trials != 0 or config.total_trials:  # --trials 0: tuning off, the splits are not read
        cli.input_path("--splits", config.splits_uri, kind="dir")
    cli.output_dir("--report-dir", args.report_dir)
    cli.output_file("--summary-json", args.summary_json)

    from . import core
    from .report import render_html, render_markdown

    result = core.run(config)
    publish_cli(
        result, render_html, render_markdown, summary_json=args.summary_json, report_dir=args.report_dir
    )
    best = "-" if result.best_value is None else f"{result.best_value:.4f}"
    print(f"tune: best validation RMSE {best}; best params {json.dumps(result.best_params)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
