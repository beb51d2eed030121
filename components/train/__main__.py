"""``python -m components.train``: train the fare model on the sample step's splits.

Run plainly it trains in this process (``--workers 1``) or starts ``--workers N`` processes on
this machine: DDP ranks with torchrun, or Horovod ranks with horovodrun (gloo) for ``--backend
horovod``. Started by a launcher -- torchrun or a PyTorchJob (``WORLD_SIZE``/``RANK``),
horovodrun (``HOROVOD_RANK``) or an MPIJob's mpirun (``OMPI_COMM_WORLD_RANK``) -- it is one rank
of that run and never launches again.

Exit status: 0 trained; 2 bad arguments or input (one line on stderr); 143 stopped by SIGTERM
after writing a checkpoint (the same command resumes).
"""

from __future__ import annotations

import argparse
import sys

from components.common.configspec import add_arguments, from_args
from components.common.errors import cli_entry

from .config import TrainConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fareflow train",
        description="Train the fare MLP (AdamW + MSE) on train/validation/test splits; DDP with --workers N.",
    )
    add_arguments(p, TrainConfig)
    p.add_argument(
        "--no-resume",
        dest="resume",
        action="store_const",
        const=False,
        default=argparse.SUPPRESS,
        help="start over: delete the earlier checkpoints (the same as --resume no)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes on this machine: DDP ranks via torchrun, or Horovod ranks via horovodrun "
        "(gloo) with --backend horovod (default 1)",
    )
    p.add_argument(
        "--max-restarts",
        type=int,
        default=0,
        help="with --workers N: torchrun restarts the whole group up to this many times when a "
        "worker dies; it resumes from the newest checkpoint (default 0)",
    )
    p.add_argument("--summary-json", help="write the summary (metrics, history, rows, config) here")
    p.add_argument("--report-dir", help="write report.html and summary.md here")
    return p


@cli_entry(prog="fareflow train")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from components.common import cli
    from components.common.publish import write_summary_json

    from . import core, launch
    from .distributed import launched_as_rank

    # Inputs and outputs first, in the process a user started: a wrong path is one line before
    # any work. Ranks that a launcher started leave it to the launcher, and a write that fails
    # in a rank's run (an s3:// output) stops every rank through the collective error path.
    if not launched_as_rank():
        cli.input_path("--splits", args.splits_uri, kind="dir")
        cli.output_dir("--output", args.output_uri)
        cli.output_dir("--report-dir", args.report_dir)
        cli.output_file("--summary-json", args.summary_json)

    config = from_args(TrainConfig, args)
    if launched_as_rank() or args.workers == 1:
        if args.workers > 1:
            print(
                f"train: --workers {args.workers} ignored: this is one rank of a launched run",
                file=sys.stderr,
            )
        result = core.run(config)
        if result is None:  # not rank 0
            return 0
        launch.write_outputs(result, summary_json=args.summary_json, report_dir=args.report_dir)
        summary = result.summary()
    else:
        summary = launch.launch_local(
            config, args.workers, report_dir=args.report_dir, max_restarts=args.max_restarts
        )
        if args.summary_json:
            write_summary_json(summary, args.summary_json)
    m = summary["metrics"]
    print(
        f"train: test RMSE {m['test_rmse']:.4f} (baseline {m['baseline_rmse']:.4f}), "
        f"validation RMSE {m['validation_rmse']:.4f}, best epoch {summary['best_epoch']}, "
        f"{summary['world_size']} process(es), {m['rows_per_s']:,.0f} rows/s -> {config.output_uri}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
