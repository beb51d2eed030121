"""SIGTERM during training (preemption, a pod's deletion): the flag the ranks agree on at step
boundaries, so every rank stops together after writing a checkpoint, and ``Interrupted``
(exit 143, which a PyTorchJob's ``ExitCode`` restart policy retries). See docs/train.md.
"""

from __future__ import annotations

import signal
import threading

from components.common.errors import UserError

from .distributed import Dist, _all_reduce

STOP_CHECK_STEPS = 8  # under DDP the ranks agree on a SIGTERM every this many steps (a collective)
SIGTERM_EXIT = 128 + signal.SIGTERM  # the exit status of a run stopped by SIGTERM (retryable)


class Interrupted(UserError):
    """SIGTERM (preemption, a pod's deletion): the run stopped at a step boundary after writing a
    checkpoint; the same command resumes it. Exit status 143, which a PyTorchJob's ``ExitCode``
    restart policy retries."""

    exit_code = SIGTERM_EXIT


class StopFlag:
    """Set by SIGTERM (handler installed while a checkpointing run is in the main thread)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous = None

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda _s, _f: self.event.set())
        return self

    def __exit__(self, *_exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def agreed(self, d: Dist) -> bool:
        """Whether any rank was told to stop (a collective under DDP: call on every rank)."""
        local = self.event.is_set()
        if not d.distributed:
            return local
        return bool(_all_reduce(d, [1.0 if local else 0.0], op="max")[0])


class NoStop(StopFlag):
    """No SIGTERM handler (no checkpoints to write: the default action, exit, stays)."""

    def __enter__(self) -> StopFlag:
        return self
