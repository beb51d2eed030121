"""fareflow run: run the whole pipeline on this machine through kfp.local.

By default a fresh synthetic data set in the DC taxi format is generated first (--rows);
--source URI reads existing trip files instead. Tasks run with kfp.local's SubprocessRunner
in the current environment. The console shows one live line per step (state, rows,
elapsed; steps served from the cache are marked "cached"), then each step's figures; -v
also shows the kfp and task logs, which are always kept under WORKDIR/RUN-ID/logs/. A task
that fails on bad input is reported as one line with its log's path.

Caching: a step is reused when its inputs, its component and the installed fareflow source
are unchanged (any edit to the code re-runs every step). It is on for generated data and
off with --source, whose files may change behind the same URI, unless --cache is given;
--no-cache always runs every step.

Each run keeps its record, reports, metrics and logs under WORKDIR/RUN-ID/ (see 'fareflow
runs' to list and compare them); --keep-runs bounds how many are kept.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from components.common import cli
from components.common.errors import UserError, cli_entry
from pipelines.driver import run_pipeline
from pipelines.summary import add_truth, drop_untuned_report, print_summary

DEFAULT_ROWS = 200_000
DEFAULT_MONTHS = "2015-01:2015-06"
KEEP_RUNS_ENV = "FAREFLOW_KEEP_RUNS"


def generated_source(workdir: Path, rows: int, months: str, seed: int) -> Path:
    """Generate (or reuse: generation is deterministic) a data set under ``workdir/data``.

    The directory name carries a digest of the generator's source, so editing the generator
    makes a new data set (and the cache, keyed on the source URI, misses)."""
    import shutil
    import tempfile

    from components.common.code_version import source_digest
    from components.generate import core

    code = source_digest([Path(core.__file__).parent])[:8]
    out = workdir / "data" / f"generated-{rows}-{months.replace(':', '_')}-seed{seed}-gen{code}"
    if (out / "truth.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))  # private to this run
    try:
        core.run(core.GenerateConfig(output_uri=str(tmp), rows=rows, months=months, seed=seed), progress=True)
        if out.exists():  # a concurrent run finished first; its output is identical
            shutil.rmtree(tmp)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _keep_runs_default() -> int:
    from pipelines.runs import DEFAULT_KEEP

    raw = os.environ.get(KEEP_RUNS_ENV, "")
    try:
        return int(raw) if raw.strip() else DEFAULT_KEEP
    except ValueError:
        raise UserError(f"{KEEP_RUNS_ENV}={raw!r}: expected a whole number of runs") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fareflow run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--source", help="trip files to read (dir, glob, .zip, s3://, https://); default: generate"
    )
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_ROWS, help="rows to generate (default %(default)s)"
    )
    parser.add_argument(
        "--months", default=DEFAULT_MONTHS, help="months to generate, YYYY-MM:YYYY-MM (default %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="generator, sampling and training seed (default 0)"
    )
    parser.add_argument(
        "--workdir",
        default="runs",
        help="generated data, pipeline root, cache and one directory per run (default ./%(default)s)",
    )
    parser.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--cache reuses steps whose inputs and code did not change; --no-cache runs every step "
        "(default: on for generated data, off with --source, whose files may change behind the same URI)",
    )
    parser.add_argument(
        "--train-workers",
        type=int,
        default=1,
        help="training processes (torchrun DDP, or horovodrun with --train-backend horovod, on this "
        "machine; default %(default)s)",
    )
    parser.add_argument(
        "--train-backend",
        choices=("ddp", "horovod"),
        default="ddp",
        help="distributed training with --train-workers > 1: ddp (torch DDP, the default) or horovod "
        "(Horovod over gloo; `make horovod` installs it)",
    )
    from components.train.config import TrainConfig

    parser.add_argument(
        "--epochs", type=int, default=TrainConfig.epochs, help="training epochs (default %(default)s)"
    )
    parser.add_argument(
        "--tune-trials",
        type=int,
        default=4,
        help="Optuna trials before training (0 = train with the defaults; default %(default)s)",
    )
    parser.add_argument("--summary-json", help="also write the step summaries here as JSON")
    parser.add_argument(
        "--keep-runs",
        type=int,
        default=None,
        help=f"run directories to keep under WORKDIR, oldest removed first; 0 = keep all "
        f"(default ${KEEP_RUNS_ENV}, else 20)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show the kfp and task logs (always kept in RUN/logs/)",
    )
    from pipelines import tracking

    tracking.add_arguments(parser)
    return parser


@cli_entry(prog="fareflow run")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rows <= 0:
        raise UserError(f"--rows must be positive, got {args.rows}")
    if args.train_workers < 1 or args.epochs < 1:
        raise UserError(f"--train-workers and --epochs must be >= 1, got {args.train_workers}, {args.epochs}")
    if args.tune_trials < 0:
        raise UserError(f"--tune-trials must be >= 0, got {args.tune_trials}")
    keep = _keep_runs_default() if args.keep_runs is None else args.keep_runs
    if keep < 0:
        raise UserError(f"--keep-runs must be >= 0, got {keep}")
    # Outputs and a local source are checked before any work: no traceback, no wasted run.
    cli.output_dir("--workdir", args.workdir)
    cli.output_file("--summary-json", args.summary_json)
    if args.source:
        cli.input_path("--source", args.source)

    from components.common.code_version import code_version
    from pipelines import runs, tracking

    workdir = Path(args.workdir).resolve()
    start = time.perf_counter()
    code = code_version()
    run_id, run_dir = runs.create_run_dir(workdir)
    caching = args.cache if args.cache is not None else not args.source
    arguments = {
        "train_workers": args.train_workers,
        "train_backend": args.train_backend,
        "epochs": args.epochs,
        "tune_trials": args.tune_trials,
        "seed": args.seed,
    }
    record: dict = {
        "run_id": run_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "running",
        "source": args.source,
        "generated": None if args.source else {"rows": args.rows, "months": args.months, "seed": args.seed},
        "code": {**code.as_dict(), "label": code.label()},
        "parameters": dict(arguments),
        "caching": caching,
        "steps": {},
    }
    runs.write_json(run_dir / runs.RUN_RECORD, record)
    roots_before = set((workdir / "pipeline_root").glob("*"))
    try:
        if args.source:
            source = args.source
        else:
            source = str(generated_source(workdir, args.rows, args.months, args.seed))
            print(f"generated data: {source}", file=sys.stderr)
        record["source"] = source
        print(f"run {run_id}: {run_dir}", file=sys.stderr)
        outputs = run_pipeline(
            source,
            workdir,
            caching=caching,
            arguments=arguments,
            logs_dir=run_dir / "logs",
            verbose=args.verbose,
            code_digest=code.digest,
            steps=record["steps"],
        )
    except BaseException as err:
        interrupted = isinstance(err, KeyboardInterrupt)
        record.update(status="interrupted" if interrupted else "failed", error=str(err) or type(err).__name__)
        raise
    finally:
        record["pipeline_root_runs"] = sorted(
            str(p) for p in set((workdir / "pipeline_root").glob("*")) - roots_before
        )
        record["seconds"] = round(time.perf_counter() - start, 3)
        if record["status"] != "running":
            runs.write_json(run_dir / runs.RUN_RECORD, record)
            if record["status"] == "failed":  # interrupted: the user wants out, not an upload
                tracking.track_finished_run(run_dir, args)
    add_truth(outputs, source)
    drop_untuned_report(outputs)
    runs.publish_reports(outputs, run_dir / "reports", record)
    record.update(status="succeeded", metrics=runs.step_metrics(outputs))
    runs.write_json(run_dir / runs.SUMMARY, outputs)
    runs.write_json(run_dir / runs.METRICS, record["metrics"])
    runs.write_json(run_dir / runs.RUN_RECORD, record)
    tracking.track_finished_run(run_dir, args)  # never raises: a failure is one warning line
    runs.update_latest(workdir, run_dir)
    removed = runs.prune_runs(workdir, keep)
    print_summary(outputs, time.perf_counter() - start, record["steps"], run_dir)
    if removed:
        print(f"removed {len(removed)} old run(s) (--keep-runs {keep})", file=sys.stderr)
    if args.summary_json:
        from components.common.publish import write_summary_json

        write_summary_json(outputs, args.summary_json)
    return 0
