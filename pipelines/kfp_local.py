"""kfp.local for ``fareflow run``: ``init`` (the SubprocessRunner in this environment, the
pipeline root and cache under the workdir), ``task_warnings`` (warnings into the task log) and
``watch_tasks`` (each task's start and end, and whether it was served from the cache).

kfp.local 2.17 has no hook for task events, so ``watch_tasks`` wraps its two task-level
functions (``task_executor.execute_single_task`` and
``task_dispatcher.run_single_task_implementation``) for the duration of a run; the wrappers
only observe (same arguments, same results). See docs/local.md."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


def init(workdir: Path, caching: bool) -> None:
    """kfp.local's settings for a run: tasks run as subprocesses in this environment, the
    pipeline root at ``workdir/pipeline_root`` and the cache at ``workdir/cache``; a failed task
    fails the pipeline."""
    from kfp import local

    root = workdir / "pipeline_root"
    root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        enable_caching=caching,
        cache_root=str(workdir / "cache"),
        raise_on_error=True,
    )


@contextlib.contextmanager
def task_warnings(sink: IO[str]) -> Iterator[None]:
    """Warnings shown during the run go to ``sink`` (the task logs), not the terminal; the
    SubprocessRunner's warning about a non-Python base image is dropped (locally the tasks run
    in this environment, which has the same packages the image has)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*custom or non-Python base image.*", category=RuntimeWarning
        )
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sink.write(
            warnings.formatwarning(message, category, filename, lineno, line)
        )
        yield


@contextlib.contextmanager
def watch_tasks(on_start: Callable[[str], None], on_end: Callable[[str, str, dict], None]) -> Iterator[None]:
    """Call ``on_start(task)`` and ``on_end(task, state, outputs)`` around each kfp.local task;
    ``state`` is ``done``, ``cached`` (served from the cache: the task did not run) or
    ``failed``."""
    from kfp.local import status, task_dispatcher
    from kfp.local.orchestrator import task_executor

    execute = task_executor.execute_single_task
    run_impl = task_dispatcher.run_single_task_implementation
    ran: list[bool] = []

    def run_single_task_implementation(*args, **kwargs):
        if ran:
            ran[-1] = True
        return run_impl(*args, **kwargs)

    def execute_single_task(*args, **kwargs):
        name = kwargs.get("task_name") or (args[0] if args else "?")
        ran.append(False)
        on_start(name)
        outputs, task_status = {}, status.Status.FAILURE
        try:
            outputs, task_status = execute(*args, **kwargs)
            return outputs, task_status
        finally:
            did_run = ran.pop()
            state = ("done" if did_run else "cached") if task_status == status.Status.SUCCESS else "failed"
            on_end(name, state, outputs)

    task_executor.execute_single_task = execute_single_task
    task_dispatcher.run_single_task_implementation = run_single_task_implementation
    try:
        yield
    finally:
        task_executor.execute_single_task = execute
        task_dispatcher.run_single_task_implementation = run_impl
