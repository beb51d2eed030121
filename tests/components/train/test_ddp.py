"""Real multi-process DDP on CPU: torchrun with two gloo workers, through launch_local."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common import model_dir
from components.common.configspec import to_argv
from components.common.errors import UserError
from components.common.features import columns_from_table
from components.train.config import TrainConfig
from components.train.distributed import TIMEOUT_ENV
from components.train.launch import launch_local
from components.train.splits import discover, shard_plan
from tests.conftest import free_port


def config(splits, out, **overrides) -> TrainConfig:
    settings = {"epochs": 4, "batch_size": 64, "learning_rate": 3e-3, "seed": 1, "device": "cpu"}
    return TrainConfig(str(splits), str(out), **{**settings, **overrides})


@pytest.mark.slow
def test_two_process_torchrun_trains_the_same_kind_of_model(make_splits, tmp_path):
    splits = make_splits(shards=2)
    reports = tmp_path / "reports"
    # every setting off its default, so a flag the launcher drops shows in the ranks' config
    settings = {
        "weight_decay": 2e-4,
        "dropout": 0.01,
        "patience": 5,
        "min_delta": 1e-6,
        "hidden": (64, 32, 16),
    }
    cfg = config(splits, tmp_path / "ddp", **settings)
    two = launch_local(cfg, workers=2, report_dir=str(reports))
    one = launch_local(config(splits, tmp_path / "single", **settings), workers=1)
    # the ranks trained with exactly the given config (it reached them as torchrun arguments)
    assert two["config"] == cfg.to_dict()
    assert two["world_size"] == 2 and two["backend"] == "gloo" and one["world_size"] == 1
    # identical summary format, whatever the number of processes
    assert two.keys() == one.keys() and two["metrics"].keys() == one["metrics"].keys()
    assert [h.keys() for h in two["history"]] == [h.keys() for h in one["history"]]
    # every train row used once per epoch over the two shards; validation/test whole on rank 0
    assert two["rows"] == one["rows"] == {"train": 2400, "validation": 300, "test": 300}
    m = two["metrics"]
    assert m["test_rmse"] < 0.25 * m["baseline_rmse"]
    assert m["baseline_rmse"] == pytest.approx(one["metrics"]["baseline_rmse"], rel=1e-9)
    assert all(h["rows_per_s"] > 0 for h in two["history"])
    # the feature spec was fitted on the whole train split (all-reduced), not on rank 0's shard
    loaded = model_dir.load(tmp_path / "ddp")
    whole = columns_from_table(pq.read_table(splits / "train"))
    shard0 = columns_from_table(pq.read_table(splits / "train" / "part-00000.parquet"))
    for name in ("distance_km", "origin_lat"):
        assert loaded.spec.mean[name] == pytest.approx(float(whole[name].mean()), rel=1e-9)
        assert loaded.spec.std[name] == pytest.approx(float(whole[name].std()), rel=1e-9)
        assert loaded.spec.mean[name] != pytest.approx(float(shard0[name].mean()), rel=1e-9)
    assert loaded.meta["training"]["world_size"] == 2
    assert loaded.meta["config"] == cfg.to_dict()
    assert loaded.meta["metrics"]["test_rmse"] == pytest.approx(m["test_rmse"])
    # rank 0 wrote the report
    assert (reports / "report.html").read_text().count("data:image/png;base64,") == 3
    json.dumps(two)


@pytest.mark.slow
def test_worker_errors_come_back_as_one_line(make_splits, tmp_path):
    splits = make_splits(shards=2)
    part = splits / "validation" / "part-00001.parquet"
    pq.write_table(pq.read_table(part).drop_columns(["hour"]), part)
    with pytest.raises(UserError) as err:
        launch_local(config(splits, tmp_path / "m"), workers=2)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"distributed training (2 workers) failed: {part}: no column(s) ['hour']")
    assert not (tmp_path / "m").exists()


def test_more_workers_than_files_split_rows(make_splits, tmp_path):
    """One process per rank is simulated here: the plans of 3 ranks over 2 files cover each row once."""
    splits = make_splits(shards=2)
    found = discover(str(splits))
    rows = [f.rows for f in found.files["train"]]
    assert rows == [1200, 1200]
    plans = [shard_plan(rows, r, 3) for r in range(3)]
    assert plans == [[(0, 0, 800)], [(0, 800, 1200), (1, 0, 400)], [(1, 400, 1200)]]
    # contiguous ranges that, rank after rank, are every row of every file exactly once, in order
    covered = [(f, i) for plan in plans for f, a, b in plan for i in range(a, b)]
    assert covered == [(f, i) for f in range(2) for i in range(1200)]


# --- one rank fails: every rank stops with the error, none waits for the others ----------------------


def nan_fare(part, row: int) -> None:
    table = pq.read_table(part)
    fare = table.column("fare").to_numpy().copy()
    fare[row] = np.nan
    pq.write_table(table.set_column(table.schema.get_field_index("fare"), "fare", pa.array(fare)), part)


@pytest.mark.slow
def test_bad_rows_on_one_rank_fail_the_torchrun_launch_without_a_hang(make_splits, tmp_path):
    splits = make_splits(shards=2)  # rank 1 trains on train/part-00001 alone
    nan_fare(splits / "train" / "part-00001.parquet", 7)
    started = time.monotonic()
    with pytest.raises(UserError) as err:
        launch_local(config(splits, tmp_path / "m"), workers=2)
    assert time.monotonic() - started < 60
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        f"distributed training (2 workers) failed: {splits}/train (rank 1 of 2): "
        "column 'fare' has 1 missing or non-finite value(s)"
    )
    assert not (tmp_path / "m").exists()


def start_ranks(cfg: TrainConfig, world: int) -> list[subprocess.Popen]:
    """``world`` ranks as separate processes, as the pods of a PyTorchJob: unlike torchrun, nothing
    kills the other ranks when one exits."""
    root = Path(__file__).resolve().parents[3]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
        WORLD_SIZE=str(world),
        OMP_NUM_THREADS="1",
        **{TIMEOUT_ENV: "1"},
    )
    return [
        subprocess.Popen(
            [sys.executable, "-m", "components.train", *to_argv(cfg)],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]


def finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, list[str]]]:
    deadline = time.monotonic() + timeout
    out = []
    try:
        for proc in procs:
            _, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out.append((proc.returncode, stderr.strip().splitlines()))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bad_part", "failing", "phase", "problem"),
    [
        ("train/part-00001.parquet", 1, "loading its train shard", "train (rank 1 of 2): column 'fare'"),
        ("validation/part-00000.parquet", 0, "loading validation/test", "validation: column 'fare'"),
    ],
)
def test_one_failing_rank_stops_every_rank_with_its_message(
    make_splits, tmp_path, bad_part, failing, phase, problem
):
    splits = make_splits(shards=2)
    nan_fare(splits / bad_part, 3)
    own = f"{splits}/{problem} has 1 missing or non-finite value(s)"
    check_every_rank_stops(config(splits, tmp_path / "m"), failing, phase, own)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_rank_0_failing_to_write_the_model_stops_the_others(make_splits):
    # check_output (every rank) finds nothing there; rank 0 alone writes, and /proc refuses a directory
    output = f"/proc/fareflow-no-such-dir-{os.getpid()}/model"
    splits = make_splits(shards=2)
    check_every_rank_stops(
        config(splits, output, epochs=1, keep_checkpoints=0),
        0,
        "writing the model",
        f"{output}: cannot write the model there (",
    )


@pytest.mark.slow
def test_rank_0_failing_to_write_a_checkpoint_stops_the_others(make_splits):
    output = f"/proc/fareflow-no-such-dir-{os.getpid()}/model"
    splits = make_splits(shards=2)
    where = f"{output}.checkpoints/ckpt-0001-00000000.pt"
    check_every_rank_stops(
        config(splits, output, epochs=2), 0, "writing a checkpoint", f"{where}: cannot write the checkpoint ("
    )


def check_every_rank_stops(cfg: TrainConfig, failing: int, phase: str, own: str) -> None:
    """Two ranks as separate processes: both exit 2 within 60 s, each with one error line -- the
    failing rank its own, the other one naming the failing rank, the phase and the same error."""
    started = time.monotonic()
    results = finish(start_ranks(cfg, 2), timeout=60)
    assert time.monotonic() - started < 60
    for rank, (code, lines) in enumerate(results):
        errors = [line for line in lines if "error:" in line or "Error" in line]
        assert code == 2, (rank, lines)
        assert len(errors) == 1, (rank, lines)
        expected = f"fareflow train: error: {own}"
        if rank != failing:
            expected = f"fareflow train: error: rank {failing} of 2 failed {phase}: {own}"
        assert errors[0].startswith(expected), (rank, errors[0], expected)


_JOIN_AND_REDUCE = """
import sys
from components.train.distributed import _all_reduce, end_process_group, start_process_group
d = start_process_group("cpu")
total = _all_reduce(d, [d.rank + 1.0])
print("sum", float(total[0]), flush=True)
end_process_group(d)
"""


def test_a_recreated_elastic_pod_joins_a_restarted_peer_without_a_shared_store(tmp_path):
    """A PyTorchJob's elastic pods run torchrun without the shared rendezvous store
    (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1): the surviving pod's ranks are in restart 1, the
    recreated pod's fresh torchrun in restart 0, and each round has a new store -- both must meet
    in it unprefixed (a prefix for restart 1 alone left the two waiting for each other)."""
    port = free_port()
    procs = []
    for rank, restart in ((0, 1), (1, 0)):
        env = {
            **os.environ,
            "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
            "TORCHELASTIC_RESTART_COUNT": str(restart), "TORCHELASTIC_USE_AGENT_STORE": "False",
            TIMEOUT_ENV: "1", "OMP_NUM_THREADS": "1",
        }  # fmt: skip
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _JOIN_AND_REDUCE],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("the two ranks never formed one group")
        assert p.returncode == 0, err.decode()[-2000:]
        outs.append(out.decode())
    assert all("sum 3.0" in out for out in outs), outs
