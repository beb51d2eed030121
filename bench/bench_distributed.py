"""Distributed training benchmark: Horovod beside DDP, scaling per core.

On the same splits as ``bench.bench_train`` (built once under ``workdir``), ``python -m
components.train`` runs as

- ``1 process x 1 thread`` (``--workers 1``, ``OMP_NUM_THREADS=1``): the per-core reference;
- ``1 process x all threads`` (``--workers 1``, torch's default threads): what one process gets
  from the whole machine;
- ``ddp N x 1 thread``, ``horovod-mpi N x 1 thread`` and ``horovod-gloo N x 1 thread``
  (``--workers N --backend ddp|horovod``, ``OMP_NUM_THREADS=1`` in every rank): torchrun's DDP
  ranks, mpirun's Horovod ranks (MPI controller; only when this Horovod was built with MPI) and
  horovodrun's gloo ranks (``FAREFLOW_HOROVOD_TRANSPORT`` picks the launcher).

The throughput is the summary's ``metrics.rows_per_s``: train rows of all ranks per second of
the epoch loop (validation passes excluded), the global batch split over the ranks; every
configuration runs at each of ``BATCH_SIZES`` (the default 1024, 8192 and 32768).
Per-core scaling is ``N x 1 thread`` over ``1 x 1 thread`` (the issue's goal: >= 1.6x for N = 2);
one process already uses every core when left to torch's default, so the all-threads figure is
reported beside it rather than scaled against. Each configuration runs ``repeat`` times, in
turn (a shared machine's load hits all alike); medians reported, with the load average. The run
fails if a configuration's test RMSE is more than ``RMSE_TOLERANCE`` off the 1-process one's:
a speed-up bought with a worse model is none.

    python -m bench.run --suite bench.bench_distributed --rows 300000 [--repeat 3]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from pathlib import Path

from bench.bench_train import BATCH_SIZE, ROWS_CAP, splits
from bench.common import measure, python_cmd
from components.train.launch import TRANSPORT_ENV, horovod_transport

CASE = "train-distributed"
EPOCHS = 2
WORKERS = 2
# The default global batch and two larger ones, the same on both sides of every ratio (the same
# rows per optimizer step, so the same number of steps and the same model quality). The
# 128-64-32 MLP is so small that at batch 1024 (512 rows per rank) a step's compute is about a
# millisecond, which the per-step gradient all-reduce of two ranks (0.5-1 ms over gloo on the
# 2-core machine) costs again; at 8192 a rank's step is 5-7 ms and the all-reduce with the
# ranks' lockstep wait about a third more; at 32768 compute dominates (docs/train.md,
# "Distributed scaling").
BATCH_SIZES = (BATCH_SIZE, 8 * BATCH_SIZE, 32 * BATCH_SIZE)
RMSE_TOLERANCE = 0.05  # relative difference of test RMSE allowed against 1 process x 1 thread


def _configs(workers: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    one_thread = {"OMP_NUM_THREADS": "1"}
    configs = {
        "1 process x 1 thread": (["--workers", "1"], one_thread),
        "1 process x all threads": (["--workers", "1"], {}),
        f"ddp {workers} x 1 thread": (["--workers", str(workers), "--backend", "ddp"], one_thread),
    }
    horovod = ["--workers", str(workers), "--backend", "horovod"]
    if _horovod_has_mpi():
        configs[f"horovod-mpi {workers} x 1 thread"] = (horovod, {**one_thread, TRANSPORT_ENV: "mpi"})
    configs[f"horovod-gloo {workers} x 1 thread"] = (horovod, {**one_thread, TRANSPORT_ENV: "gloo"})
    return configs


def _horovod_has_mpi() -> bool:
    """Whether ``--backend horovod`` would launch through mpirun here (Horovod built with MPI)."""
    os.environ.pop(TRANSPORT_ENV, None)  # the configurations set it; an inherited one would decide
    return horovod_transport() == "mpi"


def run(
    workdir: Path,
    rows: int,
    repeat: int = 3,
    epochs: int = EPOCHS,
    workers: int = WORKERS,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
) -> list[dict]:
    if "OMP_NUM_THREADS" in os.environ:
        # "all threads" means torch's default; an inherited setting would pin it
        raise RuntimeError("unset OMP_NUM_THREADS for bench.bench_distributed (it sets it per configuration)")
    workdir.mkdir(parents=True, exist_ok=True)
    split_dir = splits(workdir, min(rows, ROWS_CAP))
    out = workdir / "distributed-out"
    found = []
    for batch in batch_sizes:
        found += _run_batch(split_dir, out, batch, repeat, epochs, workers)
    shutil.rmtree(out, ignore_errors=True)
    return found


def _run_batch(split_dir: Path, out: Path, batch: int, repeat: int, epochs: int, workers: int) -> list[dict]:
    configs = _configs(workers)
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for _ in range(repeat):
        for name, (flags, env) in configs.items():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            cmd = python_cmd(
                "-m", "components.train", "--splits", str(split_dir), "--output", str(out / "model"),
                "--epochs", str(epochs), "--batch-size", str(batch), "--patience", "0",
                "--keep-checkpoints", "0", "--device", "cpu", "--summary-json", str(out / "summary.json"),
                *flags,
            )  # fmt: skip
            result = measure(cmd, env=env)
            summary = json.loads((out / "summary.json").read_text())
            result.update(
                train_rows=summary["rows"]["train"],
                train_rows_per_s=summary["metrics"]["rows_per_s"],
                test_rmse=summary["metrics"]["test_rmse"],
                world_size=summary["world_size"],
                backend=summary["backend"],
                load_avg=os.getloadavg()[0],
            )
            runs[name].append(result)
    rows_out = [_row(name, r, epochs, batch) for name, r in runs.items()]
    reference = rows_out[0]
    for row in rows_out[1:]:
        off = abs(row["test_rmse"] - reference["test_rmse"]) / reference["test_rmse"]
        if off > RMSE_TOLERANCE:
            raise RuntimeError(
                f"batch {batch}: {row['impl']}: test RMSE {row['test_rmse']} is {off:.1%} off 1 process's "
                f"{reference['test_rmse']} (allowed {RMSE_TOLERANCE:.0%})"
            )
    return rows_out


def _row(name: str, runs: list[dict], epochs: int, batch: int) -> dict:
    return {
        "case": f"{CASE} batch {batch}",
        "batch_size": batch,
        "impl": name,
        "rows": runs[0]["train_rows"],
        "seconds": round(statistics.median(r["seconds"] for r in runs), 3),
        "rows_per_s": round(statistics.median(r["train_rows_per_s"] for r in runs)),
        "runs_rows_per_s": [round(r["train_rows_per_s"]) for r in runs],
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "test_rmse": round(statistics.median(r["test_rmse"] for r in runs), 4),
        "world_size": runs[0]["world_size"],
        "backend": runs[0]["backend"],
        "epochs": epochs,
        "load_avg": [round(r["load_avg"], 2) for r in runs],
    }


def summarize(rows: list[dict]) -> list[str]:
    """The scaling lines ``bench.run`` prints, per batch size: per core, against one process
    with one thread, and Horovod against DDP."""
    lines = []
    for case in dict.fromkeys(r["case"] for r in rows if r["case"].startswith(CASE)):
        mine = {r["impl"]: r for r in rows if r["case"] == case}
        one = mine.get("1 process x 1 thread")
        for name, row in mine.items():
            if one and name != "1 process x 1 thread":
                lines.append(
                    f"{case}: {name}: {row['rows_per_s'] / one['rows_per_s']:.2f}x the rows/s of 1 process x 1 thread"
                )
        ddp = next((r for n, r in mine.items() if n.startswith("ddp")), None)
        for name, hvd in mine.items():
            if ddp and name.startswith("horovod"):
                label = name.split(" ")[0]
                lines.append(
                    f"{case}: {label} {hvd['rows_per_s'] / ddp['rows_per_s']:.2f}x the rows/s of ddp"
                )
    return lines
