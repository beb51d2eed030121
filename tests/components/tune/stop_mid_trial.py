"""``fareflow tune`` (the same ``main``) that stops itself (SIGSTOP) when trial ``argv[1]``
starts its first epoch report, its parameters drawn, before anything of that epoch is
recorded: the fault-tolerance test then kills the stopped process with -9, so where the kill
lands is fixed instead of raced for. Run as ``python stop_mid_trial.py N <tune args...>``."""

from __future__ import annotations

import os
import signal
import sys

from components.tune import space
from components.tune.__main__ import main

STOP_AT = int(sys.argv[1])
_real = space.pruning_callback


def _stopping_callback(trial, prune: bool = True):
    on_epoch = _real(trial, prune)

    def stopping(epoch: int, validation_rmse: float) -> None:
        if trial.number == STOP_AT and epoch == 1:
            os.kill(os.getpid(), signal.SIGSTOP)  # the test kills it here; nothing runs after
        on_epoch(epoch, validation_rmse)

    return stopping


space.pruning_callback = _stopping_callback  # make_objective looks it up when a trial starts

if __name__ == "__main__":
    sys.exit(main(sys.argv[2:]))
