"""Run something at a fixed batch of a training run, so tests interrupt it at a known point
instead of racing a sleep or a poll against the training speed. Used by ``stop_at_step.py``
(local runs, as a sibling module) and by the container tier's ``sitecustomize`` hook (mounted
into trainer containers beside it)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable

from components.common import progress


def watch_sigterm() -> list[bool]:
    """Wrap the SIGTERM handler the run installs (components.train.stop.StopFlag), so it is
    known when it has run. The list returned holds True from then."""
    seen = [False]
    real_signal = signal.signal

    def installing(signum, handler):
        if signum == signal.SIGTERM and callable(handler):
            inner = handler

            def handler(s, frame):
                inner(s, frame)
                seen[0] = True

        return real_signal(signum, handler)

    signal.signal = installing
    return seen


def at_batch(epoch: int, step: int, action: Callable[[], None]) -> list[bool]:
    """Wrap the progress bar components.train.core opens for each epoch: once ``step`` batches
    of ``epoch`` are trained in this process, ``action()`` runs (once, in the training loop's
    thread). The list returned holds True from then."""
    real = progress.progress_bar
    fired = [False]

    @contextlib.contextmanager
    def bar(total, description, **kwargs):
        with real(total, description, **kwargs) as advance:
            if not description.startswith(f"epoch {epoch}/"):
                yield advance
                return
            done = [0]

            def counting(n, rows=0):
                advance(n, rows=rows)
                done[0] += n
                if done[0] >= step and not fired[0]:
                    fired[0] = True
                    action()

            yield counting

    progress.progress_bar = bar  # core.run imports it from the module each time it starts
    return fired
