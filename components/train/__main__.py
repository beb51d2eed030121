"""``python -m components.train``: train the fare model on the sample step's splits.

Run plainly it trains in this process (``--workers 1``) or starts ``--workers N`` DDP
processes with torchrun on this machine. Started by torchrun or a PyTorchJob (``WORLD_SIZE``
and ``RANK`` set) it is one rank of that run and never launches again.

Exit status: 0 trained; 2 bad arguments or input (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys

from components.common.errors import cli_entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fareflow train",
        description="Train the fare MLP (AdamW + MSE) on train/validation/test splits; DDP with --workers N.",
    )
    p.add_argument(
        "--splits", required=True, help="the sample step's output (train/ validation/ test/), path or s3://"
    )
    p.add_argument(
        "--output", required=True, help="model directory to write (model.pt + model.json), path or s3://"
    )
    p.add_argument("--epochs", type=int, default=8, help="at most this many epochs (default 8)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=1024,
        help="global batch size, split over the workers (default 1024)",
    )
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default 1e-4)")
    p.add_argument("--hidden", default="128,64,32", help="hidden layer widths (default 128,64,32)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout after each hidden layer (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and shuffling (default 0)")
    p.add_argument(
        "--patience",
        type=int,
        default=3,
        help="stop after this many epochs without a better validation RMSE; 0 = never",
    )
    p.add_argument(
        "--min-delta", type=float, default=0.0, help="least validation RMSE gain that counts (default 0)"
    )
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="default auto: CUDA if present"
    )
    p.add_argument("--max-rows", type=int, help="use at most this many rows of each split")
    p.add_argument(
        "--workers", type=int, default=1, help="DDP processes on this machine via torchrun (default 1)"
    )
    p.add_argument("--truth", help="the generator's truth.json: adds best_possible_rmse to the metrics")
    p.add_argument("--summary-json", help="write the summary (metrics, history, rows, config) here")
    p.add_argument("--report-dir", help="write report.html and summary.md here")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from components.common.publish import write_summary_json

    from . import core, launch
    from .config import TrainConfig, parse_hidden
    from .distributed import launched_as_rank

    config = TrainConfig(
        splits_uri=args.splits,
        output_uri=args.output,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        hidden=parse_hidden(args.hidden),
        dropout=args.dropout,
        seed=args.seed,
        patience=args.patience,
        min_delta=args.min_delta,
        device=args.device,
        max_rows=args.max_rows,
        truth_uri=args.truth,
    )
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
        summary = launch.launch_local(config, args.workers, report_dir=args.report_dir)
        if args.summary_json:
            write_summary_json(summary, args.summary_json)
    m = summary["metrics"]
    print(
        f"train: test RMSE {m['test_rmse']:.4f} (baseline {m['baseline_rmse']:.4f}), "
        f"validation RMSE {m['validation_rmse']:.4f}, best epoch {summary['best_epoch']}, "
        f"{summary['world_size']} process(es), {m['rows_per_s']:,.0f} rows/s -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
