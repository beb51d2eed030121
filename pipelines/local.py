"""``fareflow run``: run the whole pipeline on this machine through ``kfp.local``.

By default a fresh synthetic data set in the DC taxi format is generated first
(``--rows``); ``--source URI`` reads existing trip files instead. Tasks run with
``kfp.local.SubprocessRunner(use_venv=False)`` in the current environment, with
caching on, so a second run over the same input reuses finished steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from components.common.errors import UserError, cli_entry

DEFAULT_ROWS = 200_000
DEFAULT_MONTHS = "2015-01:2015-06"


def generated_source(workdir: Path, rows: int, months: str, seed: int) -> Path:
    """Generate (or reuse: generation is deterministic) a data set under ``workdir/data``."""
    from components.generate.core import GenerateConfig, generate

    out = workdir / "data" / f"generated-{rows}-{months.replace(':', '_')}-seed{seed}"
    if (out / "truth.json").exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    generate(GenerateConfig(out=str(tmp), rows=rows, months=months, seed=seed), progress=True)
    if out.exists():  # a concurrent run finished first; its output is identical
        import shutil

        shutil.rmtree(tmp)
    else:
        tmp.rename(out)
    return out


def run_pipeline(source: str, workdir: Path, *, caching: bool = True, arguments: dict | None = None) -> dict:
    """Run ``taxi_fare_pipeline`` locally; return {"outputs": step -> summary, "run_dir", "artifacts"}."""
    from kfp import local

    from pipelines.taxi_fare import taxi_fare_pipeline

    root = workdir / "pipeline_root"
    root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=caching,
        cache_root=str(workdir / "cache"),
        raise_on_error=True,
    )
    before = set(root.iterdir())
    try:
        task = taxi_fare_pipeline(source=source, **(arguments or {}))
    except RuntimeError as err:  # kfp.local raises RuntimeError naming the failed task
        raise UserError(f"pipeline failed: {str(err).splitlines()[0]} (logs above)") from None
    new_runs = sorted(set(root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    run_dir = new_runs[-1] if new_runs else None
    outputs = {name: value for name, value in task.outputs.items()}
    return {"outputs": outputs, "run_dir": run_dir, "artifacts": list_artifacts(run_dir)}


def list_artifacts(run_dir: Path | None) -> dict[str, list[Path]]:
    """Task name -> the artifacts it wrote in this run (cached tasks write none)."""
    if run_dir is None:
        return {}
    found: dict[str, list[Path]] = {}
    for task_dir in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        paths = [p for p in sorted(task_dir.iterdir()) if p.name != "executor_output.json"]
        if paths:
            found[task_dir.name] = paths
    return found


def print_summary(result: dict, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for step, summary in result["outputs"].items():
        table = Table(title=f"step: {step}", show_header=False, title_justify="left")
        for key, value in (summary or {}).items():
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, dict | list):
                value = json.dumps(value, default=str)
                value = value if len(value) < 120 else value[:117] + "..."
            table.add_row(str(key), str(value))
        console.print(table)
    if result["run_dir"]:
        console.print(f"[bold]artifacts[/bold] under {result['run_dir']}")
        for task, paths in result["artifacts"].items():
            for path in paths:
                console.print(f"  {task}/{path.name}: {path}")
    else:
        console.print("every step came from the cache (rerun with --no-cache to recompute)")
    console.print(f"[green]pipeline finished[/green] in {seconds:.1f}s")


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fareflow run", description=__doc__)
    parser.add_argument("--source", help="trip files to read (dir, glob, .zip, s3://, https://); default: generate")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows to generate (default %(default)s)")
    parser.add_argument("--months", default=DEFAULT_MONTHS, help="months to generate, YYYY-MM:YYYY-MM")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--workdir", default="runs", help="data, pipeline root and cache (default ./%(default)s)")
    parser.add_argument("--no-cache", action="store_true", help="recompute every step")
    parser.add_argument("--summary-json", help="also write the step summaries here as JSON")
    args = parser.parse_args(argv)
    if args.rows <= 0:
        raise UserError(f"--rows must be positive, got {args.rows}")

    workdir = Path(args.workdir).resolve()
    start = time.perf_counter()
    if args.source:
        source = args.source
    else:
        source = str(generated_source(workdir, args.rows, args.months, args.seed))
        print(f"generated data: {source}", file=sys.stderr)
    result = run_pipeline(source, workdir, caching=not args.no_cache)
    print_summary(result, time.perf_counter() - start)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(result["outputs"], indent=2, default=str))
    return 0
