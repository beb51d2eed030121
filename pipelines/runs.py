"""Runs you can find and compare: ``fareflow run`` keeps each run under ``WORKDIR/<run-id>/``.

A run directory holds (nothing is ever overwritten; a new run gets a new directory)::

    run.json        the record: id, times, status (and the one-line error), source, code
                    version (package, git commit, source digest), seed, parameters, steps
                    (done / cached / failed, seconds, log), metrics
    summary.json    every step's full summary (what ``--summary-json`` writes)
    metrics.json    the headline figures per step, flat (``train.test_rmse`` ...)
    reports/        STEP.html and STEP.md, with a header naming run, source, code and seed
    logs/           pipeline.log (everything kfp.local printed) and STEP.log per task

``WORKDIR/latest`` points at the newest run. ``keep`` (``--keep-runs``) bounds how many run
directories stay; pruning a run also removes the pipeline-root outputs it made unless a kept
run still uses them (a step served from the cache points at them).

``fareflow runs`` lists the runs; ``fareflow runs compare [A B]`` puts two side by side
(parameters and metrics, with deltas); ``fareflow runs show ID`` prints one record;
``fareflow runs log [ID]`` logs a run to MLflow (``fareflow run`` does that itself when a run
ends: pipelines.tracking); the record's ``tracking`` entry names the MLflow run. Listing and
comparing read run.json only: they need no MLflow.
"""

from __future__ import annotations

import argparse
import html
import json
import secrets
import shutil
import sys
import time
from pathlib import Path

from components.common.errors import UserError, cli_entry
from pipelines.records import METRICS, RUN_RECORD, SUMMARY, load_record, step_metrics, write_json

__all__ = ["METRICS", "RUN_RECORD", "SUMMARY", "load_record", "step_metrics", "write_json"]  # re-exported

LATEST = "latest"
DEFAULT_KEEP = 20
REPORT_SUFFIXES = {"report": ".html", "summary_md": ".md"}


def new_run_id(now: float | None = None) -> str:
    """``20261201-205824-3fa1``: sorts by start time; the suffix keeps parallel runs apart."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + "-" + secrets.token_hex(2)


def create_run_dir(workdir: Path) -> tuple[str, Path]:
    """A new, empty run directory (never an existing one)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        run_id = new_run_id()
        path = workdir / run_id
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return run_id, path
    raise UserError(f"{workdir}: could not create a new run directory")


# ---------------------------------------------------------------- reports


def header_items(record: dict) -> list[tuple[str, str]]:
    code = record.get("code") or {}
    label = code.get("label") or code.get("version") or "?"
    return [
        ("run", str(record.get("run_id"))),
        ("source", str(record.get("source"))),
        ("code", str(label)),
        ("seed", str((record.get("parameters") or {}).get("seed", "?"))),
    ]


def stamp_html(text: str, items: list[tuple[str, str]]) -> str:
    """The report with a header line naming the run, inserted after ``<body>``."""
    cells = " · ".join(f"<b>{html.escape(k)}</b> <code>{html.escape(v)}</code>" for k, v in items)
    block = (
        '<div class="fareflow-run" style="font-size:0.8rem;color:#555;border-bottom:1px solid #ddd;'
        f'padding-bottom:0.3rem;margin-bottom:0.8rem">{cells}</div>'
    )
    at = text.find("<body")
    if at >= 0:
        close = text.find(">", at)
        if close >= 0:
            return text[: close + 1] + "\n" + block + text[close + 1 :]
    return block + "\n" + text


def stamp_markdown(text: str, items: list[tuple[str, str]]) -> str:
    line = " · ".join(f"{k} `{v}`" for k, v in items)
    return f"> {line}\n\n{text}"


def publish_reports(outputs: dict, reports_dir: Path, record: dict) -> None:
    """Copy each step's HTML/Markdown report to ``reports_dir/STEP.html|.md`` with the run
    header, and point the summary's artifact entry at the copy."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    for step, summary in outputs.items():
        items = header_items(record)
        if ((record.get("steps") or {}).get(step) or {}).get("state") == "cached":
            items.append(("step", "cached: made by an earlier run with the same inputs and code"))
        artifacts = (summary or {}).get("artifacts") or {}
        for name, suffix in REPORT_SUFFIXES.items():
            source = Path(str(artifacts.get(name, "")))
            if name in artifacts and source.is_file():
                text = source.read_text(encoding="utf-8")
                stamped = stamp_html(text, items) if suffix == ".html" else stamp_markdown(text, items)
                target = reports_dir / f"{step}{suffix}"
                target.write_text(stamped, encoding="utf-8")
                artifacts[name] = str(target)


# ---------------------------------------------------------------- listing and retention


def list_runs(workdir: Path) -> list[tuple[Path, dict]]:
    """Every run under ``workdir`` with a readable record, oldest first."""
    if not workdir.is_dir():
        return []
    found = []
    for path in sorted(workdir.iterdir()):
        if path.is_dir() and not path.is_symlink():
            record = load_record(path)
            if record is not None:
                found.append((path, record))
    return found


def update_latest(workdir: Path, run_dir: Path) -> None:
    link = workdir / LATEST
    tmp = workdir / f".{LATEST}.{run_dir.name}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.name)
        tmp.replace(link)
    except OSError:  # no symlinks here (some file systems): `fareflow runs` still finds it
        tmp.unlink(missing_ok=True)


def prune_runs(workdir: Path, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` runs (0 = keep all); return the removed run ids.

    A removed run's pipeline-root outputs go too unless a kept run's summary refers to them;
    cache entries pointing into removed outputs are dropped (kfp.local would miss on them)."""
    runs = list_runs(workdir)
    if keep <= 0 or len(runs) <= keep:
        return []
    old, kept = runs[:-keep], runs[-keep:]
    kept_text = "".join(
        (path / SUMMARY).read_text(encoding="utf-8") for path, _ in kept if (path / SUMMARY).is_file()
    )
    removed_roots = []
    for path, record in old:
        for root in record.get("pipeline_root_runs") or []:
            if root and Path(root).is_dir() and root not in kept_text:
                shutil.rmtree(root, ignore_errors=True)
                removed_roots.append(root)
        shutil.rmtree(path, ignore_errors=True)
    cache = workdir / "cache"
    if removed_roots and cache.is_dir():
        for entry in cache.glob("*.json"):
            try:
                text = entry.read_text(encoding="utf-8")
            except OSError:
                continue
            if any(root in text for root in removed_roots):
                entry.unlink(missing_ok=True)
    return [path.name for path, _ in old]


# ---------------------------------------------------------------- fareflow runs


def resolve(workdir: Path, ref: str, runs: list[tuple[Path, dict]] | None = None) -> tuple[Path, dict]:
    """A run by id, unique id prefix, ``latest`` or ``latest~N`` (N runs before the newest)."""
    runs = list_runs(workdir) if runs is None else runs
    if not runs:
        raise UserError(f"{workdir}: no runs yet (fareflow run writes them here)")
    if ref == LATEST or ref.startswith(LATEST + "~"):
        back = ref.removeprefix(LATEST).removeprefix("~") or "0"
        if not back.isdigit() or int(back) >= len(runs):
            raise UserError(f"{ref}: there are {len(runs)} run(s) under {workdir}")
        return runs[-1 - int(back)]
    matches = [(p, r) for p, r in runs if p.name == ref] or [
        (p, r) for p, r in runs if p.name.startswith(ref)
    ]
    if not matches:
        raise UserError(f"{ref}: no such run under {workdir} ('fareflow runs' lists them)")
    if len(matches) > 1:
        raise UserError(
            f"{ref}: matches {len(matches)} runs ({', '.join(p.name for p, _ in matches[:4])} ...)"
        )
    return matches[0]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def comparison(a: dict, b: dict) -> list[tuple[str, str, str, str, str]]:
    """Rows ``(section, name, A, B, delta)`` for parameters, code/source and metrics."""
    rows = []
    settings = {"source": "source", "code": None}
    for key in settings:
        va = a.get(key) if key != "code" else (a.get("code") or {}).get("label")
        vb = b.get(key) if key != "code" else (b.get("code") or {}).get("label")
        rows.append(("run", key, _cell(va), _cell(vb), "" if va == vb else "changed"))
    pa, pb = a.get("parameters") or {}, b.get("parameters") or {}
    for key in sorted(set(pa) | set(pb)):
        va, vb = pa.get(key), pb.get(key)
        rows.append(("parameter", key, _cell(va), _cell(vb), "" if va == vb else "changed"))
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    for key in sorted(set(ma) | set(mb)):
        va, vb = ma.get(key), mb.get(key)
        delta = ""
        if isinstance(va, int | float) and isinstance(vb, int | float):
            diff = vb - va
            delta = f"{diff:+.6g}" + (f" ({diff / va:+.1%})" if va else "")
        rows.append(("metric", key, _cell(va), _cell(vb), delta))
    return rows


def _print_list(workdir: Path, console) -> None:
    from rich.table import Table

    runs = list_runs(workdir)
    if not runs:
        console.print(f"no runs under {workdir}", markup=False)
        return
    table = Table(title=f"runs under {workdir}", title_justify="left")
    for col in ("run", "status", "source", "code", "steps", "test RMSE", "seconds", "MLflow run"):
        table.add_column(col, overflow="fold", no_wrap=col in ("run", "status", "test RMSE", "MLflow run"))
    for path, r in runs:
        steps = r.get("steps") or {}
        cached = sum(1 for s in steps.values() if s.get("state") == "cached")
        rmse = (r.get("metrics") or {}).get("train.test_rmse")
        table.add_row(
            path.name,
            str(r.get("status")),
            Path(str(r.get("source"))).name or str(r.get("source")),
            str((r.get("code") or {}).get("label", "?")),
            f"{len(steps)} ({cached} cached)" if cached else str(len(steps)),
            "-" if rmse is None else f"{rmse:.4f}",
            _cell(r.get("seconds")),
            mlflow_cell(r),
        )
    console.print(table)


def mlflow_cell(record: dict) -> str:
    """The MLflow run id when the run was logged; else why not ("-": never tried)."""
    tracking = record.get("tracking") or {}
    if tracking.get("logged"):
        return str(tracking.get("mlflow_run_id"))[:8]  # the whole id: fareflow runs show
    if tracking.get("reason"):
        return f"off ({tracking['reason']})"
    return "not logged" if tracking else "-"


def _log_runs(workdir: Path, refs: list[str], every: bool, uri: str | None, experiment: str, console) -> None:
    from pipelines import tracking

    runs = list_runs(workdir)
    if every:
        chosen = [(p, r) for p, r in runs if not (r.get("tracking") or {}).get("logged")]
    else:
        chosen = [resolve(workdir, ref, runs) for ref in refs or [LATEST]]
    failed = []
    for path, _ in chosen:
        try:
            entry = tracking.log_run(path, uri, experiment)
        except tracking.TrackingError as err:
            failed.append(f"{path.name}: {err}")
            continue
        console.print(
            f"{path.name}: {'already logged as ' if entry['existing'] else ''}"
            f"MLflow run {entry['mlflow_run_id']} in experiment {entry['experiment']!r} "
            f"at {entry['uri']}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
    if not chosen:
        console.print(f"nothing to log: every run under {workdir} is logged", markup=False)
    if failed:
        raise tracking.TrackingError("; ".join(failed))


def _print_compare(workdir: Path, refs: list[str], console) -> None:
    from rich.table import Table

    runs = list_runs(workdir)
    refs = refs or ["latest~1", "latest"]
    if len(refs) != 2:
        raise UserError(f"compare: expected two runs (or none: the last two), got {len(refs)}")
    (pa, a), (pb, b) = resolve(workdir, refs[0], runs), resolve(workdir, refs[1], runs)
    table = Table(title=f"A = {pa.name}   B = {pb.name}", title_justify="left")
    for col in ("", "name", "A", "B", "B - A"):
        table.add_column(col, overflow="fold")
    for row in comparison(a, b):
        table.add_row(*row)
    console.print(table)


@cli_entry(prog="fareflow runs")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fareflow runs",
        description="List the runs 'fareflow run' kept, show one, or compare two side by side.",
    )
    parser.add_argument(
        "--workdir", default="runs", help="the --workdir the runs were made with (default ./%(default)s)"
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="every run, oldest first (the default action)")
    show = sub.add_parser("show", help="print one run's record (run.json)")
    show.add_argument("run", nargs="?", default=LATEST, help="run id, unique prefix, latest or latest~N")
    compare = sub.add_parser("compare", help="two runs' parameters and metrics side by side, with deltas")
    compare.add_argument("runs", nargs="*", help="two run ids (default: latest~1 latest)")
    log = sub.add_parser("log", help="log runs to MLflow (fareflow run does it when a run ends)")
    log.add_argument("runs", nargs="*", help="run ids, prefixes, latest or latest~N (default: latest)")
    log.add_argument("--all", action="store_true", help="every run not logged yet")
    log.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///WORKDIR/mlflow.db)",
    )
    log.add_argument("--experiment", default="fareflow", help="MLflow experiment (default %(default)s)")
    args = parser.parse_args(argv)
    from rich.console import Console

    console = Console()
    workdir = Path(args.workdir)
    if args.action == "show":
        path, record = resolve(workdir, args.run)
        print(json.dumps(record, indent=2))
    elif args.action == "compare":
        _print_compare(workdir, args.runs, console)
    elif args.action == "log":
        if args.all and args.runs:
            raise UserError("log: give run ids or --all, not both")
        _log_runs(workdir, args.runs, args.all, args.tracking_uri, args.experiment, console)
    else:
        _print_list(workdir, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
