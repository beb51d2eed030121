"""Train step benchmark: ``python -m components.train`` vs the textbook PyTorch loop.

Both train on the same splits, built once per ``rows`` under ``workdir`` in this process
with the components' own functions (generate -> ingest -> quality -> sample, as
``pipelines/taxi_fare.py`` chains them; automatic sample size, 4 shards per split). The
generated rows are capped at ``min(rows, 1_000_000)`` (``ROWS_CAP``) so ``make bench`` at
2 million rows stays a few minutes (300,000 generated rows gave 141,464 train rows with the
automatic sample size). What is compared is rows per second of the training loop.

Cases (each run in its own child process via ``bench.common.measure``):

- ``train`` / fareflow: the CLI as users run it (one process, default model
  128,64,32 SiLU, ``--epochs EPOCHS --patience 0 --batch-size 1024``); the training
  throughput is the summary JSON's ``metrics.rows_per_s`` (train rows processed per second
  of the epoch loop, validation passes excluded).
- ``train`` / torch-dataloader: a plain script (``BASELINE``, run as ``python -c``) reading
  ``train/`` and ``validation/`` with pyarrow, encoding with the same
  ``features.FeatureSpec``/``encode`` and label standardisation, building the same
  ``model.build(Architecture())`` and training the same epochs with
  ``DataLoader(TensorDataset(x, y), batch_size=1024, shuffle=True)`` + AdamW + MSE;
  its throughput is rows processed / seconds of its epoch loop, and it evaluates the
  validation RMSE once at the end.

Threads: both children run with ``OMP_NUM_THREADS=THREADS`` (1 by default; ``threads=0``
leaves torch's default, one intra-op thread per core). A 128-64-32 MLP at batch 1024 gains
little from intra-op threads, and on a shared machine torch's spinning OpenMP threads make
the figures a measure of the neighbours' load: on a 2-core machine with a load average
above 3, single runs with 2 threads were 6-14x slower than with one and swung run to run,
for both implementations alike. The thread count is recorded (``threads``).

The two run ``repeat`` times, alternating (a shared machine's load hits both alike); a
record holds the median wall seconds (every run listed), the median training rows/s
(``rows_per_s``, so ``bench.run`` prints the throughput ratio), the highest peak RSS and
each one's validation RMSE. The run fails if fareflow's validation RMSE is worse than 1.5x
the baseline's: speed must not be bought with a broken model.

    python -m bench.run --suite bench.bench_train --rows 300000 [--repeat 3] [--workdir DIR]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
from pathlib import Path

from bench.common import measure, median_run, python_cmd

ROWS_CAP = 1_000_000
MONTHS = "2015-01:2015-06"
SHARDS = 4
EPOCHS = 3
BATCH_SIZE = 1024
THREADS = 1  # OMP_NUM_THREADS for both children (0: torch's default); see the docstring
RMSE_TOLERANCE = 1.5  # fareflow's validation RMSE may be at most this times the baseline's

BASELINE = """
import json, sys, time
import numpy as np, pyarrow.parquet as pq, torch
from components.common import contract
from components.common.features import FeatureSpec, columns_from_table, encode
from components.common.model_dir import Architecture, build

splits, epochs, batch_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cols = [contract.LABEL, *contract.FEATURES]
train = pq.read_table(f"{splits}/train", columns=cols)
val = pq.read_table(f"{splits}/validation", columns=cols)
train_cols = columns_from_table(train)
spec = FeatureSpec.fit(train_cols)
y_raw = train.column(contract.LABEL).to_numpy().astype(np.float64)
mean, std = float(y_raw.mean()), float(y_raw.std())
x = torch.as_tensor(encode(train_cols, spec))
y = torch.as_tensor(((y_raw - mean) / std).astype(np.float32))
torch.manual_seed(0)
model = build(Architecture())
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
loss_fn = torch.nn.MSELoss()
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=True
)
seen, t0 = 0, time.perf_counter()
for _ in range(epochs):
    model.train()
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb).squeeze(-1), yb)
        loss.backward()
        optimizer.step()
        seen += len(xb)
seconds = time.perf_counter() - t0
model.eval()
with torch.no_grad():
    pred = model(torch.as_tensor(encode(columns_from_table(val), spec))).squeeze(-1).double().numpy()
y_val = val.column(contract.LABEL).to_numpy().astype(np.float64)
rmse = float(np.sqrt(np.mean((pred * std + mean - y_val) ** 2)))
print(json.dumps({"rows": len(y_raw), "rows_per_s": seen / seconds, "loop_s": seconds, "validation_rmse": rmse}))
"""


def splits(workdir: Path, rows: int) -> Path:
    """generate -> ingest -> quality -> sample once per ``rows`` (already capped); reused."""
    from components.generate import core as generate_core
    from components.ingest import core as ingest_core
    from components.quality import core as quality_core
    from components.sample import core as sample_core

    base = workdir / f"train-{rows}"
    out = base / "splits"
    if (out / "_SUCCESS").exists():
        return out
    src, raw, clean, stats = base / "src", base / "raw", base / "clean", base / "stats"
    if not (src / "truth.json").exists():
        shutil.rmtree(src, ignore_errors=True)
        generate_core.run(generate_core.GenerateConfig(output_uri=str(src), rows=rows, months=MONTHS, seed=0))
    for path in (raw, clean, base / "clean_rejected", stats, out):
        shutil.rmtree(path, ignore_errors=True)
    ingest_core.run(ingest_core.IngestConfig(source_uri=str(src), output_uri=str(raw), progress=False))
    quality_core.run(
        quality_core.QualityConfig(input_uri=str(raw), output_uri=str(clean), stats_uri=str(stats))
    )
    result = sample_core.run(
        sample_core.SampleConfig(
            input_uri=str(clean), population_stats_uri=str(stats), output_uri=str(out), shards=SHARDS
        ),
        log=lambda _m: None,
    )
    if not result.passed:
        raise sample_core.SampleCheckFailed(result.failure_message())
    return out


def _fareflow(split_dir: Path, out: Path, epochs: int) -> list[str]:
    return python_cmd(
        "-m", "components.train", "--splits", str(split_dir), "--output", str(out / "model"),
        "--epochs", str(epochs), "--batch-size", str(BATCH_SIZE), "--patience", "0",
        "--summary-json", str(out / "summary.json"),
    )  # fmt: skip


def _row(impl: str, runs: list[dict], threads: int) -> dict:
    summary = median_run(runs)
    return {
        "case": "train",
        "impl": impl,
        "rows": runs[0]["train_rows"],
        "seconds": round(summary["seconds"], 3),
        "rows_per_s": round(statistics.median(r["train_rows_per_s"] for r in runs)),
        "cpu_s": round(summary["cpu_s"], 3),
        "peak_rss_mb": round(summary["peak_rss_mb"], 1),
        "runs_s": summary["runs_s"],
        "runs_rows_per_s": [round(r["train_rows_per_s"]) for r in runs],
        "validation_rmse": round(statistics.median(r["validation_rmse"] for r in runs), 4),
        "epochs": runs[0]["epochs"],
        "threads": threads,  # OMP_NUM_THREADS; 0 = torch's default
        "load_avg": round(os.getloadavg()[0], 2),
    }


def run(
    workdir: Path, rows: int, repeat: int = 3, epochs: int = EPOCHS, threads: int = THREADS
) -> list[dict]:
    """fareflow and the DataLoader baseline on the same splits, ``repeat`` times each,
    alternating, both with ``OMP_NUM_THREADS=threads`` (0: torch's default); medians reported.
    Raises if fareflow's validation RMSE is worse than ``RMSE_TOLERANCE`` times the baseline's."""
    workdir.mkdir(parents=True, exist_ok=True)
    split_dir = splits(workdir, min(rows, ROWS_CAP))
    out = workdir / "train-out"
    cmds = {
        "fareflow": _fareflow(split_dir, out, epochs),
        "torch-dataloader": python_cmd("-c", BASELINE, str(split_dir), str(epochs), str(BATCH_SIZE)),
    }
    env = {"OMP_NUM_THREADS": str(threads)} if threads else None
    runs: dict[str, list[dict]] = {impl: [] for impl in cmds}
    for _ in range(repeat):
        for impl, cmd in cmds.items():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            result = measure(cmd, env=env)
            result["epochs"] = epochs
            if impl == "fareflow":
                summary = json.loads((out / "summary.json").read_text())
                result.update(
                    train_rows=summary["rows"]["train"],
                    train_rows_per_s=summary["metrics"]["rows_per_s"],
                    validation_rmse=summary["metrics"]["validation_rmse"],
                )
            else:
                printed = json.loads(result["stdout"].strip().splitlines()[-1])
                result.update(
                    train_rows=printed["rows"],
                    train_rows_per_s=printed["rows_per_s"],
                    validation_rmse=printed["validation_rmse"],
                )
            runs[impl].append(result)
    shutil.rmtree(out, ignore_errors=True)
    results = [_row(impl, r, threads) for impl, r in runs.items()]
    ours, base = results
    if ours["rows"] != base["rows"]:
        raise RuntimeError(f"fareflow trained on {ours['rows']} rows, the baseline on {base['rows']}")
    if not ours["validation_rmse"] <= RMSE_TOLERANCE * base["validation_rmse"]:
        raise RuntimeError(
            f"fareflow's validation RMSE {ours['validation_rmse']} is worse than {RMSE_TOLERANCE}x "
            f"the torch-dataloader baseline's {base['validation_rmse']}"
        )
    return results
