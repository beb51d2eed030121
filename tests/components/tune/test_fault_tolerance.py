"""Durable and parallel tuning on an RDB study, on SQLite and on a real PostgreSQL server
(tests/postgres.py; the ``storage_url`` fixture runs each test on both): a study killed with -9
in the middle of a trial resumes to its total with every finished trial kept and the
interrupted one FAIL and run again; N workers share one study; a wrong DSN or unreachable
server is one line; --workers without shared storage is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from components.common.errors import UserError
from components.tune import core
from components.tune.__main__ import main
from components.tune.config import sqlalchemy_url
from components.tune.core import DEFAULTS, TuneConfig

ROOT = Path(__file__).resolve().parents[3]


def load(url: str, name: str):
    """The study as Optuna opens it (postgresql:// through psycopg 3, as fareflow does)."""
    return optuna.load_study(study_name=name, storage=sqlalchemy_url(url))


def stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (state T in /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def cli(splits, url: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "components.tune", "--splits", str(splits), "--total-trials", "5",
        "--epochs", "3", "--max-rows", "600", "--device", "cpu", "--seed", "7", "--storage", url,
        "--study-name", "killed", "--heartbeat", "1", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_a_study_killed_mid_trial_resumes_to_its_total_and_retries_that_trial(
    shared_splits, tmp_path, storage_url
):
    url = storage_url
    scratch_root = tmp_path / "tmp"  # the runs' temporary directory: what a kill leaves there
    scratch_root.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch_root)}
    # the run stops itself when trial 2 starts (trials 0 and 1 finished, 2 running with its
    # parameters drawn) and is killed -9 there: a fixed point, not one raced for by polling
    stopper = [sys.executable, str(Path(__file__).with_name("stop_mid_trial.py")), "2"]
    proc = subprocess.Popen(stopper + cli(shared_splits, url)[3:], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not stopped(proc.pid):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the killed run's trial models are left in its scratch directory ...
    left = [
        p
        for p in scratch_root.iterdir()
        if p.name.startswith("fareflow-tune-") and f"-pid{proc.pid}-" in p.name
    ]
    assert len(left) == 1 and any(left[0].iterdir())
    before = {t.number: t for t in load(url, "killed").trials}
    killed = [n for n, t in before.items() if t.state.name == "RUNNING"]
    kept = {n: (t.state.name, t.value, t.params) for n, t in before.items() if t.state.is_finished()}
    assert len(killed) == 1 and sorted(kept) == [0, 1] and killed == [2]

    summary = tmp_path / "summary.json"
    done = subprocess.run(
        cli(shared_splits, url, "--summary-json", str(summary)),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"holds {len(kept)} finished trial(s); running {5 - len(kept)} more" in done.stderr
    # ... and go when the next run makes its own, which goes when that run ends
    assert not [p for p in scratch_root.iterdir() if p.name.startswith("fareflow-tune-")]
    study = load(url, "killed")
    by_number = {t.number: t for t in study.trials}
    # the finished trials are kept as they were
    for n, (state, value, params) in kept.items():
        assert (by_number[n].state.name, by_number[n].value, by_number[n].params) == (state, value, params)
    # the trial running at the kill is FAIL, and exactly one retry ran it again with its parameters
    assert by_number[killed[0]].state.name == "FAIL"
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed[0]]
    assert len(retries) == 1 and retries[0].state.name in ("COMPLETE", "PRUNED")
    # the retry runs the killed trial's parameters (all drawn before the kill)
    recorded = before[killed[0]].params
    assert set(recorded) == set(DEFAULTS) and retries[0].params == recorded
    # five trials count (the FAIL does not), none waiting or running, numbers unique
    counted = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(counted) == 5 and len(study.trials) == 6
    assert len({t.number for t in study.trials}) == 6
    import json

    data = json.loads(summary.read_text())
    assert data["new_trials"] == 3 and data["trials"][0]["params"] == DEFAULTS

    # the same command once more: nothing left to run
    again = subprocess.run(cli(shared_splits, url), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already holds 5 finished trial(s) of 5; none to run" in again.stderr
    assert len(load(url, "killed").trials) == 6


@pytest.mark.slow
def test_two_workers_share_one_study_without_duplicate_trials(shared_splits, capfd, storage_url):
    url = storage_url
    config = TuneConfig(
        str(shared_splits), total_trials=6, epochs=2, max_rows=600, device="cpu", seed=2,
        storage=url, study_name="pair", workers=2,
    )  # fmt: skip
    result = core.run(config, log=lambda _m: None)
    err = capfd.readouterr().err
    study = load(url, "pair")
    numbers = [t.number for t in study.trials]
    # Two workers can both see one trial left and both start it: Optuna has no atomic trial
    # reservation across processes, so N workers may run up to N - 1 trials past the total
    # (docs/tune.md). Never fewer, never a duplicate number.
    assert sorted(numbers) == list(range(len(numbers))) and 6 <= len(numbers) <= 6 + 1
    assert all(t.state.is_finished() for t in study.trials)
    assert result.new_trials == len(result.trials) == len(numbers)
    assert study.trials[0].params == DEFAULTS
    # the workers' samplers are seeded apart: no two trials try the same parameters
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == len(numbers)
    # both workers ran trials, and some of their trials overlapped in time
    assert "tune: worker 0: trial" in err and "tune: worker 1: trial" in err
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))
    assert result.best_value == min(t.value for t in study.trials if t.state.name == "COMPLETE")


@pytest.mark.parametrize("storage", ["", "sqlite://", "sqlite:///:memory:"])
def test_workers_without_a_shared_rdb_are_refused_in_one_line(shared_splits, storage):
    with pytest.raises(UserError) as err:
        core.run(TuneConfig(str(shared_splits), workers=2, storage=storage), log=lambda _m: None)
    assert str(err.value).startswith("--workers 2: needs --storage with an RDB URL the workers share")


def test_cli_workers_refusal_and_total_trials_flags(shared_splits, capsys):
    assert main(["--splits", str(shared_splits), "--trials", "2", "--workers", "2"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "fareflow tune: error: --workers 2: needs --storage with an RDB URL the workers share "
        "(sqlite:///study.db, postgresql://...), got in-memory"
    ]
    with pytest.raises(SystemExit):  # --trials and --total-trials are one or the other
        main(["--splits", str(shared_splits), "--trials", "2", "--total-trials", "3"])
    assert main(["--splits", str(shared_splits), "--total-trials", "0"]) == 2
    assert "--total-trials: expected a positive number, got 0" in capsys.readouterr().err


def test_total_trials_in_memory_runs_exactly_that_many(shared_splits):
    result = core.run(
        TuneConfig(str(shared_splits), total_trials=2, epochs=1, max_rows=400, device="cpu"),
        log=lambda _m: None,
    )
    assert result.new_trials == 2 and [t["number"] for t in result.trials] == [0, 1]


def test_the_ask_lock_serializes_claims_on_one_sqlite_study_only(tmp_path):
    """Two workers' locks on one SQLite study exclude each other until released; other storages
    (row locks of their own) and in-memory studies take none."""
    import threading

    from components.tune.workers import _AskLock

    url = f"sqlite:///{tmp_path / 'study.db'}"
    first, second = _AskLock(url), _AskLock(url)
    assert first.path == f"{tmp_path / 'study.db'}.ask.lock"
    first.acquire()
    got = threading.Event()
    waiter = threading.Thread(target=lambda: (second.acquire(), got.set()))
    waiter.start()
    assert not got.wait(0.5)  # blocked while the first holds it
    first.release()
    assert got.wait(10)
    second.release()
    waiter.join()
    assert _AskLock("postgresql://u@db/optuna").path is None and _AskLock("").path is None
    assert _AskLock("sqlite:///:memory:").path is None
    _AskLock("postgresql://u@db/optuna").acquire()  # a no-op, returns at once
