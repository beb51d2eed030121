"""``fareflow train`` (the same ``main``) that sends itself a signal when it has trained ``STEP``
batches of epoch ``EPOCH``, so the checkpoint tests interrupt a run at a fixed point instead of
racing a sleep against the training speed. Run as
``python stop_at_step.py EPOCH STEP SIGNAL RANK <train args...>``:

- ``SIGNAL`` ``STOP``: the process stops itself there; the test waits until it is stopped, then
  sends what it tests (SIGKILL, or SIGTERM and SIGCONT), so where that lands is fixed. Once
  continued, it trains on only after the run's own SIGTERM handler has run: the kernel may
  hand a process-directed SIGTERM to another thread (torch's), whose C-level handler can run
  a few batches late on a loaded machine (seen: the checkpoint one batch later than sent).
  ``KILL``: it dies there (-9), as a rank killed mid-epoch.
- ``RANK`` ``-``: this process trains and signals itself. An integer (with ``--workers N``):
  torchrun starts this same file for every rank, and only local rank ``RANK`` of the group's
  first start (restart count 0) signals itself; the other ranks, and the restarted group, train
  plainly.

A run that ends without passing that point is an error (exit 3), never a pass."""

from __future__ import annotations

import os
import signal
import sys
import time

from batch_hook import at_batch, watch_sigterm  # a sibling: this file runs as a script

from components.train import launch
from components.train.__main__ import main

TRAIN_MODULE = "components.train"  # what launch puts after its launcher (torchrun ... -m)
TERM_WAIT_S = 120.0  # after SIGCONT, at most this long for the run's SIGTERM handler


def signal_at(epoch: int, step: int, number: int) -> list[bool]:
    """Once ``step`` batches of ``epoch`` are trained, this process gets signal ``number``
    (SIGSTOP: continued, it waits for the run's SIGTERM handler to have run). The list returned
    holds True from then."""
    term_seen = watch_sigterm() if number == signal.SIGSTOP else None

    def send() -> None:
        os.kill(os.getpid(), number)
        deadline = time.monotonic() + TERM_WAIT_S
        while term_seen is not None and not term_seen[0] and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler runs in this (the main) thread

    return at_batch(epoch, step, send)


def main_at(argv: list[str]) -> int:
    epoch, step, signame, rank = int(argv[0]), int(argv[1]), argv[2], argv[3]
    rest = argv[4:]
    is_rank = bool(rest) and rest[0] == TRAIN_MODULE
    if is_rank:
        rest = rest[1:]
    elif rank != "-":  # the user's process: torchrun is to start this file for every rank
        real = launch._launcher

        def through_this_file(backend: str, workers: int, max_restarts: int) -> list[str]:
            command = real(backend, workers, max_restarts)
            assert command[-1] == "-m", command
            return [*command[:-1], os.path.abspath(__file__), *argv[:4]]

        launch._launcher = through_this_file
    if rank == "-":
        targeted = not is_rank
    else:
        env = os.environ
        targeted = is_rank and env.get("LOCAL_RANK") == rank and env.get("TORCHELASTIC_RESTART_COUNT") == "0"
    sent = signal_at(epoch, step, getattr(signal, f"SIG{signame}")) if targeted else [True]
    code = main(rest)
    if not sent[0]:
        print(f"stop_at_step: the run ended before epoch {epoch} step {step}", file=sys.stderr)
        return 3
    return code


if __name__ == "__main__":
    sys.exit(main_at(sys.argv[1:]))
