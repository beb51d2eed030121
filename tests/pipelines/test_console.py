"""fareflow run's console: a running step's progress read from its task's log lines (tune's
trials and epochs, train's epochs, each with an ETA) and the log sink that hands them over."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from pipelines.console import StepBoard
from pipelines.progress import StepProgress, duration
from pipelines.task_logs import LogSink
from tests.components.train.conftest import trips, write_splits

PARAMS = "{'learning_rate': 0.001, 'batch_size': 1024}"


def done(n: int, state: str, value: str, epochs: int = 3, worker: str = "") -> str:
    """A trial's closing line as components.tune.workers.optimize_until logs it."""
    return f"tune: {worker}trial {n} {state}: validation RMSE {value} after {epochs} epoch(s); {PARAMS}"


def epoch(n: int, e: int, of: int, value: float) -> str:
    """A trial's per-epoch line: the train step's epoch line behind 'tune: trial N '."""
    return f"tune: trial {n} epoch {e}/{of}: train RMSE 4.0000, validation RMSE {value:.4f}, 9,999 rows/s"


def test_tune_progress_counts_trials_and_epochs_with_best_so_far_and_an_eta():
    p = StepProgress("tune", total=4, started=0.0)
    assert p.text(now=1.0) == "" and p.eta(now=1.0) is None  # nothing to tell yet
    assert p.feed(epoch(0, 1, 3, 4.5))
    assert p.text(now=10.0) == "trial 1/4, epoch 1/3, ETA 1m50s"  # 1/12 done in 10 s: 110 s left
    assert p.feed(done(0, "COMPLETE", "4.1000"))
    assert p.feed(epoch(1, 2, 3, 5.0))
    assert p.feed(done(1, "PRUNED", "5.2000", epochs=2))
    assert p.text(now=60.0) == "trial 3/4, 1 pruned, best 4.1000, ETA 1m00s"  # half done
    assert p.feed(done(2, "COMPLETE", "3.9000", worker="worker 1: "))  # a worker's line counts too
    assert p.feed(done(3, "FAIL", "-"))
    assert p.best == 3.9 and p.states == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1}
    assert p.text(now=100.0) == "4/4 trials done, 1 pruned, best 3.9000"  # no ETA when done


def test_lines_that_tell_no_progress_are_ignored():
    p = StepProgress("tune", total=2, started=0.0)
    for line in (
        "tune: study 'x' holds 2 finished trial(s); running 2 more",
        "tune: best trial 1: validation RMSE 3.9000 (defaults 4.1000); {}",
        '{"executor_output": "trial 1 COMPLETE: validation RMSE 3"}',
        "train: epoch 1/3: train RMSE 4.0, validation RMSE 3.9",  # train's own line, not a trial's
    ):
        assert not p.feed(line), line
    assert p.done == 0 and p.epochs is None
    assert not StepProgress("ingest").feed(done(0, "COMPLETE", "1.0"))


def test_train_progress_reads_the_epoch_lines_even_behind_a_rank_prefix():
    p = StepProgress("train", started=0.0)
    line = "train: epoch 2/8: train RMSE 4.1, validation RMSE 3.9500 (best), 12,345 rows/s"
    assert p.feed("[default0]:" + line)
    assert (p.epoch, p.epochs, p.best) == (2, 8, 3.95)
    assert p.text(now=20.0) == "epoch 2/8, best 3.9500, ETA 1m00s"


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.4, "0s"), (42, "42s"), (185, "3m05s"), (3720, "1h02m"), (-3, "0s")]
)
def test_durations_read_at_a_glance(seconds, shown):
    assert duration(seconds) == shown


def test_the_sink_hands_the_running_task_its_whole_lines(tmp_path: Path):
    seen: list[tuple[str, str]] = []
    sink = LogSink(tmp_path, on_line=lambda step, line: seen.append((step, line)))
    sink.write("kfp: before any task\n")
    sink.begin_task("tune")
    sink.write("tune: trial 0 COMP")  # a line in two writes
    sink.write("LETE: validation RMSE 4.0\r\ntune: trial 1 ")
    sink.write("epoch 1/3: ...\n")
    sink.end_task()
    sink.write("after the task\n")
    sink.close()
    assert seen == [
        ("tune", "tune: trial 0 COMPLETE: validation RMSE 4.0"),
        ("tune", "tune: trial 1 epoch 1/3: ..."),
    ]
    assert "trial 1 epoch 1/3" in (tmp_path / "tune.log").read_text()


def test_the_board_shows_tune_progress_on_its_line():
    terminal = io.StringIO()
    board = StepBoard(["tune"], console=Console(file=terminal, force_terminal=True, width=120), trials=2)
    with board:
        board.start("tune")
        board.progress("tune", epoch(0, 1, 2, 4.4))
        assert "trial 1/2, epoch 1/2" in board.lines["tune"].note
        board.progress("tune", done(0, "COMPLETE", "4.0000"))
        assert board.lines["tune"].note.startswith("trial 2/2, best 4.0000, ETA ")
        board.finish("tune", "done", {"trials": [{}, {}], "best_validation_rmse": 3.9})
    assert board.lines["tune"].note == "2 trial(s), best validation RMSE 3.9000"  # the summary's
    board.progress("tune", done(1, "COMPLETE", "3.0"))  # a finished step takes no more progress
    assert board.lines["tune"].note == "2 trial(s), best validation RMSE 3.9000"


def test_without_a_terminal_each_finished_trial_is_one_plain_line():
    plain = io.StringIO()
    board = StepBoard(["tune"], console=Console(file=plain, width=200), trials=3)
    with board:
        board.start("tune")
        board.progress("tune", epoch(0, 1, 3, 4.4))  # epochs redraw a live line only
        assert plain.getvalue() == ""
        board.progress("tune", done(0, "COMPLETE", "4.0000"))
        board.progress("tune", done(1, "PRUNED", "5.0000", epochs=1))
    lines = plain.getvalue().splitlines()
    assert len(lines) == 2 and all(line.split()[:2] == ["tune", "running"] for line in lines)
    assert lines[0].endswith("trial 2/3, best 4.0000, ETA " + lines[0].rsplit("ETA ", 1)[1])
    assert "trial 3/3, 1 pruned, best 4.0000" in lines[1]
    quiet = io.StringIO()  # -v: the task's own lines are shown, no progress lines beside them
    board = StepBoard(["tune"], console=Console(file=quiet, width=200), trials=3, progress_lines=False)
    board.start("tune")
    board.progress("tune", done(0, "COMPLETE", "4.0000"))
    assert quiet.getvalue() == "" and "trial 2/3" in board.lines["tune"].note


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> Path:
    return write_splits(trips(1500, 0), tmp_path_factory.mktemp("console") / "splits", 1, True)


def test_the_tune_steps_own_log_lines_drive_its_progress(splits: Path):
    """The parser against what components.tune.core really logs (not a copy of its format)."""
    from components.tune.config import TuneConfig
    from components.tune.core import run

    lines: list[str] = []
    result = run(
        TuneConfig(splits_uri=str(splits), trials=3, epochs=2, max_rows=500, device="cpu"),
        log=lambda m: lines.append(f"tune: {m}"),
    )
    p = StepProgress("tune", total=3, started=0.0)
    for line in lines:
        p.feed(line)
    assert p.done == len(result.trials) == 3
    assert p.states == {state: n for state, n in result.counts().items() if n}
    assert p.best == pytest.approx(result.best_value, abs=1e-4)
    assert p.text(now=5.0).startswith("3/3 trials done")


def test_the_train_steps_own_epoch_lines_drive_its_progress(splits: Path, tmp_path: Path):
    from components.train.config import TrainConfig
    from components.train.core import run

    lines: list[str] = []
    result = run(
        TrainConfig(
            splits_uri=str(splits), output_uri=str(tmp_path / "m"), epochs=2, device="cpu", max_rows=500
        ),
        log=lambda m: lines.append(f"train: {m}"),
        progress=False,
    )
    p = StepProgress("train", started=0.0)
    assert sum(p.feed(line) for line in lines) == 2
    assert (p.epoch, p.epochs) == (2, 2)
    assert p.best == pytest.approx(min(h["validation_rmse"] for h in result.history), abs=1e-4)


def test_tuning_off_leaves_no_tune_report_in_the_run():
    from pipelines.summary import drop_untuned_report

    artifacts = {"report": "/r/tune/report", "summary_md": "/r/tune/summary_md"}
    off = {"tune": {"trials": [], "note": "tuning off", "artifacts": dict(artifacts)}}
    assert drop_untuned_report(off) and off["tune"]["artifacts"] == {}
    tuned = {"tune": {"trials": [{"number": 0}], "artifacts": dict(artifacts)}}
    assert not drop_untuned_report(tuned) and tuned["tune"]["artifacts"] == artifacts
    assert not drop_untuned_report({"train": {}})
