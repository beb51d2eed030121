"""Run records, retention and comparison (pipelines.runs), and the console helpers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from components.common.errors import UserError
from pipelines import runs
from pipelines.console import StepBoard
from pipelines.failures import task_failure


def _fake_run(workdir: Path, run_id: str, root: Path | None = None, uses: Path | None = None) -> Path:
    path = workdir / run_id
    path.mkdir(parents=True)
    record = {"run_id": run_id, "status": "succeeded", "pipeline_root_runs": [str(root)] if root else []}
    runs.write_json(path / runs.RUN_RECORD, record)
    runs.write_json(path / runs.SUMMARY, {"train": {"artifacts": {"model": str(uses or "")}}})
    return path


def test_prune_keeps_the_newest_and_the_outputs_kept_runs_use(tmp_path):
    roots = [tmp_path / "pipeline_root" / f"p{i}" for i in range(3)]
    for root in roots:
        (root / "train").mkdir(parents=True)
    _fake_run(tmp_path, "20260101-000000-aaaa", roots[0])
    _fake_run(tmp_path, "20260102-000000-bbbb", roots[1])
    # the newest run was served from the cache: its model lives in the oldest run's outputs
    _fake_run(tmp_path, "20260103-000000-cccc", roots[2], uses=roots[0] / "train" / "model")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "k1.json").write_text(json.dumps({"uri": str(roots[1] / "train")}))
    (tmp_path / "cache" / "k2.json").write_text(json.dumps({"uri": str(roots[2] / "train")}))

    assert runs.prune_runs(tmp_path, keep=1) == ["20260101-000000-aaaa", "20260102-000000-bbbb"]
    assert [p.name for p, _ in runs.list_runs(tmp_path)] == ["20260103-000000-cccc"]
    assert roots[0].is_dir()  # still used by the kept run
    assert not roots[1].exists() and not (tmp_path / "cache" / "k1.json").exists()
    assert roots[2].is_dir() and (tmp_path / "cache" / "k2.json").exists()
    assert runs.prune_runs(tmp_path, keep=0) == []  # 0 = keep all


def test_resolve_by_prefix_latest_and_back(tmp_path):
    for run_id in ("20260101-000000-aaaa", "20260102-000000-bbbb"):
        _fake_run(tmp_path, run_id)
    assert runs.resolve(tmp_path, "latest")[0].name == "20260102-000000-bbbb"
    assert runs.resolve(tmp_path, "latest~1")[0].name == "20260101-000000-aaaa"
    assert runs.resolve(tmp_path, "20260101")[0].name == "20260101-000000-aaaa"
    with pytest.raises(UserError, match="matches 2 runs"):
        runs.resolve(tmp_path, "2026")
    with pytest.raises(UserError, match="no such run"):
        runs.resolve(tmp_path, "1999")
    with pytest.raises(UserError, match="there are 2 run"):
        runs.resolve(tmp_path, "latest~2")


def test_comparison_marks_changes_and_deltas():
    a = {
        "source": "s",
        "code": {"label": "x"},
        "parameters": {"epochs": 8},
        "metrics": {"train.test_rmse": 4.0},
    }
    b = {
        "source": "s",
        "code": {"label": "y"},
        "parameters": {"epochs": 4},
        "metrics": {"train.test_rmse": 3.0},
    }
    rows = {(r[0], r[1]): r[2:] for r in runs.comparison(a, b)}
    assert rows[("run", "source")] == ("s", "s", "")
    assert rows[("run", "code")] == ("x", "y", "changed")
    assert rows[("parameter", "epochs")] == ("8", "4", "changed")
    assert rows[("metric", "train.test_rmse")] == ("4", "3", "-1 (-25.0%)")


def test_report_headers_are_inserted_and_escaped():
    items = [("run", "r1"), ("source", "<dir>")]
    stamped = runs.stamp_html("<html><body class='x'><h1>T</h1></body></html>", items)
    assert stamped.startswith("<html><body class='x'>\n<div class=\"fareflow-run\"")
    assert "<code>&lt;dir&gt;</code>" in stamped and stamped.index("fareflow-run") < stamped.index("<h1>")
    assert runs.stamp_markdown("# T\n", items) == "> run `r1` · source `<dir>`\n\n# T\n"


def test_task_failure_finds_the_user_error_of_the_last_traceback():
    log = "\n".join(
        [
            "    [KFP Executor] Got executor_input:",
            "    Traceback (most recent call last):",
            '      File "x.py", line 1, in <module>',
            "        raise ValueError('first')",
            "    ValueError: first",
            "",
            "    During handling of the above exception, another exception occurred:",
            "",
            "    Traceback (most recent call last):",
            '      File "/work/components/quality/result.py", line 9, in check_gate',
            "        raise GateFailed(msg)",
            "    components.quality.result.GateFailed: quality gate failed: missing_fare rejected 10%",
            "",
            "12:00:00 - ERROR - Task 'quality' finished with status FAILURE",
        ]
    )
    failure = task_failure(log)
    assert failure.exception == "components.quality.result.GateFailed"
    assert failure.message == "quality gate failed: missing_fare rejected 10%"
    assert failure.user_error is True
    bug = task_failure("Traceback (most recent call last):\n  File 'a'\nKeyError: 'rows'\n")
    assert (bug.exception, bug.message, bug.user_error) == ("KeyError", "'rows'", False)
    assert task_failure("killed\n").message == "killed"


def test_step_board_draws_live_lines_on_a_terminal_and_plain_lines_otherwise():
    from rich.console import Console

    terminal = io.StringIO()
    board = StepBoard(["ingest", "train"], console=Console(file=terminal, force_terminal=True, width=100))
    assert board.live is True
    with board:
        board.start("ingest")
        board.finish("ingest", "cached", {"rows_written": 1234, "rows_quarantined": 5})
        board.start("train")
        board.finish("train", "done", {"rows": {"train": 10}, "metrics": {"test_rmse": 2.5}})
    drawn = terminal.getvalue()
    assert "cached" in drawn and "1,234 rows" in drawn and "test RMSE 2.5000" in drawn

    plain = io.StringIO()
    board = StepBoard(["ingest"], console=Console(file=plain, width=100))
    assert board.live is False
    with board:
        board.start("ingest")
        board.finish("ingest", "failed")
    assert plain.getvalue().split()[:2] == ["ingest", "failed"]
