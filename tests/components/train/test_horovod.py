"""Real multi-process Horovod on CPU: horovodrun with two gloo ranks, through launch_local, side by
side with DDP on the same data, seed and settings (needs Horovod in the venv: `make horovod`)."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

from components.common import model_dir
from components.common.errors import UserError
from components.common.features import columns_from_table
from components.train import distributed, launch
from components.train.config import TrainConfig
from components.train.launch import launch_local, worker_error

from .test_ddp import nan_fare


def config(splits, out, **overrides) -> TrainConfig:
    settings = {"epochs": 4, "batch_size": 64, "learning_rate": 3e-3, "seed": 1, "device": "cpu"}
    return TrainConfig(str(splits), str(out), **{**settings, **overrides})


@pytest.mark.slow
def test_two_horovod_ranks_train_a_model_as_good_as_ddp(make_splits, tmp_path, capfd):
    splits = make_splits(shards=2)
    settings = {"weight_decay": 2e-4, "dropout": 0.01, "patience": 5, "hidden": (64, 32, 16)}
    hvd_cfg = config(splits, tmp_path / "hvd", backend="horovod", **settings)
    hvd = launch_local(hvd_cfg, workers=2)
    ranks_output = capfd.readouterr().err
    ddp = launch_local(config(splits, tmp_path / "ddp", **settings), workers=2)
    # the ranks trained with exactly the given config (it reached them as horovodrun arguments)
    assert hvd["config"] == hvd_cfg.to_dict()
    # mpirun where this Horovod has MPI (its ranks' lines unprefixed), else horovodrun's gloo
    transport = f"horovod-{launch.horovod_transport()}"
    prefix = "[0]<stderr>:" if transport == "horovod-gloo" else ""
    assert hvd["world_size"] == 2 and hvd["backend"] == transport and ddp["backend"] == "gloo"
    assert f"{prefix}train: Horovod: 2 processes ({transport} on cpu)" in ranks_output
    # the same rows, the same balanced shards: every train row once per epoch
    assert hvd["rows"] == ddp["rows"] == {"train": 2400, "validation": 300, "test": 300}
    assert hvd.keys() == ddp.keys() and hvd["metrics"].keys() == ddp["metrics"].keys()
    # the model quality of DDP (the bound: within 2 %), and far better than the mean
    h, d = hvd["metrics"], ddp["metrics"]
    assert h["test_rmse"] == pytest.approx(d["test_rmse"], rel=0.02)
    assert h["test_rmse"] < 0.25 * h["baseline_rmse"]
    # the feature spec was fitted on the whole train split (all-reduced over Horovod)
    loaded = model_dir.load(tmp_path / "hvd")
    whole = columns_from_table(pq.read_table(splits / "train"))
    assert loaded.spec.mean["distance_km"] == pytest.approx(float(whole["distance_km"].mean()), rel=1e-9)
    assert loaded.spec.std["distance_km"] == pytest.approx(float(whole["distance_km"].std()), rel=1e-9)
    # rank 0 alone wrote the same model directory as DDP's, saying who trained it
    assert loaded.meta["training"]["framework"] == "horovod"
    assert loaded.meta["training"]["backend"] == transport
    assert loaded.meta["training"]["world_size"] == 2
    assert sorted(p.name for p in (tmp_path / "hvd").iterdir()) == sorted(
        p.name for p in (tmp_path / "ddp").iterdir()
    )
    assert ranks_output.count("model -> ") == 1


@pytest.mark.slow
def test_a_failing_horovod_rank_stops_every_rank_with_one_line(make_splits, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv(launch.TRANSPORT_ENV, "gloo")  # horovodrun's "[rank]<stderr>:" prefixes
    splits = make_splits(shards=2)  # rank 1 trains on train/part-00001 alone
    nan_fare(splits / "train" / "part-00001.parquet", 7)
    with pytest.raises(UserError) as err:
        launch_local(config(splits, tmp_path / "m", backend="horovod"), workers=2)
    own = f"{splits}/train (rank 1 of 2): column 'fare' has 1 missing or non-finite value(s)"
    assert str(err.value) == f"distributed training (2 workers) failed: {own}"
    ranks = capfd.readouterr().err
    # every rank stopped with the one line (rank 0 names rank 1's error), none waited for the other
    assert f"[1]<stderr>:fareflow train: error: {own}" in ranks
    assert f"[0]<stderr>:fareflow train: error: rank 1 of 2 failed loading its train shard: {own}" in ranks
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_horovod_resumes_from_its_checkpoint(make_splits, tmp_path, capfd):
    splits = make_splits(shards=2)
    first = launch_local(config(splits, tmp_path / "m", backend="horovod", epochs=2), workers=2)
    assert len(first["history"]) == 2
    capfd.readouterr()
    more = launch_local(config(splits, tmp_path / "m", backend="horovod", epochs=3, patience=0), workers=2)
    assert "resumed from epoch 2" in capfd.readouterr().err
    # the first two epochs are the checkpoint's; only the third was trained again
    assert more["history"][:2] == first["history"] and len(more["history"]) == 3


def test_max_restarts_is_torchrun_only(make_splits, tmp_path):
    with pytest.raises(UserError, match="--max-restarts: only with --backend ddp"):
        launch_local(config(make_splits(), tmp_path / "m", backend="horovod"), workers=2, max_restarts=1)


@pytest.mark.parametrize(
    ("env", "backend", "message"),
    [
        ({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"}, "ddp", "started by horovodrun/mpirun"),
        ({"HOROVOD_RANK": "1", "HOROVOD_SIZE": "2"}, "ddp", "needs --backend horovod"),
        (
            {"RANK": "0", "WORLD_SIZE": "2"},
            "horovod",
            "started by torchrun (a PyTorchJob), which needs --backend ddp",
        ),
    ],
)
def test_a_rank_of_the_other_launcher_fails_at_once(monkeypatch, env, backend, message):
    for name in ("RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "HOROVOD_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert distributed.launched_as_rank()
    with pytest.raises(UserError, match=re.escape(message)):
        distributed.start_process_group("cpu", backend)


def test_mpirun_variables_make_a_horovod_rank(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "HOROVOD_RANK", "HOROVOD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert distributed._launcher_env("horovod") == (
        "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
    )  # fmt: skip
    assert distributed._launcher_env("ddp") is None


def test_worker_error_prefers_the_ranks_own_line_then_a_crash():
    own = "[1]<stderr>:fareflow train: error: /x/train (rank 1 of 2): column 'fare' is bad"
    peer = "[0]<stderr>:fareflow train: error: rank 1 of 2 failed loading its train shard: ..."
    assert worker_error([peer, own], 1) == "/x/train (rank 1 of 2): column 'fare' is bad"
    crash = [
        "[1]<stderr>:Traceback (most recent call last):",
        "[1]<stderr>:TypeError: zero_grad() got an unexpected keyword argument 'set_to_none'",
        "RuntimeError: Horovod detected that one or more processes exited with non-zero status",
    ]
    assert worker_error(crash, 1) == "TypeError: zero_grad() got an unexpected keyword argument 'set_to_none'"
    assert worker_error(["no error here"], 137) == "exit status 137"


# Run on each of two horovodrun ranks: after backward, before step(), the optimizer that the
# trainer builds holds one pending all-reduce for the whole model (Horovod 0.28's _handles: a
# tuple of parameters for a grouped submission, a parameter for an ungrouped one), and step()
# averages the ranks' gradients (rank r's loss is (r + 1) x the sum of the outputs). The
# all-reduce runs in place and may finish any time after backward submits it (under load it
# had before the gradient could be read), so the rank's own gradients come from a copy of the
# module without the optimizer's hooks.
_GROUPED_SCRIPT = """
import copy, torch, horovod.torch as hvd
from components.common import model_dir
from components.train.distributed import horovod_optimizer
hvd.init()
torch.manual_seed(0)
module = model_dir.build(model_dir.Architecture(hidden=(8, 4), dropout=0.0))
plain = copy.deepcopy(module)
x = torch.ones(3, len(module[0].weight[0]))
((hvd.rank() + 1) * plain(x).sum()).backward()
opt = horovod_optimizer(torch.optim.SGD(module.parameters(), lr=1.0), module)
((hvd.rank() + 1) * module(x).sum()).backward()
keys = list(opt._handles)
params = list(module.parameters())
assert len(keys) == 1 and isinstance(keys[0], tuple) and set(keys[0]) == set(params), keys
opt.synchronize()
with opt.skip_synchronize():
    opt.step()
for p, own in zip(params, plain.parameters()):  # the mean over ranks 0 and 1: own / (r + 1) x 1.5
    assert torch.allclose(p.grad, own.grad / (hvd.rank() + 1) * 1.5), (own.grad, p.grad)
print(f"rank {hvd.rank()}: one grouped all-reduce of {len(keys[0])} tensors")
hvd.shutdown()
"""


@pytest.mark.slow
def test_the_horovod_optimizer_reduces_all_gradients_in_one_group(tmp_path):
    import os
    import subprocess
    import sys

    from components.train.launch import _launcher

    script = tmp_path / "grouped.py"
    script.write_text(_GROUPED_SCRIPT)
    launcher = _launcher("horovod", 2, 0)[:-1]  # horovodrun ... python (no -m)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for rank in (0, 1):
        assert f"rank {rank}: one grouped all-reduce of 6 tensors" in done.stdout
    assert sys.executable in launcher


@pytest.fixture
def horovod_here(monkeypatch):
    """launch's view of this machine's Horovod: ``set(mpi_built, mpirun)`` (no real Horovod asked)."""
    from components.train import launch

    monkeypatch.delenv(launch.TRANSPORT_ENV, raising=False)
    monkeypatch.setattr(launch, "_horovodrun", lambda: "/venv/bin/horovodrun")

    def set_(mpi_built: bool, mpirun: bool) -> None:
        monkeypatch.setattr(launch, "_horovod_mpi_built", lambda: mpi_built)
        monkeypatch.setattr(
            "shutil.which", lambda name: "/usr/bin/mpirun" if mpirun and name == "mpirun" else None
        )

    return set_


def test_horovod_with_mpi_launches_through_mpirun_else_horovodrun_gloo(horovod_here, monkeypatch):
    import sys

    from components.train import launch

    horovod_here(mpi_built=True, mpirun=True)
    root = ["--allow-run-as-root"] if launch.os.geteuid() == 0 else []
    assert launch.horovod_transport() == "mpi"
    assert launch._launcher("horovod", 3, 0) == ["/usr/bin/mpirun", *root, "-np", "3", sys.executable, "-m"]
    monkeypatch.setenv(launch.TRANSPORT_ENV, "gloo")  # asked for: gloo even where MPI is built
    gloo = ["/venv/bin/horovodrun", "-np", "3", "-H", "localhost:3", "--gloo", sys.executable, "-m"]
    assert launch.horovod_transport() == "gloo" and launch._launcher("horovod", 3, 0) == gloo
    monkeypatch.delenv(launch.TRANSPORT_ENV)
    for built, mpirun in ((False, True), (True, False)):
        horovod_here(mpi_built=built, mpirun=mpirun)
        assert launch.horovod_transport() == "gloo" and launch._launcher("horovod", 3, 0) == gloo


@pytest.mark.parametrize(
    ("built", "mpirun", "value", "message"),
    [
        (False, True, "mpi", "FAREFLOW_HOROVOD_TRANSPORT=mpi: this Horovod was built without MPI"),
        (True, False, "mpi", "FAREFLOW_HOROVOD_TRANSPORT=mpi: no mpirun on PATH"),
        (True, True, "nccl", "expected auto, mpi or gloo, got 'nccl'"),
    ],
)
def test_an_impossible_horovod_transport_is_refused(horovod_here, monkeypatch, built, mpirun, value, message):
    from components.train import launch

    horovod_here(mpi_built=built, mpirun=mpirun)
    monkeypatch.setenv(launch.TRANSPORT_ENV, value)
    with pytest.raises(UserError, match=re.escape(message)):
        launch.horovod_transport()


@pytest.mark.parametrize(
    ("env", "controller", "cycle"),
    [
        ({"HOROVOD_CONTROLLER": "gloo"}, "gloo", 1.0),
        ({"HOROVOD_GLOO_RENDEZVOUS_ADDR": "1.2.3.4"}, "gloo", 1.0),
        ({}, "mpi", 0.2),
    ],
)
def test_the_horovod_controller_is_read_from_the_launchers_variables(monkeypatch, env, controller, cycle):
    for name in ("HOROVOD_CONTROLLER", "HOROVOD_GLOO_RENDEZVOUS_ADDR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert distributed.horovod_controller() == controller
    assert distributed.HOROVOD_CYCLE_TIME_MS[controller] == cycle
