"""``make bench-scale``: the whole DC-sized data set through ingest -> quality -> sample -> train.

Generates ``--rows`` rows (default 67,400,000, the DC data set) over the 54 months
2015-01..2019-06 in the real layout (``taxi_YYYY.zip`` per year holding ``taxi_YYYY_MM.txt``),
then runs every step as the pipeline runs it -- the step's CLI in its own process, the same
``core`` code the kfp components call -- one after the other, each on the previous one's output:

    generate --zip  ->  ingest  ->  quality  ->  sample (--rows 2^20)  ->  train

Per step it records wall seconds, CPU seconds (user + system of the step's whole process
tree, from ``wait4``), rows/s, MB/s (of the step's input: uncompressed text for ingest,
bytes on disk otherwise), peak RSS of the whole process tree (the sum of the RSS of the
step's process and all its descendants, sampled every ``SAMPLE_S`` seconds from /proc --
the quality step's worker processes count together), bytes written and the disk the run
needs up to that step (every output so far is kept: the next step reads it). It checks the
invariants at every size: ingest rows read = generated rows = rows written + quarantined;
quality rows in = ingest rows written = clean + rejected; sample rows = requested (at most
the clean rows); train finished with a finite validation RMSE. A broken invariant fails the run.

``--compare-rows N`` (default 2,000,000) first runs the same chain on N rows over the same 54
months, and each step's record then holds ``linearity``: its rows/s at full size divided by
its rows/s at N rows (the issue's goal: >= 0.8, cost grows linearly).

Progress: a step's own bar (ingest's, generate's) is shown when this driver's stderr is a
terminal; the driver prints one line per finished step. Results go to
``bench/results/scale-<timestamp>.json`` (and the table to stdout).

    python -m bench.bench_scale --rows 10000000 --workdir /var/tmp/fareflow-scale
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.common import REPO_ROOT, dir_bytes

FULL_ROWS = 67_400_000
MONTHS = "2015-01:2019-06"  # 54 monthly files in 5 yearly zips
SAMPLE_ROWS = 1 << 20  # the reference treatment's sample size
SAMPLE_S = 0.25  # process-tree RSS sampling interval, once past the first second
FIRST_SAMPLE_S = 0.01  # the first interval; it doubles up to SAMPLE_S (short steps get samples too)
TRAIN_EPOCHS = 2
RESULTS = Path(__file__).parent / "results"


# --- measuring one step's process tree ---------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    """ppid -> [pid] for every process in /proc (read at once; processes come and go)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # the command name (2nd field) is in parentheses and may hold spaces
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss(root: int) -> int:
    """Sum of the resident set sizes of ``root`` and all its descendants, in bytes."""
    children = _children_map()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _rss_bytes(pid)
        stack.extend(children.get(pid, ()))
    return total


@dataclass
class StepRun:
    seconds: float
    cpu_s: float
    peak_rss_bytes: int  # of the whole process tree
    samples: int  # RSS samples taken


def run_step(cmd: list[str], *, env: dict[str, str] | None = None, log: Path | None = None) -> StepRun:
    """Run ``cmd``; wall time, CPU seconds of its tree (wait4) and the peak of its tree's RSS.

    Output goes to ``log`` (appended) unless this process's stderr is a terminal, where the
    step's own progress bar should be seen. Raises when the command fails."""
    tty = sys.stderr.isatty()
    out = open(log, "ab") if log is not None and not tty else None  # noqa: SIM115 - closed below
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=REPO_ROOT, stdout=out, stderr=out)
        peak, samples, stop = [0], [0], threading.Event()

        def sample() -> None:
            interval = FIRST_SAMPLE_S
            while not stop.is_set():
                peak[0] = max(peak[0], tree_rss(proc.pid))
                samples[0] += 1
                stop.wait(interval)
                interval = min(SAMPLE_S, interval * 2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if out is not None:
            out.close()
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
        raise RuntimeError(f"step failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    # Sampling can miss a peak between two samples; the tree's sum is at least the largest peak
    # of any one of its processes, which the kernel reports exactly (ru_maxrss, KiB on Linux).
    peak_bytes = max(peak[0], usage.ru_maxrss * 1024)
    return StepRun(seconds, usage.ru_utime + usage.ru_stime, peak_bytes, samples[0])


# --- the chain ---------------------------------------------------------------------------------


@dataclass
class StepRecord:
    step: str
    rows: int  # rows the step read
    seconds: float
    cpu_s: float
    rows_per_s: float
    input_bytes: int  # read (ingest: uncompressed text; generate: the text it produced)
    mb_per_s: float
    peak_rss_mb: float
    bytes_written: int
    disk_needed_bytes: int  # every output so far (this one included) + the generated data
    load_avg: list[float]
    checks: dict = field(default_factory=dict)
    linearity: float | None = None  # rows/s here / rows/s at --compare-rows
    rows_per_cpu_s: float = 0.0  # steadier than rows/s on a shared machine
    linearity_cpu: float | None = None  # rows per CPU second here / at --compare-rows


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def _record(
    step: str, rows: int, run: StepRun, input_bytes: int, written: int, disk: int, checks
) -> StepRecord:
    return StepRecord(
        step=step,
        rows=rows,
        seconds=round(run.seconds, 2),
        cpu_s=round(run.cpu_s, 2),
        rows_per_s=round(rows / run.seconds),
        rows_per_cpu_s=round(rows / run.cpu_s) if run.cpu_s else 0.0,
        input_bytes=input_bytes,
        mb_per_s=round(input_bytes / 1e6 / run.seconds, 1),
        peak_rss_mb=round(run.peak_rss_bytes / 2**20, 1),
        bytes_written=written,
        disk_needed_bytes=disk,
        load_avg=[round(x, 2) for x in os.getloadavg()],
        checks=checks,
    )


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise RuntimeError(f"invariant broken: {message}")


def run_chain(
    workdir: Path,
    rows: int,
    *,
    months: str = MONTHS,
    sample_rows: int = SAMPLE_ROWS,
    train_epochs: int = TRAIN_EPOCHS,
    steps: tuple[str, ...] = ("generate", "ingest", "quality", "sample", "train"),
    progress: bool | None = None,
    say=print,
) -> list[StepRecord]:
    """Run the chain on ``rows`` rows under ``workdir`` (kept); one record per step run.

    ``steps`` may leave out leading steps whose outputs are already under ``workdir``
    (e.g. re-run quality onwards on data generated and ingested before)."""
    workdir.mkdir(parents=True, exist_ok=True)
    raw, ingested, clean, splits, model = (
        workdir / n for n in ("raw", "ingested", "clean", "splits", "model")
    )
    stats, rejected = Path(f"{clean}_stats"), Path(f"{clean}_rejected")
    log = workdir / "steps.log"
    show = sys.stderr.isatty() if progress is None else progress
    progress_flag = ["--progress" if show else "--no-progress"]
    records: list[StepRecord] = []
    disk = dir_bytes(raw) if raw.exists() else 0

    def done(rec: StepRecord) -> None:
        records.append(rec)
        say(
            f"  {rec.step:<9} {rec.rows:>12,} rows  {rec.seconds:>8.1f} s  cpu {rec.cpu_s:>8.1f} s  "
            f"{rec.rows_per_s:>10,.0f} rows/s  {rec.mb_per_s:>7.1f} MB/s  peak {rec.peak_rss_mb:>7.0f} MB  "
            f"wrote {rec.bytes_written / 1e9:.2f} GB  load {rec.load_avg[0]:.2f}"
        )

    if "generate" in steps:
        shutil.rmtree(raw, ignore_errors=True)
        gen_cmd = ["-m", "components.generate", "--out", str(raw), "--rows", str(rows), "--months", months]
        r = run_step(_py(*gen_cmd, "--zip", "--seed", "0"), log=log)
        written = dir_bytes(raw)
        disk = written
        zips = sorted(p.name for p in raw.glob("taxi_*.zip"))
        truth = json.loads((raw / "truth.json").read_text())
        _check(truth["rows"] == rows, f"generator wrote {truth['rows']:,} rows, asked for {rows:,}")
        # MB/s of a generate record: the uncompressed text it produced
        done(_record("generate", rows, r, _text_bytes(raw), written, disk, {"zips": zips}))

    if "ingest" in steps:
        shutil.rmtree(ingested, ignore_errors=True)
        summary_path = workdir / "ingest-summary.json"
        ingest_cmd = ["-m", "components.ingest", "--source", str(raw), "--output", str(ingested)]
        r = run_step(_py(*ingest_cmd, "--summary-json", str(summary_path), *progress_flag), log=log)
        s = json.loads(summary_path.read_text())
        _check(s["rows_read"] == rows, f"ingest read {s['rows_read']:,} rows, generated {rows:,}")
        _check(
            s["rows_read"] == s["rows_written"] + s["rows_quarantined"],
            f"ingest {s['rows_read']} != {s['rows_written']} + {s['rows_quarantined']}",
        )
        _check(s["files"] == len(_months(months)), f"ingest read {s['files']} files")
        written = dir_bytes(ingested)
        disk += written
        checks = {k: s[k] for k in ("files", "rows_read", "rows_written", "rows_quarantined", "bytes_read")}
        done(_record("ingest", s["rows_read"], r, s["bytes_read"], written, disk, checks))
    ingest_summary = json.loads((workdir / "ingest-summary.json").read_text())

    if "quality" in steps:
        for p in (clean, stats, rejected):
            shutil.rmtree(p, ignore_errors=True)
        summary_path = workdir / "quality-summary.json"
        quality_cmd = ["-m", "components.quality", "--input", str(ingested), "--output", str(clean)]
        r = run_step(_py(*quality_cmd, "--no-gate", "--quiet", "--summary-json", str(summary_path)), log=log)
        s = json.loads(summary_path.read_text())
        _check(
            s["rows_in"] == ingest_summary["rows_written"],
            f"quality read {s['rows_in']:,} rows, ingest wrote {ingest_summary['rows_written']:,}",
        )
        _check(
            s["rows_in"] == s["rows_clean"] + s["rows_rejected"],
            f"quality {s['rows_in']} != {s['rows_clean']} + {s['rows_rejected']}",
        )
        written = dir_bytes(clean) + dir_bytes(stats) + dir_bytes(rejected)
        disk += written
        checks = {k: s[k] for k in ("rows_in", "rows_clean", "rows_rejected")}
        done(_record("quality", s["rows_in"], r, dir_bytes(ingested), written, disk, checks))
    quality_summary = json.loads((workdir / "quality-summary.json").read_text())

    if "sample" in steps:
        shutil.rmtree(splits, ignore_errors=True)
        summary_path = workdir / "sample-summary.json"
        want = min(sample_rows, quality_summary["rows_clean"])
        sample_cmd = ["-m", "components.sample", "--input", str(clean), "--population-stats", str(stats)]
        r = run_step(
            _py(
                *sample_cmd, "--output", str(splits), "--rows", str(want), "--summary-json", str(summary_path)
            ),
            log=log,
        )
        s = json.loads(summary_path.read_text())
        got = sum(s["rows"].values())
        _check(got == want, f"sample wrote {got:,} rows, asked for {want:,}")
        written = dir_bytes(splits)
        disk += written
        checks = {"rows": s["rows"], "passed": s.get("passed"), "attempts": s.get("attempts")}
        done(_record("sample", quality_summary["rows_clean"], r, dir_bytes(clean), written, disk, checks))

    if "train" in steps:
        shutil.rmtree(model, ignore_errors=True)
        summary_path = workdir / "train-summary.json"
        train_cmd = ["-m", "components.train", "--splits", str(splits), "--output", str(model)]
        r = run_step(
            _py(
                *train_cmd, "--epochs", str(train_epochs), "--patience", "0", "--truth", str(raw / "truth.json"),
                "--summary-json", str(summary_path),
            ),
            env={"OMP_NUM_THREADS": "1"},
            log=log,
        )  # fmt: skip
        s = json.loads(summary_path.read_text())
        metrics = s["metrics"]
        rmse = metrics.get("val_rmse", metrics.get("validation_rmse"))
        _check(rmse is not None and math.isfinite(rmse), f"train: validation RMSE {rmse}")
        train_rows = s.get("rows", {}).get("train") if isinstance(s.get("rows"), dict) else None
        written = dir_bytes(model)
        disk += written
        checks = {"val_rmse": rmse, "epochs": train_epochs, "rows": s.get("rows")}
        rows_seen = (train_rows or 0) * train_epochs
        done(_record("train", rows_seen, r, dir_bytes(splits), written, disk, checks))
    return records


def _text_bytes(raw: Path) -> int:
    import zipfile

    total = 0
    for z in raw.glob("taxi_*.zip"):
        with zipfile.ZipFile(z) as zf:
            total += sum(i.file_size for i in zf.infolist())
    return total + sum(p.stat().st_size for p in raw.glob("taxi_*.txt"))


def _months(spec: str) -> list:
    from components.generate.core import parse_months

    return parse_months(spec)


# --- the command ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=FULL_ROWS, help="rows generated (default %(default)s)")
    parser.add_argument("--months", default=MONTHS, help="month range (default %(default)s: 54 files)")
    parser.add_argument(
        "--compare-rows",
        type=int,
        default=2_000_000,
        help="first run the chain on this many rows, for the rows/s ratio (0: skip)",
    )
    parser.add_argument(
        "--compare-with",
        default=None,
        help="an earlier scale-*.json whose small-size records (or, without them, full) stand in for --compare-rows",
    )
    parser.add_argument("--workdir", default=None, help="where the data go (default: a temp dir, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the data under --workdir")
    parser.add_argument("--sample-rows", type=int, default=SAMPLE_ROWS)
    parser.add_argument("--train-epochs", type=int, default=TRAIN_EPOCHS)
    parser.add_argument(
        "--from-step",
        choices=("generate", "ingest", "quality", "sample", "train"),
        default="generate",
        help="re-run from this step on data already under --workdir",
    )
    args = parser.parse_args(argv)
    order = ("generate", "ingest", "quality", "sample", "train")
    steps = order[order.index(args.from_step) :]

    import tempfile

    base = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="fareflow-scale-"))
    started = time.strftime("%Y%m%d-%H%M%S")
    result: dict = {"rows": args.rows, "months": args.months, "started": started, "cpus": os.cpu_count()}
    try:
        if args.compare_rows and not args.compare_with:
            print(f"bench-scale: {args.compare_rows:,} rows (the small size, for the rows/s ratio)")
            small = run_chain(
                base / "small", args.compare_rows, months=args.months, sample_rows=args.sample_rows,
                train_epochs=args.train_epochs, steps=steps,
            )  # fmt: skip
            result["small"] = [asdict(r) for r in small]
            if not args.keep:
                shutil.rmtree(base / "small", ignore_errors=True)
        print(f"bench-scale: {args.rows:,} rows over {len(_months(args.months))} months")
        full = run_chain(
            base / "full", args.rows, months=args.months, sample_rows=args.sample_rows,
            train_epochs=args.train_epochs, steps=steps,
        )  # fmt: skip
        if args.compare_with:
            earlier = json.loads(Path(args.compare_with).read_text())
            result["small"] = earlier.get("small") or earlier["full"]
            result["compared_with"] = args.compare_with
        if result.get("small"):
            small_rate = {
                r["step"]: (r["rows_per_s"], r.get("rows_per_cpu_s") or r["rows"] / r["cpu_s"])
                for r in result["small"]
            }
            for r in full:
                if r.step in small_rate:
                    wall, cpu = small_rate[r.step]
                    r.linearity = round(r.rows_per_s / wall, 2) if wall else None
                    r.linearity_cpu = round(r.rows_per_cpu_s / cpu, 2) if cpu else None
        result["full"] = [asdict(r) for r in full]
        chain = [r for r in full if r.step in ("ingest", "quality", "sample")]
        result["ingest_quality_sample_s"] = round(sum(r.seconds for r in chain), 1)
        result["max_peak_rss_mb"] = max(r.peak_rss_mb for r in full)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(base, ignore_errors=True)
    _print_table(result)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"scale-{started}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def _print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"fareflow bench-scale ({result['rows']:,} rows, {result['cpus']} CPUs)")
    cols = ("step", "rows", "wall s", "CPU s", "rows/s", "MB/s", "peak RSS MB", "written GB", "disk GB",
            "vs small (wall)", "vs small (CPU)", "load")  # fmt: skip
    for c in cols:
        table.add_column(c, justify="left" if c == "step" else "right")
    for r in result["full"]:
        table.add_row(
            r["step"], f"{r['rows']:,}", f"{r['seconds']:.1f}", f"{r['cpu_s']:.1f}", f"{r['rows_per_s']:,.0f}",
            f"{r['mb_per_s']:.1f}", f"{r['peak_rss_mb']:.0f}", f"{r['bytes_written'] / 1e9:.2f}",
            f"{r['disk_needed_bytes'] / 1e9:.2f}", "" if r["linearity"] is None else f"{r['linearity']:.2f}x",
            "" if r.get("linearity_cpu") is None else f"{r['linearity_cpu']:.2f}x",
            f"{r['load_avg'][0]:.2f}",
        )  # fmt: skip
    console = Console(width=max(Console().width, 130))
    console.print(table)
    console.print(
        f"ingest + quality + sample: {result['ingest_quality_sample_s']:.0f} s wall; "
        f"highest peak RSS of a step: {result['max_peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    raise SystemExit(main())
