"""Checkpoints and resume: a run killed with -9 or stopped by SIGTERM (one process, or one rank
of two under torchrun) continues from its newest checkpoint and ends where an uninterrupted
run ends; corrupt or incompatible checkpoints are refused in one line; a finished run is not
trained again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.common import model_dir
from components.common.configspec import to_argv
from components.common.errors import UserError
from components.train import checkpoint, core
from components.train.__main__ import main
from components.train.config import TrainConfig
from components.train.launch import launch_local

ROOT = Path(__file__).resolve().parents[3]


def config(splits, out, **overrides) -> TrainConfig:
    settings = {
        "epochs": 4,
        "batch_size": 32,
        "learning_rate": 3e-3,
        "seed": 3,
        "device": "cpu",
        "patience": 0,
    }
    return TrainConfig(str(splits), str(out), **{**settings, **overrides})


def quiet(_m: str) -> None:
    pass


def env() -> dict:
    out = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), out.get("PYTHONPATH", "")) if p)
    out["OMP_NUM_THREADS"] = "1"
    return out


def start(cfg: TrainConfig, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "components.train", *to_argv(cfg), *extra],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def start_stopping_at(
    cfg: TrainConfig, epoch: int, step: int, *extra: str, signame: str = "STOP", rank: str = "-"
) -> subprocess.Popen:
    """The CLI run through stop_at_step.py: it signals itself after ``step`` batches of ``epoch``
    (SIGSTOP: it waits there for the test, so what the test sends lands at that point)."""
    script = str(Path(__file__).with_name("stop_at_step.py"))
    return subprocess.Popen(
        [sys.executable, script, str(epoch), str(step), signame, rank, *to_argv(cfg), *extra],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_stopped(proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until ``proc`` has stopped itself (SIGSTOP); fails with its output if it exited instead or
    is still running after ``timeout`` (generous: a loaded machine; a hang still fails)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status = os.waitpid(proc.pid, os.WUNTRACED | os.WNOHANG)
        if pid and os.WIFSTOPPED(status):
            return
        if pid:  # exited: reaped here, so record what Popen can no longer see
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise AssertionError(f"exited {proc.returncode} instead of stopping: {proc.stdout.read()}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"not stopped after {timeout} s: {proc.stdout.read()}")
        time.sleep(0.05)


def run_cli(cfg: TrainConfig, *extra: str, timeout: float = 180) -> tuple[int, str]:
    proc = start(cfg, *extra)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def close(a: dict, b: dict, rel: float = 0.01) -> None:
    """Every error metric of the resumed run within ``rel`` of the uninterrupted one."""
    for key in ("train_rmse", "validation_rmse", "test_rmse", "test_mae"):
        assert a[key] == pytest.approx(b[key], rel=rel), key


@pytest.fixture(scope="module")
def long_splits(tmp_path_factory) -> Path:
    """Enough rows (batch 32: ~500 steps an epoch) that a signal lands inside an epoch."""
    from tests.components.train.conftest import trips, write_splits

    return write_splits(trips(20000, 4), tmp_path_factory.mktemp("ckpt") / "splits", 2, True)


@pytest.fixture(scope="module")
def uninterrupted(long_splits, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("whole") / "m"
    return core.run(config(long_splits, out), log=quiet, progress=False).metrics


@pytest.mark.slow
def test_kill_9_after_epoch_2_resumes_and_ends_as_an_uninterrupted_run(long_splits, uninterrupted, tmp_path):
    cfg = config(long_splits, tmp_path / "m")
    ckpts = tmp_path / "m.checkpoints"
    proc = start_stopping_at(cfg, 3, 100)  # 100 batches into epoch 3 (of about 500)
    wait_stopped(proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "m" / "model.json").exists()
    newest = checkpoint.listing(str(ckpts))[-1]
    assert (newest.epoch, newest.step) == (2, 0)  # the end of epoch 2's: a kill writes none
    assert names(ckpts) == [checkpoint.file_name(1, 0), checkpoint.file_name(2, 0)]  # no temporary file

    code, out = run_cli(cfg)
    assert code == 0, out
    resumed = [line for line in out.splitlines() if "resumed from" in line]
    assert resumed == [f"train: resumed from epoch {newest.epoch} ({newest.uri})"]
    trained = [line for line in out.splitlines() if line.startswith("train: epoch ")]
    assert [line.split()[2] for line in trained] == [f"{e}/4:" for e in range(newest.epoch + 1, 5)]
    meta = model_dir.load(tmp_path / "m").meta
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3, 4]
    close(meta["metrics"], uninterrupted)
    # the last K (2) are kept, the newest the finished run's
    assert names(ckpts) == [checkpoint.file_name(3, 0), checkpoint.file_name(4, 0)]


@pytest.mark.slow
def test_sigterm_mid_epoch_writes_a_checkpoint_then_resumes_from_that_step(
    long_splits, uninterrupted, tmp_path
):
    cfg = config(long_splits, tmp_path / "m")
    ckpts = tmp_path / "m.checkpoints"
    proc = start_stopping_at(cfg, 2, 100)  # 100 batches into epoch 2 (of about 500)
    wait_stopped(proc)
    os.kill(proc.pid, signal.SIGTERM)  # pending while it is stopped: handled as it goes on
    os.kill(proc.pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    errors = [line for line in out.splitlines() if "error:" in line]
    assert len(errors) == 1, out
    newest = checkpoint.listing(str(ckpts))[-1]
    assert (newest.epoch, newest.step) == (1, 100), names(ckpts)  # stopped before batch 101
    assert errors[0] == (
        f"fareflow train: error: stopped by SIGTERM after epoch 1, step {newest.step} of epoch 2; "
        f"checkpoint {newest.uri}; run the same command to resume"
    )
    state = checkpoint.read(newest, str(ckpts))
    assert state["step"] == newest.step and len(state["history"]) == 1 and not state["finished"]

    code, out = run_cli(cfg)
    assert code == 0, out
    assert f"train: resumed from epoch 1, step {newest.step} of epoch 2 ({newest.uri})" in out
    meta = model_dir.load(tmp_path / "m").meta
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3, 4]
    close(meta["metrics"], uninterrupted)


def test_a_finished_run_started_again_does_not_retrain(splits, tmp_path):
    cfg = config(splits, tmp_path / "m", epochs=3)
    first = core.run(cfg, log=quiet, progress=False)
    lines: list[str] = []
    again = core.run(cfg, log=lines.append, progress=False)
    uri = f"{tmp_path}/m.checkpoints/{checkpoint.file_name(3, 0)}"
    assert lines[0] == f"resumed from epoch 3 ({uri})"
    assert lines[1] == "training had finished at epoch 3; not retraining (model from the checkpoint)"
    assert not any(line.startswith("epoch ") for line in lines)
    assert again.history == first.history and again.metrics == first.metrics
    # more epochs continue the finished run instead of starting over
    lines.clear()
    more = core.run(config(splits, tmp_path / "m", epochs=4), log=lines.append, progress=False)
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == ["epoch 4/4"]
    assert more.history[:3] == first.history and len(more.history) == 4


def test_early_stopped_run_is_finished_too(splits, tmp_path):
    cfg = config(splits, tmp_path / "m", epochs=30, patience=1, min_delta=10.0)  # stops after epoch 2
    first = core.run(cfg, log=quiet, progress=False)
    assert first.stopped_early and len(first.history) == 2
    lines: list[str] = []
    again = core.run(cfg, log=lines.append, progress=False)
    assert "not retraining" in lines[1] and again.history == first.history


def test_corrupt_or_incompatible_checkpoints_are_refused_in_one_line_unless_no_resume(
    splits, make_splits, tmp_path, capsys
):
    cfg = config(splits, tmp_path / "m", epochs=3, keep_checkpoints=3)
    core.run(cfg, log=quiet, progress=False)
    ckpts = tmp_path / "m.checkpoints"
    (ckpts / checkpoint.file_name(3, 0)).unlink()  # as if killed during epoch 3: unfinished
    newest = ckpts / checkpoint.file_name(2, 0)
    good = newest.read_bytes()

    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    newest.write_bytes(bytes(flipped))
    with pytest.raises(UserError) as err:
        core.run(config(splits, tmp_path / "m", epochs=3), log=quiet, progress=False)
    assert str(err.value).startswith(f"{newest}: corrupt checkpoint (checksum mismatch, ")
    assert str(err.value).endswith("; pass --no-resume to start over")

    newest.write_bytes(good[: len(good) // 3])  # truncated
    with pytest.raises(UserError, match=r"ckpt-0002-00000000\.pt: corrupt checkpoint"):
        core.run(config(splits, tmp_path / "m", epochs=3), log=quiet, progress=False)
    newest.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match=r"ckpt-0002-00000000\.pt: not a fareflow checkpoint"):
        core.run(config(splits, tmp_path / "m", epochs=3), log=quiet, progress=False)

    newest.write_bytes(good)
    with pytest.raises(UserError) as err:  # another architecture
        core.run(config(splits, tmp_path / "m", epochs=3, hidden=(16, 8)), log=quiet, progress=False)
    assert str(err.value) == (
        f"{newest}: incompatible checkpoint (architecture: checkpoint {{'hidden': [128, 64, 32], 'dropout': 0.0}}, "
        "now {'hidden': [16, 8], 'dropout': 0.0}); pass --no-resume to start over or give another --checkpoint-dir"
    )
    other = make_splits(n=2000, name="other")  # other data, same file names
    with pytest.raises(UserError, match=r"incompatible checkpoint \(data: checkpoint"):
        core.run(
            config(other, tmp_path / "m", epochs=3, checkpoint_uri=str(ckpts)), log=quiet, progress=False
        )

    # through the CLI: one line naming the file, exit status 2; --no-resume starts over
    newest.write_bytes(bytes(flipped))
    argv = to_argv(config(splits, tmp_path / "m", epochs=3))
    capsys.readouterr()
    assert main(argv) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith(f"fareflow train: error: {newest}: corrupt")
    assert main([*argv, "--no-resume"]) == 0
    assert names(ckpts) == [checkpoint.file_name(2, 0), checkpoint.file_name(3, 0)]
    assert checkpoint.read(checkpoint.listing(str(ckpts))[-1], str(ckpts))["epoch"] == 3


def test_a_finished_runs_checkpoints_do_not_block_a_new_run_with_other_settings(splits, tmp_path):
    core.run(config(splits, tmp_path / "m", epochs=1), log=quiet, progress=False)
    lines: list[str] = []
    core.run(config(splits, tmp_path / "m", epochs=1, hidden=(8,)), log=lines.append, progress=False)
    assert lines[0].endswith(
        "ckpt-0001-00000000.pt: a finished run with other settings (architecture: checkpoint "
        "{'hidden': [128, 64, 32], 'dropout': 0.0}, now {'hidden': [8], 'dropout': 0.0}); training anew"
    )
    assert model_dir.load(tmp_path / "m").architecture.hidden == (8,)
    state = checkpoint.read(
        checkpoint.listing(str(tmp_path / "m.checkpoints"))[-1], str(tmp_path / "m.checkpoints")
    )
    assert state["fingerprint"]["architecture"]["hidden"] == [8]


def test_keep_last_k_and_zero_writes_none(splits, tmp_path):
    core.run(config(splits, tmp_path / "a", epochs=4, keep_checkpoints=3), log=quiet, progress=False)
    assert names(tmp_path / "a.checkpoints") == [checkpoint.file_name(e, 0) for e in (2, 3, 4)]
    core.run(config(splits, tmp_path / "b", epochs=2, keep_checkpoints=0), log=quiet, progress=False)
    assert not (tmp_path / "b.checkpoints").exists()
    core.run(
        config(splits, tmp_path / "c", epochs=1, checkpoint_uri=str(tmp_path / "elsewhere")),
        log=quiet,
        progress=False,
    )
    assert names(tmp_path / "elsewhere") == [checkpoint.file_name(1, 0)]
    with pytest.raises(UserError, match="--keep-checkpoints: expected 0"):
        core.run(config(splits, tmp_path / "d", keep_checkpoints=-1), log=quiet, progress=False)


def test_checkpoints_on_s3_resume(splits, s3, tmp_path):
    bucket = s3.bucket("fareflow")
    cfg = config(splits, tmp_path / "m", epochs=2, checkpoint_uri="s3://fareflow/ckpt/run")
    first = core.run(cfg, log=quiet, progress=False)
    assert [k for k in s3.keys(bucket, "ckpt/") if not k.endswith("/")] == [
        "ckpt/run/ckpt-0001-00000000.pt",
        "ckpt/run/ckpt-0002-00000000.pt",
    ]
    lines: list[str] = []
    more = core.run(
        config(splits, tmp_path / "m", epochs=3, checkpoint_uri=cfg.checkpoint_uri), log=lines.append
    )
    assert lines[0] == "resumed from epoch 2 (s3://fareflow/ckpt/run/ckpt-0002-00000000.pt)"
    assert more.history[:2] == first.history
    assert [k for k in s3.keys(bucket, "ckpt/") if not k.endswith("/")] == [
        "ckpt/run/ckpt-0002-00000000.pt",
        "ckpt/run/ckpt-0003-00000000.pt",
    ]


@pytest.mark.slow
def test_killing_one_of_two_ddp_ranks_mid_epoch_restarts_the_group_from_the_checkpoint(long_splits, tmp_path):
    whole = launch_local(config(long_splits, tmp_path / "whole"), workers=2, log=quiet)
    cfg = config(long_splits, tmp_path / "m")
    ckpts = tmp_path / "m.checkpoints"
    # rank 1 kills itself (-9) 50 batches into epoch 3 (of about 500): the group's
    # newest checkpoint is epoch 2's, since rank 0 cannot write one without rank 1
    proc = start_stopping_at(cfg, 3, 50, "--workers", "2", "--max-restarts", "1", signame="KILL", rank="1")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    resumed = [line for line in out.splitlines() if "train: resumed from epoch" in line]
    assert len(resumed) == 1 and resumed[0].startswith("train: resumed from epoch 2 ("), out
    assert "(exitcode: -9) local_rank: 1" in out  # torchrun saw rank 1 die and restarted the group once
    meta = model_dir.load(tmp_path / "m").meta
    assert meta["training"]["world_size"] == 2
    assert [h["epoch"] for h in meta["history"]] == [1, 2, 3, 4]
    close(meta["metrics"], whole["metrics"])
    assert names(ckpts) == [checkpoint.file_name(3, 0), checkpoint.file_name(4, 0)]
