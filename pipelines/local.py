"""``fareflow run``: run the whole pipeline on this machine through ``kfp.local``.

By default a fresh synthetic data set in the DC taxi format is generated first
(``--rows``); ``--source URI`` reads existing trip files instead. Tasks run with
``kfp.local.SubprocessRunner(use_venv=False)`` in the current environment. Caching is
on for generated data (deterministic for its rows/months/seed), so a second run reuses
finished steps; with ``--source`` it is off unless ``--cache`` is given, because the cache
key is the URI, not the files behind it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from components.common.errors import UserError, cli_entry

DEFAULT_ROWS = 200_000
DEFAULT_MONTHS = "2015-01:2015-06"


def generated_source(workdir: Path, rows: int, months: str, seed: int) -> Path:
    """Generate (or reuse: generation is deterministic) a data set under ``workdir/data``."""
    import shutil
    import tempfile

    from components.generate.core import GenerateConfig, generate

    out = workdir / "data" / f"generated-{rows}-{months.replace(':', '_')}-seed{seed}"
    if (out / "truth.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))  # private to this run
    try:
        generate(GenerateConfig(out=str(tmp), rows=rows, months=months, seed=seed), progress=True)
        if out.exists():  # a concurrent run finished first; its output is identical
            shutil.rmtree(tmp)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def run_pipeline(source: str, workdir: Path, *, caching: bool = True, arguments: dict | None = None) -> dict:
    """Run ``taxi_fare_pipeline`` locally; return step name -> that step's summary dict."""
    import warnings

    from kfp import local

    from pipelines.taxi_fare import taxi_fare_pipeline

    # SubprocessRunner warns that the project image is not a plain Python image; locally the
    # tasks run in this environment, which has the same packages the image has.
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*", category=RuntimeWarning)
    root = workdir / "pipeline_root"
    root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=caching,
        cache_root=str(workdir / "cache"),
        raise_on_error=True,
    )
    try:
        task = taxi_fare_pipeline(source=source, **(arguments or {}))
    except (
        RuntimeError
    ) as err:  # kfp.local: "Pipeline ... finished with status FAILURE. Inner task failed: ..."
        first = _strip_ansi(str(err).splitlines()[0])
        raise UserError(f"{first} (the task's log is above)") from None
    return dict(task.outputs)


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _fmt(value) -> str | None:
    """A summary value as one short table cell; None for bulky values (lists, big dicts)."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    if isinstance(value, dict):
        if len(value) > 12 or any(isinstance(v, dict | list) for v in value.values()):
            return None
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return None
    return str(value)


# The figures worth a glance per step (the whole summary goes to --summary-json).
HEADLINES = {
    "ingest": (
        "rows_read",
        "rows_written",
        "rows_quarantined",
        "quarantine_reasons",
        "files",
        "bytes_read",
        "seconds",
    ),
    "quality": ("rows_in", "rows_clean", "rows_rejected", "rejected_pct", "rejected_by_rule", "gate_passed"),
    "sample": ("rows", "sample_rows", "size_mode", "seed", "attempts", "min_p_value", "passed"),
    "tune": ("best_params", "best_validation_rmse", "default_validation_rmse", "states", "note"),
    "train": ("metrics", "best_epoch", "epochs_run", "world_size", "device", "seconds"),
}
REPORT_SUFFIXES = {"report": ".html", "summary_md": ".md"}


def add_truth(outputs: dict, source: str) -> None:
    """Generated data comes with ``truth.json``: put the best RMSE any model can reach next to
    the trained model's test RMSE, so the summary says how close training got."""
    truth = Path(source) / "truth.json"
    metrics = (outputs.get("train") or {}).get("metrics")
    if not truth.is_file() or not isinstance(metrics, dict):
        return
    try:
        best = json.loads(truth.read_text()).get("best_rmse")
    except (json.JSONDecodeError, AttributeError):
        print(f"warning: {truth}: not a generator truth.json; best RMSE not shown", file=sys.stderr)
        return
    if isinstance(best, int | float):
        metrics["best_possible_rmse"] = best


def publish_reports(outputs: dict, reports_dir: Path) -> None:
    """Copy each step's HTML/Markdown report to ``reports_dir/STEP.html|.md`` (openable by name)
    and point the summary's artifact entry at the copy."""
    import shutil

    reports_dir.mkdir(parents=True, exist_ok=True)
    for step, summary in outputs.items():
        artifacts = (summary or {}).get("artifacts") or {}
        for name, suffix in REPORT_SUFFIXES.items():
            if name in artifacts and Path(artifacts[name]).is_file():
                target = reports_dir / f"{step}{suffix}"
                shutil.copyfile(artifacts[name], target)
                artifacts[name] = str(target)


def print_summary(outputs: dict, seconds: float) -> None:
    """Each step's headline figures, then where its artifacts are."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.taxi_fare import PipelineOutputs

    console = Console()
    for step in sorted(
        outputs, key=lambda s: PipelineOutputs._fields.index(s) if s in PipelineOutputs._fields else 99
    ):
        summary = dict(outputs[step] or {})
        artifacts = summary.pop("artifacts", {}) or {}
        table = Table(title=f"step: {step}", show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key in HEADLINES.get(step, tuple(summary)):
            cell = _fmt(summary.get(key))
            if key in summary and cell is not None:
                table.add_row(key, cell)
        for name, uri in artifacts.items():
            table.add_row(f"[cyan]{name}[/cyan]", str(uri))
        console.print(table)
        if step == "train" and artifacts.get("model"):
            # One copyable line: never wrapped, the path shell-quoted, no markup read into it.
            command = (
                f"fareflow serve --model-name taxi-fare --model-dir {shlex.quote(str(artifacts['model']))}"
            )
            console.print(f"serve it: {command}", soft_wrap=True, markup=False, highlight=False)
    console.print(f"[green]pipeline finished[/green] in {seconds:.1f}s")


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fareflow run", description=__doc__)
    parser.add_argument(
        "--source", help="trip files to read (dir, glob, .zip, s3://, https://); default: generate"
    )
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_ROWS, help="rows to generate (default %(default)s)"
    )
    parser.add_argument("--months", default=DEFAULT_MONTHS, help="months to generate, YYYY-MM:YYYY-MM")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument(
        "--workdir", default="runs", help="data, pipeline root and cache (default ./%(default)s)"
    )
    parser.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reuse finished steps whose inputs did not change (default: on for generated data; off "
        "with --source, whose files may change behind the same URI)",
    )
    parser.add_argument(
        "--train-workers",
        type=int,
        default=1,
        help="training processes (torchrun DDP on this machine; default %(default)s)",
    )
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default %(default)s)")
    parser.add_argument(
        "--tune-trials",
        type=int,
        default=4,
        help="Optuna trials before training (0 = train with the defaults; default %(default)s)",
    )
    parser.add_argument("--summary-json", help="also write the step summaries here as JSON")
    args = parser.parse_args(argv)
    if args.rows <= 0:
        raise UserError(f"--rows must be positive, got {args.rows}")
    if args.train_workers < 1 or args.epochs < 1:
        raise UserError(f"--train-workers and --epochs must be >= 1, got {args.train_workers}, {args.epochs}")
    if args.tune_trials < 0:
        raise UserError(f"--tune-trials must be >= 0, got {args.tune_trials}")

    workdir = Path(args.workdir).resolve()
    start = time.perf_counter()
    if args.source:
        source = args.source
    else:
        source = str(generated_source(workdir, args.rows, args.months, args.seed))
        print(f"generated data: {source}", file=sys.stderr)
    caching = args.cache if args.cache is not None else not args.source
    arguments = {"train_workers": args.train_workers, "epochs": args.epochs, "tune_trials": args.tune_trials}
    outputs = run_pipeline(source, workdir, caching=caching, arguments=arguments)
    add_truth(outputs, source)
    publish_reports(outputs, workdir / "reports")
    print_summary(outputs, time.perf_counter() - start)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(outputs, indent=2, default=str))
    return 0
