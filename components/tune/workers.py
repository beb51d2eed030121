"""The trial loop and parallel workers: ``optimize_until`` runs trials until the study holds
the target number of counted trials (or the deadline passes), ``run_workers`` starts N worker
processes on one RDB study, each with its share of the CPUs' torch threads; ``_AskLock``
serializes SQLite trial claims between local workers.

Workers are forked from this process when that is safe (:func:`start_method`): a forked worker
starts at once with the tune step's modules loaded, and leaves without the interpreter's
finalization, where a spawned one starts a new interpreter, imports them again and finalizes
torch at its end (on the bench's trials, about 3 s of a 2-worker study's wall time)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

from components.common.errors import UserError
from components.common.scratch import scratch_dir

from .config import (
    TuneConfig,
)
from .space import Diverged, make_objective
from .study import counted_trials, open_study

SCRATCH_PREFIX = "fareflow-tune"


class _AskLock:
    """Serializes Optuna's claiming of a trial between the local workers of one SQLite study.

    A trial waiting in the study (the enqueued defaults, a dead worker's retry) is claimed with
    ``SELECT ... FOR UPDATE``, which SQLite ignores: two workers could both claim it, run it, and
    the second's result be refused (seen in CI: ``UpdateFinishedTrialError: Trial#0 has already
    finished``). An ``flock`` on ``DB.ask.lock`` is held from before ``study.optimize`` asks
    until the objective starts (the trial is then RUNNING and ours), so only the claim is
    serialized, not the training. Other databases lock rows themselves: no lock."""

    def __init__(self, storage: str) -> None:
        prefix = "sqlite:///"
        path = storage[len(prefix) :] if storage.startswith(prefix) else ""
        self.path = f"{path}.ask.lock" if path and path != ":memory:" else None
        self._file = None

    def acquire(self) -> None:
        if self.path is not None:
            import fcntl

            self._file = open(self.path, "a")  # noqa: SIM115 - held across calls, closed in release
            fcntl.flock(self._file, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._file is not None:
            import fcntl

            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def optimize_until(
    study,
    config: TuneConfig,
    target: int,
    deadline: float | None,
    log: Callable[[str], None],
    finished=None,
    workdir: str | None = None,
) -> None:
    """Run trials one at a time until the study holds ``target`` counted trials (or the deadline
    passes). Trials another live worker is running count as on their way; a trial whose process
    died turns FAIL when its heartbeat is stale and its retry is run here.

    The trials' models go to ``workdir`` (a worker's, in :func:`run_workers`' scratch, which
    that process removes even when the worker is killed), else to a scratch directory of this
    process (``components.common.scratch``: one left by a killed run goes at the next).

    ``finished`` (an ``Event`` the workers share): set by the worker that sees the target
    reached; one waiting for the others' last trials wakes on it at once, not at its next
    look (every second, or ``heartbeat_s``), so the study ends when its last trial does."""
    import optuna

    def report(study, t) -> None:
        shown = f"{t.value:.4f}" if t.value is not None else "-"
        log(
            f"trial {t.number} {t.state.name}: validation RMSE {shown} after "
            f"{t.user_attrs.get('epochs_run', 0)} epoch(s); {t.params}"
        )

    import warnings

    lock = _AskLock(config.storage)

    with nullcontext(workdir) if workdir is not None else scratch_dir(SCRATCH_PREFIX) as tmp:
        train_trial = make_objective(config, tmp, log)

        def objective(trial) -> float:
            lock.release()  # the trial is claimed (RUNNING): let the next worker ask
            return train_trial(trial)

        while deadline is None or time.time() < deadline:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)  # nothing without a heartbeat (in memory)
            done = len(counted_trials(study))
            if done >= target:
                if finished is not None:
                    finished.set()
                return
            running = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
            if done + running >= target:  # the last trials run elsewhere (or died): look again
                interval = min(1.0, config.heartbeat_s)
                if finished is not None and not finished.is_set():
                    finished.wait(interval)
                else:
                    time.sleep(interval)
                continue
            lock.acquire()
            try:
                study.optimize(objective, n_trials=1, catch=(Diverged,), callbacks=[report])
            finally:
                lock.release()


def start_method() -> str:
    """How the workers start: ``"fork"`` while this process has neither imported torch nor
    started a second Python thread, else ``"spawn"``.

    A forked child inherits its parent's memory but not its threads: a child of a process whose
    OpenMP pool is running hangs in its first parallel region (GNU libgomp; seen here with 2
    threads), and a lock another thread held at the fork stays held in the child. ``fareflow
    tune`` never touches torch before its workers start (trials run in them), so the CLI forks;
    a caller that trained in this process (or runs threads) gets spawned workers."""
    import multiprocessing
    import threading

    if "torch" in sys.modules or threading.active_count() > 1:
        return "spawn"
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _worker(
    config: TuneConfig,
    target: int,
    deadline: float | None,
    index: int,
    threads: int,
    finished=None,
    scratch: str | None = None,
) -> None:
    """One of ``config.workers`` processes (multiprocessing, forked or spawned): its torch
    threads, the shared study, the trial loop. A ``UserError`` is one line on stderr and exit
    status 2."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the train step then leaves torch's pool alone
    import optuna
    import torch

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def log(message: str) -> None:
        print(f"tune: worker {index}: {message}", file=sys.stderr, flush=True)

    workdir = None
    if scratch is not None:
        workdir = os.path.join(scratch, f"worker-{index}")
        os.makedirs(workdir, exist_ok=True)
    try:
        optimize_until(open_study(config, worker=index), config, target, deadline, log, finished, workdir)
    except UserError as err:
        print(f"fareflow tune: error: worker {index}: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def run_workers(
    config: TuneConfig, target: int, deadline: float | None, log: Callable[[str], None], study=None
) -> None:
    """``config.workers`` processes on the study, each with its share of the CPUs, forked or
    spawned (:func:`start_method`). ``study``: this process's handle on it, whose database
    connections are closed first (a forked worker must not share them; each opens its own).
    The workers' trial models go to a scratch directory of this process, removed when they
    have ended, whether they left normally or were killed."""
    with scratch_dir(SCRATCH_PREFIX) as scratch:
        _run_workers(config, target, deadline, log, study, scratch)


def _run_workers(config: TuneConfig, target: int, deadline: float | None, log, study, scratch: str) -> None:
    import multiprocessing
    import warnings

    from components.common.cpu import cpu_threads

    threads = cpu_threads(config.workers)
    method = start_method()
    log(
        f"{config.workers} workers on study {config.study_name!r}, {threads} torch thread(s) each "
        f"({'forked' if method == 'fork' else 'spawned'})"
    )
    if study is not None:
        release_connections(study)
    ctx = multiprocessing.get_context(method)
    finished = ctx.Event()
    procs = [
        ctx.Process(
            target=_worker,
            args=(config, target, deadline, i, threads, finished, scratch),
            name=f"tune-worker-{i}",
        )
        for i in range(config.workers)
    ]
    with warnings.catch_warnings():  # Python >= 3.12 warns of any fork of a process with threads
        warnings.simplefilter("ignore", DeprecationWarning)  # (numpy's BLAS pool: fork-safe)
        for p in procs:
            p.start()
    try:
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
    failed = [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        i, code = failed[0]
        raise UserError(
            f"tune worker {i} of {config.workers} failed (exit status {code}); see its line above"
        )


def release_connections(study) -> None:
    """Close the pooled database connections of ``study``'s RDB storage (none in memory); the
    storage opens new ones when used again."""
    storage = getattr(study, "_storage", None)
    backend = getattr(storage, "_backend", storage)  # Optuna wraps an RDBStorage in a cache
    engine = getattr(backend, "engine", None)
    if engine is not None:
        engine.dispose()
