"""Tune step benchmark: what median pruning and parallel workers buy, in trials per minute.

Both cases tune on the bench's splits (``bench_train.splits``: generate -> ingest -> quality
-> sample, the generated rows capped at ``ROWS_CAP``), every trial on at most ``MAX_ROWS``
rows of each split for at most ``EPOCHS`` epochs, so ``make bench`` spends a few minutes here.
Each study runs in its own child process (``bench.common.measure``: wall time, peak RSS),
through ``components.tune.core.run`` as ``fareflow tune`` runs it (``DRIVER``); trials per
minute are the study's trials over the child's wall seconds (start-up and data reading
included, as a user waits for them).

Cases:

- ``tune-pruning`` / median-pruning vs no-pruning: the same TPE study (seed, ``TRIALS``
  trials, in memory, one process with ``THREADS`` torch thread(s)), with the tune step's ``MedianPruner`` as configured by
  ``TuneConfig``'s defaults, and with pruning off (``pruning=False``, ``--no-pruning``). Pruning must
  buy its speed at an equal best value: both best validation RMSEs are recorded
  (``best_value``) and ``summarize`` prints them side by side with their relative difference.
  The two studies differ after the first pruned trial (TPE learns from pruned trials too).
- ``tune-workers`` / 1x2-threads vs 2x1-thread: one SQLite study (``sqlite:///...``), run by
  one process with 2 torch threads and by ``--workers 2`` processes with 1 thread each
  (``cpu_threads(2)`` on a 2-CPU machine). Both run the very same ``TRIALS`` trials: their
  parameters are drawn once (``fixed_trials``, seeded) and enqueued before the study starts, and
  pruning is off, so the two do the same work and only the parallelism differs. The goal
  (issue 13) is >= 0.8 x N = 1.6x the trials per minute of one worker. Two study sizes:
  ``TRIALS`` (the tune step's default study; case ``tune-workers``) and ``LONG_FACTOR`` times
  as many (``tune-workers-long``): a study's start (processes, imports, the first trial's lazy
  torch imports) and its end (a worker idle while the other finishes its last trial) cost the
  same whatever its length, so the longer study shows the rate the workers sustain.

Every study runs ``repeat`` times, the two implementations of a case alternating (a shared
machine's load hits both alike); medians are reported with every run's figure and the load
average before each run (``load_avg``, os.getloadavg's 1-minute figure).

    python -m bench.run --suite bench.bench_tune [--repeat 3] [--workdir DIR]

``FAREFLOW_BENCH_TUNE_CASES=workers`` (or ``pruning``; comma-separated, default both) runs only
those cases, e.g. to re-measure the workers' scaling within a short exclusive slot.
"""

from __future__ import annotations

import json
import os
import random
import statistics
from pathlib import Path

from bench.common import REPO_ROOT, measure, python_cmd

ROWS_CAP = 300_000  # generated rows (about 140,000 train rows with the automatic sample size)
MAX_ROWS = 80_000  # rows of each split per trial (at 10,000 a trial is shorter than a worker's start-up)
THREADS = 1  # OMP_NUM_THREADS of the pruning case's studies (bench_train: a loaded machine's
# spinning OpenMP threads made 2-thread trials several times slower than 1-thread ones)
EPOCHS = 4
TRIALS = 8
LONG_FACTOR = 3  # the workers case's second study: 24 trials
SEED = 0
WORKERS = 2
CASES = ("pruning", "workers")
CASES_ENV = "FAREFLOW_BENCH_TUNE_CASES"

# One study in a child process: core.run as fareflow tune runs it, the settings as JSON in
# argv[1]; prints the study's figures as one JSON line. "fixed": parameter sets enqueued
# before the run (the study then runs exactly those first).
DRIVER = """
import json, sys, time
from components.tune import core
from components.tune.config import TuneConfig

spec = json.loads(sys.argv[1])
config = TuneConfig(**spec["config"])
if spec.get("fixed"):
    study = core.open_study(config)
    for params in spec["fixed"]:
        study.enqueue_trial(params)
start = time.perf_counter()
result = core.run(config, log=lambda m: None)
seconds = time.perf_counter() - start
print(json.dumps({
    "trials": len(result.trials), "states": result.counts(), "best_value": result.best_value,
    "study_s": seconds, "epochs_run": sum(t["epochs_run"] for t in result.trials),
}))
"""


# ---------------------------------------------------------------- pure parts


def trials_per_minute(trials: int, seconds: float) -> float:
    """Trials finished per minute of wall time."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return 60.0 * trials / seconds


def speedup(ours: dict, base: dict) -> float:
    """How many times ``base``'s trials per minute ``ours`` runs."""
    return ours["trials_per_min"] / base["trials_per_min"]


def relative_gap(value: float, reference: float) -> float:
    """``(value - reference) / reference``: how much worse (> 0) a best validation RMSE is."""
    return (value - reference) / reference


def fixed_trials(n: int, seed: int = SEED) -> list[dict]:
    """``n`` parameter sets of the tune step's search space, drawn once with ``seed`` (the same
    list for every run of the workers case, so each configuration does the same work)."""
    from components.tune.core import BATCH_CHOICES, HIDDEN_CHOICES

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        out.append(
            {
                "learning_rate": 10 ** rng.uniform(-4, -2),
                "batch_size": rng.choice(BATCH_CHOICES),
                "hidden": rng.choice(HIDDEN_CHOICES),
                "weight_decay": 10 ** rng.uniform(-6, -2),
                "dropout": rng.uniform(0.0, 0.3),
            }
        )
    return out


def record(case: str, impl: str, runs: list[dict], **extra) -> dict:
    """One implementation's runs as a bench row: medians (trials/min, wall seconds, best value),
    every run's figures, the highest peak RSS. ``rows``/``rows_per_s`` are trials and trials per
    second so ``bench.run``'s table and ratios read them."""
    per_min = [trials_per_minute(r["trials"], r["seconds"]) for r in runs]
    best = [r["best_value"] for r in runs]
    return {
        "case": case,
        "impl": impl,
        "rows": runs[0]["trials"],
        "unit": "trials",  # bench.run's table: trials and trials/min, not rows
        "seconds": round(statistics.median(r["seconds"] for r in runs), 3),
        "rows_per_s": round(statistics.median(per_min) / 60.0, 5),
        "trials_per_min": round(statistics.median(per_min), 3),
        "runs_trials_per_min": [round(v, 3) for v in per_min],
        "best_value": round(statistics.median(best), 4),
        "runs_best_value": [round(v, 4) for v in best],
        "runs_states": [r["states"] for r in runs],
        "runs_epochs": [r["epochs_run"] for r in runs],
        "runs_s": [round(r["seconds"], 2) for r in runs],
        "load_avg": [r["load_avg"] for r in runs],
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        **extra,
    }


def summarize(rows: list[dict]) -> list[str]:
    """The lines ``make bench`` prints for this suite (``bench.run`` calls it)."""
    by = {(r["case"], r["impl"]): r for r in rows}
    lines = []
    pruned, unpruned = by.get(("tune-pruning", "median-pruning")), by.get(("tune-pruning", "no-pruning"))
    if pruned and unpruned:
        lines.append(
            f"tune pruning: {pruned['trials_per_min']:.2f} vs {unpruned['trials_per_min']:.2f} trials/min "
            f"({speedup(pruned, unpruned):.2f}x) with median pruning; best validation RMSE "
            f"{pruned['best_value']:.4f} vs {unpruned['best_value']:.4f} without "
            f"({100 * relative_gap(pruned['best_value'], unpruned['best_value']):+.1f}%)"
        )
    for case in ("tune-workers", "tune-workers-long"):
        two, one = by.get((case, f"{WORKERS}x1-thread")), by.get((case, "1x2-threads"))
        if two and one:
            x = speedup(two, one)
            goal = 0.8 * WORKERS
            lines.append(
                f"{case.replace('-', ' ')}: {two['trials_per_min']:.2f} trials/min with {WORKERS} workers "
                f"x 1 thread vs {one['trials_per_min']:.2f} with 1 worker x 2 threads on one SQLite study "
                f"of {one['rows']} trials: {x:.2f}x (goal {goal:.1f}x: {'met' if x >= goal else 'not met'})"
            )
    return lines


def selected_cases(value: str | None = None) -> tuple[str, ...]:
    """The cases ``run`` measures: ``value`` (default ``$FAREFLOW_BENCH_TUNE_CASES``), a
    comma-separated subset of :data:`CASES`; empty or unset: all of them."""
    value = os.environ.get(CASES_ENV, "") if value is None else value
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise ValueError(f"{CASES_ENV}: unknown case(s) {unknown}; expected some of {list(CASES)}")
    return tuple(c for c in CASES if c in names) if names else CASES


# ---------------------------------------------------------------- running


def _study(workdir: Path, spec: dict, threads: int) -> dict:
    """One study in a child process; its printed figures plus the child's wall time and RSS."""
    # the repository on the path of the child and of the workers it starts
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    load = round(os.getloadavg()[0], 2)
    result = measure(python_cmd("-c", DRIVER, json.dumps(spec)), env=env, cwd=workdir)
    printed = json.loads(result["stdout"].strip().splitlines()[-1])
    return {**printed, "seconds": result["seconds"], "peak_rss_mb": result["peak_rss_mb"], "load_avg": load}


def _alternate(workdir: Path, specs: dict[str, tuple[dict, int]], repeat: int, fresh) -> dict[str, list]:
    runs: dict[str, list[dict]] = {impl: [] for impl in specs}
    for _ in range(repeat):
        for impl, (spec, threads) in specs.items():
            fresh()
            runs[impl].append(_study(workdir, spec, threads))
    return runs


def run(
    workdir: Path,
    rows: int,
    repeat: int = 3,
    trials: int = TRIALS,
    epochs: int = EPOCHS,
    cases: tuple[str, ...] | None = None,
) -> list[dict]:
    """The cases (default :func:`selected_cases`: both), ``repeat`` runs per implementation,
    alternating; rows as ``bench.run`` reads them."""
    from bench.bench_train import splits

    cases = selected_cases() if cases is None else cases

    workdir.mkdir(parents=True, exist_ok=True)
    split_dir = str(splits(workdir, min(rows, ROWS_CAP)))
    base = {"splits_uri": split_dir, "trials": trials, "epochs": epochs, "seed": SEED, "max_rows": MAX_ROWS}
    base["device"] = "cpu"

    pruning = {
        "median-pruning": ({"config": base}, THREADS),
        "no-pruning": ({"config": {**base, "pruning": False}}, THREADS),
    }
    rows_out = []
    if "pruning" in cases:
        found = _alternate(workdir, pruning, repeat, lambda: None)
        rows_out += [
            record("tune-pruning", impl, r, trials=trials, epochs=epochs) for impl, r in found.items()
        ]
    if "workers" not in cases:
        return rows_out

    db = workdir / "tune-bench.db"

    def fresh() -> None:
        for path in (db, Path(f"{db}.ask.lock")):
            path.unlink(missing_ok=True)

    for case, n in (("tune-workers", trials), ("tune-workers-long", LONG_FACTOR * trials)):
        shared = {
            **base,
            "storage": f"sqlite:///{db}",
            "study_name": "bench-workers",
            "pruning": False,  # the same work in both: no pruning
            "total_trials": n,  # run until the study holds this many (``trials`` is then unused)
        }
        fixed = fixed_trials(n)
        workers = {
            "1x2-threads": ({"config": shared, "fixed": fixed}, 2),
            f"{WORKERS}x1-thread": ({"config": {**shared, "workers": WORKERS}, "fixed": fixed}, 0),
        }
        found = _alternate(workdir, workers, repeat, fresh)
        fresh()
        rows_out += [record(case, impl, r, trials=n, epochs=epochs) for impl, r in found.items()]
    return rows_out
