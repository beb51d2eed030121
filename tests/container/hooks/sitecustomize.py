"""Mounted into trainer containers by the container tier's fault-tolerance tests (its directory
on ``PYTHONPATH``): a fixed point in the run for the test's kill or deletion to land on, instead
of racing a poll against the training speed (an epoch takes a fraction of a second here).

``FAREFLOW_TEST_PAUSE=POD:EPOCH:STEP:STATE_DIR``: in the training rank of pod ``POD`` (its
hostname), local rank 0, first incarnation only (the pod's container and torchrun's restarts
after it train plainly), once ``STEP`` batches of epoch ``EPOCH`` are trained, the rank writes
``STATE_DIR/paused-POD`` and waits until its SIGTERM handler has run (the deletion the test
sends) or the container is killed. Every other Python process in the container (torchrun
itself) is untouched."""

from __future__ import annotations

import os
import socket


def _install(pod: str, epoch: int, step: int, state: str) -> None:
    import time
    from pathlib import Path

    from batch_hook import at_batch, watch_sigterm  # tests/components/train/batch_hook.py

    marker = Path(state) / f"paused-{pod}"
    if marker.exists():  # a later incarnation, or the group torchrun restarted
        return
    term_seen = watch_sigterm()

    def pause() -> None:
        marker.write_text(f"epoch {epoch} step {step}\n")
        print(f"test hook: paused at epoch {epoch} step {step}", flush=True)
        deadline = time.monotonic() + 300
        while not term_seen[0] and time.monotonic() < deadline:
            time.sleep(0.02)  # the handler runs in this (the main) thread

    at_batch(epoch, step, pause)


_spec = os.environ.get("FAREFLOW_TEST_PAUSE", "")
if _spec and os.environ.get("LOCAL_RANK") == "0":
    _pod, _epoch, _step, _state = _spec.split(":", 3)
    if socket.gethostname() == _pod:
        _install(_pod, int(_epoch), int(_step), _state)
