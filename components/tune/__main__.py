"""``python -m components.tune``: an Optuna study over the train step's hyper-parameters.

Exit status: 0 tuned (or tuning off with ``--trials 0``); 2 bad arguments or input (one line
on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys

from components.common.errors import cli_entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fareflow tune",
        description="Tune the fare MLP's hyper-parameters with Optuna (TPE + median pruning) on validation RMSE.",
    )
    p.add_argument(
        "--splits", required=True, help="the sample step's output (train/ validation/ test/), path or s3://"
    )
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--trials", type=int, help="new trials to run; 0 = off (the train defaults)")
    budget.add_argument(
        "--total-trials",
        type=int,
        help="run until the study holds this many finished trials: the same command resumes a "
        "killed study and runs only the rest (needs --storage to outlive the process)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes tuning the one study in parallel, the CPUs' torch threads split between "
        "them (default 1; more need --storage)",
    )
    p.add_argument(
        "--heartbeat",
        type=float,
        default=10.0,
        help="RDB storage: a trial whose process sent no heartbeat for 2x this many seconds is "
        "FAIL and run again (default 10)",
    )
    p.add_argument("--epochs", type=int, default=4, help="at most this many epochs per trial (default 4)")
    p.add_argument("--timeout", type=float, help="start no new trial after this many seconds")
    p.add_argument(
        "--storage",
        default="",
        help="Optuna RDB URL (sqlite:///study.db, postgresql://...); default: in memory",
    )
    p.add_argument("--study-name", default="fareflow-tune", help="study name (default fareflow-tune)")
    p.add_argument("--seed", type=int, default=0, help="sampler and training seed (default 0)")
    p.add_argument("--max-rows", type=int, help="use at most this many rows of each split per trial")
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="default auto: CUDA if present"
    )
    p.add_argument("--summary-json", help="write the summary (best params, trials table) here")
    p.add_argument("--report-dir", help="write report.html and summary.md here")
    return p


@cli_entry(prog="fareflow tune")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from components.common import cli
    from components.common.publish import publish_cli

    if args.trials != 0 or args.total_trials:  # --trials 0: tuning off, the splits are not read
        cli.input_path("--splits", args.splits, kind="dir")
    cli.output_dir("--report-dir", args.report_dir)
    cli.output_file("--summary-json", args.summary_json)

    from . import core
    from .report import render_html, render_markdown

    config = core.TuneConfig(
        splits_uri=args.splits,
        trials=args.trials if args.trials is not None else core.TuneConfig.trials,
        total_trials=args.total_trials,
        workers=args.workers,
        heartbeat_s=args.heartbeat,
        timeout_s=args.timeout,
        seed=args.seed,
        epochs=args.epochs,
        storage=args.storage,
        study_name=args.study_name,
        max_rows=args.max_rows,
        device=args.device,
    )
    result = core.run(config)
    publish_cli(
        result, render_html, render_markdown, summary_json=args.summary_json, report_dir=args.report_dir
    )
    best = "-" if result.best_value is None else f"{result.best_value:.4f}"
    print(f"tune: best validation RMSE {best}; best params {json.dumps(result.best_params)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
