"""Generate step: synthetic DC taxi trip files in the published format, with a known fare model.

``run(GenerateConfig)`` writes ``taxi_YYYY_MM.txt`` (or ``taxi_YYYY.zip``) files, each
month's rows drawn from a seed of its own, and ``truth.json`` (the model's parameters and the
best achievable RMSE), staged and committed with a ``_SUCCESS`` marker of step ``generate`` last.
Format, model and defects: docs/generator.md."""

from __future__ import annotations

import calendar
import json
import re
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from components.common import contract
from components.common.configspec import option
from components.common.errors import UserError
from components.common.staged import StagedOutput

from .month import _month_context, _write_month
from .parameters import GENERATOR_VERSION, TRUTH_FILE, ZIP_COMPRESSLEVEL
from .trip_model import model_parameters

STEP = "generate"  # the name its output's _SUCCESS marker carries


@dataclass(frozen=True)
class GenerateConfig:
    """The generate step's settings; its fields are the CLI's flags (``fareflow generate``)."""

    output_uri: str = option(flag="--out", help="output directory (created)")
    rows: int = option(200_000, flag="--rows", help="total rows across all months (default %(default)s)")
    months: str = option(
        "2015-01:2015-06",
        flag="--months",
        help="inclusive range YYYY-MM:YYYY-MM or one YYYY-MM (default %(default)s)",
    )
    seed: int = option(0, flag="--seed", help="random seed (default %(default)s)")
    zip: bool = option(
        False, flag="--zip", help="write yearly taxi_YYYY.zip archives instead of .txt files"
    )  # members taxi_YYYY_MM.txt


@dataclass(frozen=True)
class GenerateResult:
    files: list[Path]  # the files written (txt or zip)
    rows: int
    truth: dict  # contents of truth.json
    seconds: float


# --- config checks -------------------------------------------------------------------------

_MONTH_RE = re.compile(r"(\d{4})-(\d{2})")


def parse_months(spec: str) -> list[tuple[int, int]]:
    """``"2015-01:2015-03"`` -> [(2015, 1), (2015, 2), (2015, 3)]; ``"2015-01"`` -> one month."""
    expected = "expected YYYY-MM or YYYY-MM:YYYY-MM, e.g. 2015-01:2015-06"
    parts = str(spec).strip().split(":")
    if len(parts) not in (1, 2):
        raise UserError(f"--months {spec!r}: {expected}")
    bounds = []
    for part in parts:
        m = _MONTH_RE.fullmatch(part.strip())
        if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1:
            raise UserError(f"--months {spec!r}: {expected}")
        bounds.append((int(m.group(1)), int(m.group(2))))
    start, end = bounds[0], bounds[-1]
    if end < start:
        raise UserError(f"--months {spec!r}: the range ends before it starts")
    months = []
    y, mo = start
    while (y, mo) <= end:
        months.append((y, mo))
        y, mo = (y + 1, 1) if mo == 12 else (y, mo + 1)
    return months


def allocate_rows(rows: int, months: list[tuple[int, int]]) -> list[int]:
    """Split ``rows`` over the months in proportion to their days (each month gets >= 1)."""
    if rows < len(months):
        raise UserError(f"--rows {rows}: need at least one row per month ({len(months)} months)")
    days = np.array([calendar.monthrange(y, m)[1] for y, m in months], dtype=np.float64)
    rest = rows - len(months)
    share = rest * days / days.sum()
    alloc = np.floor(share).astype(np.int64)
    remainder = rest - int(alloc.sum())
    alloc[np.argsort(-(share - alloc), kind="stable")[:remainder]] += 1
    return [int(a) + 1 for a in alloc]


def _check(config: GenerateConfig) -> list[tuple[int, int]]:
    if not isinstance(config.rows, int) or config.rows <= 0:
        raise UserError(f"--rows {config.rows!r}: expected a positive integer")
    if not isinstance(config.seed, int) or config.seed < 0:
        raise UserError(f"--seed {config.seed!r}: expected a non-negative integer")
    if not config.output_uri:
        raise UserError("--out: an output directory is required")
    if "://" in config.output_uri:
        raise UserError(f"--out {config.output_uri}: expected a local directory")
    return parse_months(config.months)


# --- the entry point ------------------------------------------------------------------------


class _Progress:
    def __init__(self, enabled: bool, total: int):
        self._bar = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("generate"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task("rows", total=total)

    def __enter__(self):
        if self._bar:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self._bar:
            self._bar.__exit__(*exc)

    def advance(self, n: int) -> None:
        if self._bar:
            self._bar.advance(self._task, n)


def month_file_name(year: int, month: int) -> str:
    return f"taxi_{year:04d}_{month:02d}.txt"


def year_archive_name(year: int) -> str:
    return f"taxi_{year:04d}.zip"


def run(config: GenerateConfig, progress: bool = False) -> GenerateResult:
    """Write the trip files and truth.json into ``config.output_uri``, staged (``components.common.staged``:
    a hidden sibling directory renamed into place, ``_SUCCESS`` last); return what was written."""
    started = time.perf_counter()
    months = _check(config)
    per_month = allocate_rows(config.rows, months)
    out = Path(config.output_uri)
    _refuse_stale_outputs(out, config, months)
    counts: dict = {"_next_id": 1}
    plan = [(y, m, rows) for (y, m), rows in zip(months, per_month, strict=True)]
    with StagedOutput(config.output_uri, STEP) as staged:
        staging = Path(staged.root)
        with _Progress(progress, config.rows) as bar:
            write = _write_zips if config.zip else _write_txts
            file_rows = write(staging, plan, config.seed, counts, bar.advance)
        truth = _truth(config, months, file_rows, counts)
        (staging / TRUTH_FILE).write_text(json.dumps(truth, indent=2) + "\n")
        staged.commit({"rows": truth["rows"], "files": file_rows, "version": GENERATOR_VERSION})
    files = [out / name for name in dict.fromkeys(f["file"].split("!")[0] for f in file_rows)]
    return GenerateResult(files=files, rows=config.rows, truth=truth, seconds=time.perf_counter() - started)


def _output_names(config: GenerateConfig, months) -> set[str]:
    """The file names this run writes into --out (truth.json included)."""
    if config.zip:
        names = {year_archive_name(y) for y in {y for y, _ in months}}
    else:
        names = {month_file_name(y, m) for y, m in months}
    return names | {TRUTH_FILE}


def _refuse_stale_outputs(out: Path, config: GenerateConfig, months) -> None:
    """Refuse an --out holding taxi_* files this run would not overwrite: ingest would read them too."""
    expected = _output_names(config, months)
    if not out.is_dir():
        return  # absent (or a file: the staged output says so)
    try:
        present = sorted(p.name for p in out.iterdir() if p.name.startswith("taxi_"))
    except OSError as err:
        raise UserError(f"--out {config.output_uri}: cannot list the directory: {err.strerror}") from err
    stale = [name for name in present if name not in expected]
    if stale:
        more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        raise UserError(
            f"--out {config.output_uri} already holds {', '.join(stale[:3])}{more}, which this run would not "
            "write (a run replaces an output of the same months and format only); use an empty directory "
            "or remove them"
        )


def _write_txts(out: Path, plan, seed: int, counts: dict, advance) -> list[dict]:
    """One taxi_YYYY_MM.txt per month."""
    file_rows = []
    for year, month, rows in plan:
        final = out / month_file_name(year, month)
        with open(final, "wb") as sink:
            _write_month(sink, [seed, year, month], _month_context(year, month), rows, counts, advance)
        file_rows.append({"file": final.name, "rows": rows})
    return file_rows


def _write_zips(out: Path, plan, seed: int, counts: dict, advance) -> list[dict]:
    """One taxi_YYYY.zip per year; each month streams straight into its member (no .txt on disk)."""
    file_rows = []
    for year in sorted({y for y, _, _ in plan}):
        final = out / year_archive_name(year)
        with zipfile.ZipFile(final, "w", zipfile.ZIP_DEFLATED, compresslevel=ZIP_COMPRESSLEVEL) as archive:
            for _, month, rows in (p for p in plan if p[0] == year):
                name = month_file_name(year, month)
                # Fixed timestamp so the archive bytes depend on the config only.
                info = zipfile.ZipInfo(name, date_time=(year, month, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                # A hand-made ZipInfo would otherwise deflate at level 6 (public name from Python 3.13).
                level_attr = "compress_level" if hasattr(info, "compress_level") else "_compresslevel"
                setattr(info, level_attr, ZIP_COMPRESSLEVEL)
                with archive.open(info, "w", force_zip64=True) as sink:
                    _write_month(
                        sink, [seed, year, month], _month_context(year, month), rows, counts, advance
                    )
                file_rows.append({"file": f"{final.name}!{name}", "rows": rows})
    return file_rows


def _num(x: float) -> float | None:
    """Rounded for truth.json; None (JSON null) where undefined (no clean rows)."""
    return round(float(x), 6) if np.isfinite(x) else None


def _truth(config: GenerateConfig, months, file_rows: list[dict], counts: dict) -> dict:
    rows = counts["rows"]
    n = counts["clean_rows"]
    mean = counts["clean_fare_sum"] / n if n else float("nan")
    var = counts["clean_fare_sumsq"] / n - mean**2 if n else float("nan")
    std = float(np.sqrt(max(var, 0.0)))
    best = float(np.sqrt(counts["clean_sse"] / n)) if n else float("nan")
    defects = {
        k: counts[k]
        for k in (
            "duplicates",
            "origin_timestamp_missing",
            "destination_timestamp_missing",
            "origin_coords_missing",
            "destination_coords_missing",
            "either_coords_missing",
            "fare_null",
            "fare_below_min",
            "fare_negative",
            "fare_above_max",
            "mileage_null",
            "duration_null",
        )
    }
    return {
        "generator": "fareflow.generate",
        "version": GENERATOR_VERSION,
        "config": asdict(config),
        "months": [f"{y:04d}-{m:02d}" for y, m in months],
        "files": file_rows,
        "rows": rows,
        "defects": defects,
        "defect_rates_observed": {k: round(v / rows, 6) for k, v in defects.items()},
        "fare_min": counts.get("fare_min"),
        "fare_max": counts.get("fare_max"),
        "clean": {
            "definition": (
                f"fare in [{contract.FARE_RANGE[0]}, {contract.FARE_RANGE[1]}], no missing origin timestamp, "
                "fare or coordinates, exact duplicate rows removed"
            ),
            "rows": n,
            "fare_mean": _num(mean),
            "fare_std": _num(std),
            "mean_baseline_rmse": _num(std),
        },
        "best_rmse": _num(best),
        "best_rmse_definition": "RMSE of E[fare | origin, destination, pick-up time] against the fare, clean rows",
        "best_r2": _num(1 - best**2 / var) if n and var > 0 else None,
        "model": model_parameters(),
    }
