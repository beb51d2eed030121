"""How ``--workers N`` starts its processes: forked from a process that has not loaded torch
(the CLI), spawned otherwise; a forked worker opens its own database connections."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest

from components.common.errors import UserError
from components.tune import workers
from components.tune.config import TuneConfig, sqlalchemy_url
from components.tune.study import open_study

ROOT = Path(__file__).resolve().parents[3]


def test_start_method_forks_only_without_torch_and_other_threads(monkeypatch):
    # the test process itself may run other threads (servers of other tests' fixtures): the
    # thread count is set here, then a real second thread is checked to count
    count = [1]
    monkeypatch.setattr(threading, "active_count", lambda: count[0])
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert workers.start_method() == "fork"
    monkeypatch.setitem(sys.modules, "torch", sys)  # torch loaded (its OpenMP pool may be running)
    assert workers.start_method() == "spawn"
    monkeypatch.delitem(sys.modules, "torch")
    count[0] = 2  # a second thread could hold a lock at the fork
    assert workers.start_method() == "spawn"
    count[0] = 1
    assert workers.start_method() == "fork"
    monkeypatch.undo()
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:  # a real thread is seen
        assert workers.start_method() == "spawn"
    finally:
        stop.set()
        other.join()


def test_release_connections_closes_the_pool_and_the_study_still_works(tmp_path):
    config = TuneConfig("unused", storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="pool")
    study = open_study(config)
    study.enqueue_trial({"learning_rate": 0.001})
    engine = study._storage._backend.engine
    assert engine.pool.checkedin() >= 1
    workers.release_connections(study)
    assert engine.pool.checkedin() == 0
    assert len(study.get_trials(deepcopy=False)) == 1  # opens a new connection when used again
    workers.release_connections(optuna.create_study())  # in memory: nothing to close


@pytest.mark.slow
def test_the_cli_forks_its_workers_and_both_fill_the_study(shared_splits, storage_url):
    """``fareflow tune --workers 2`` (a fresh process, torch not loaded) forks its workers; each
    opens its own connections (the parent's are closed first), both run trials, the study holds
    the total with unique trial numbers."""
    cmd = [
        sys.executable, "-m", "components.tune", "--splits", str(shared_splits), "--total-trials", "4",
        "--epochs", "2", "--max-rows", "600", "--device", "cpu", "--seed", "3", "--storage", storage_url,
        "--study-name", "forked", "--workers", "2",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_NUM_THREADS", None)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    started = [line for line in done.stderr.splitlines() if "2 workers on study 'forked'" in line]
    assert len(started) == 1 and started[0].endswith("torch thread(s) each (forked)"), done.stderr
    assert "tune: worker 0: trial" in done.stderr and "tune: worker 1: trial" in done.stderr
    study = optuna.load_study(study_name="forked", storage=sqlalchemy_url(storage_url))
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(len(numbers))) and 4 <= len(numbers) <= 5
    assert all(t.state.is_finished() for t in study.trials)


def test_a_waiting_worker_wakes_when_another_sees_the_target_reached():
    """One trial left, RUNNING in another worker: this one waits (a look every second with a
    10 s heartbeat), and returns as soon as the event is set, not at its next look; the worker
    that sees the target reached sets the event."""
    import time

    config = TuneConfig("unused", heartbeat_s=10.0)
    study = optuna.create_study()
    elsewhere = study.ask()  # another worker's trial
    finished = threading.Event()

    def other_worker_ends() -> None:
        time.sleep(0.2)
        study.tell(elsewhere, 1.0)
        finished.set()

    ender = threading.Thread(target=other_worker_ends)
    started = time.monotonic()
    ender.start()
    workers.optimize_until(study, config, 1, None, lambda _m: None, finished)
    waited = time.monotonic() - started
    ender.join()
    assert 0.2 <= waited < 0.9 and len(study.trials) == 1  # woken, no trial run here

    finished.clear()
    workers.optimize_until(study, config, 1, None, lambda _m: None, finished)
    assert finished.is_set()  # it saw the target reached: the others may stop waiting


def _killed_worker(config, target, deadline, index, threads, finished=None, scratch=None):
    """A worker that writes into its place in the scratch, as a trial does, and is killed."""
    import signal

    workdir = Path(scratch) / f"worker-{index}"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "trial-0").write_text("a trial's model")
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_leaves_no_scratch_behind(tmp_path, monkeypatch):
    """The workers' trial models go to a scratch directory of the parent, removed when the
    workers have ended even when one was killed (-9: it cleans up nothing itself)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(workers, "_worker", _killed_worker)
    monkeypatch.setattr(workers, "start_method", lambda: "fork")
    seen = []
    real = workers._run_workers

    def spy(config, target, deadline, log, study, scratch):
        seen.append(Path(scratch))
        return real(config, target, deadline, log, study, scratch)

    monkeypatch.setattr(workers, "_run_workers", spy)
    config = TuneConfig("unused", storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="k", workers=2)
    with pytest.raises(UserError, match=r"tune worker 0 of 2 failed \(exit status -9\)"):
        workers.run_workers(config, 2, None, lambda _m: None)
    assert len(seen) == 1 and seen[0].parent == tmp_path and seen[0].name.startswith("fareflow-tune-")
    assert not seen[0].exists() and not list(tmp_path.glob("fareflow-tune-*"))
