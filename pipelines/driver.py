"""The run driver of ``fareflow run``: ``run_pipeline`` runs the pipeline through kfp.local
and returns each step's summary.

Each task's start and end go to the console's step board and to the run record's ``steps``
(state done/cached/failed, seconds, log); its output goes to its log. A failed task becomes
one error: its own message when it failed on bad input (``UserError``, exit 2), else
``TaskFailed`` (exit 1) after its traceback. See docs/local.md."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from components.common.errors import UserError

STEPS = ("ingest", "quality", "sample", "tune", "train")


class TaskFailed(UserError):
    """A task failed on something other than bad input (a bug, a crash): exit status 1."""

    exit_code = 1


def _task_summary(outputs: dict) -> dict | None:
    """A task's summary output (``Output``, or tune's ``summary``)."""
    for key in ("Output", "summary"):
        if isinstance(outputs.get(key), dict):
            return outputs[key]
    return None


def _failure_error(step: str, log: Path, verbose: bool) -> UserError:
    """The one line a failed task becomes; the traceback of an unexpected failure is shown."""
    from pipelines.failures import task_failure

    try:
        text = log.read_text(encoding="utf-8")
    except OSError:
        text = ""
    failure = task_failure(text)
    if failure.user_error:
        return UserError(f"{step}: {failure.message} (log: {log})")
    if not verbose:  # a bug or a crash: the traceback is what the user needs to report it
        print(failure.traceback or text[-4000:], file=sys.stderr)
    what = f"{failure.exception.rsplit('.', 1)[-1]}: " if failure.exception else ""
    return TaskFailed(f"{step} failed: {what}{failure.message} (log: {log})")


def run_pipeline(
    source: str,
    workdir: Path,
    *,
    caching: bool = True,
    arguments: dict | None = None,
    logs_dir: Path | None = None,
    verbose: bool = False,
    code_digest: str | None = None,
    steps: dict | None = None,
) -> dict:
    """Run the pipeline locally; return step name -> that step's summary dict.

    The kfp/task logs go to ``logs_dir`` (default ``workdir/logs``), echoed with ``verbose``.
    ``code_digest`` (default: the installed source's) keys the cache on the code. ``steps``,
    if given, is filled with each task's state (done/cached/failed), seconds and log path.
    A failed task raises UserError: its own one-line message when it failed on bad input."""
    from components.common.code_version import code_version
    from pipelines import kfp_local
    from pipelines.console import StepBoard
    from pipelines.task_logs import capture_logs
    from pipelines.taxi_fare import build_pipeline

    digest = code_version().digest if code_digest is None else code_digest
    pipeline = build_pipeline(quality_fan_out=False, code_digest=digest)
    logs_dir = logs_dir or workdir / "logs"
    steps = {} if steps is None else steps
    trials = (arguments or {}).get("tune_trials")
    board = StepBoard(
        list(STEPS),
        live=False if verbose else None,
        trials=int(trials) if isinstance(trials, int) else None,
        progress_lines=not verbose,  # -v shows the task's own lines
    )

    with (
        capture_logs(logs_dir, verbose=verbose, on_line=board.progress) as sink,
        kfp_local.task_warnings(sink),
        board,
    ):
        started: dict[str, float] = {}

        def on_start(name: str) -> None:
            sink.begin_task(name)
            started[name] = time.monotonic()
            board.start(name)

        def on_end(name: str, state: str, outputs: dict) -> None:
            sink.end_task()
            board.finish(name, state, _task_summary(outputs))
            steps[name] = {
                "state": state,
                "seconds": round(time.monotonic() - started.get(name, time.monotonic()), 3),
                "log": str(sink.task_log(name)),
            }

        kfp_local.init(workdir, caching)
        try:
            with kfp_local.watch_tasks(on_start, on_end):
                task = pipeline(source=source, **(arguments or {}))
        except RuntimeError as err:  # kfp.local: "Pipeline ... finished with status FAILURE. ..."
            failed = [name for name, s in steps.items() if s["state"] == "failed"]
            if not failed:
                raise
            error = err
        else:
            return dict(task.outputs)
    step = failed[-1]
    raise _failure_error(step, Path(steps[step]["log"]), verbose) from error
