"""The kfp component through kfp.local (SubprocessRunner in the current environment)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp import local

from components.common.storage import output_is_complete
from components.ingest.component import ingest

from .conftest import read_quarantine, read_raw, row, write_file

pytestmark = pytest.mark.slow


@pytest.fixture
def kfp_local(tmp_path) -> Path:
    root = tmp_path / "root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    yield root


def test_component_runs_through_kfp_local(kfp_local, tmp_path) -> None:
    src = write_file(tmp_path / "in" / "taxi_2015_01.txt", [row(1), row(2, FAREAMOUNT="12,3"), row(3)])
    task = ingest(source=str(src.parent))
    summary = task.outputs["Output"]
    assert summary["rows_read"] == 3 and summary["rows_written"] == 2 and summary["rows_quarantined"] == 1
    raw = Path(task.outputs["raw"].path)
    assert output_is_complete(str(raw))
    assert read_raw(raw).column("OBJECTID").to_pylist() == [1, 3]
    quarantine = Path(task.outputs["quarantine"].path)
    q = read_quarantine(quarantine / "part-00000.parquet")
    assert q.column("reason").to_pylist() == ["FAREAMOUNT: not a number: '12,3'"]
    assert not (raw / "_quarantine").exists()  # quarantine went to its own artifact
    (executor_output,) = list(kfp_local.rglob("executor_output.json"))
    (metrics,) = json.loads(executor_output.read_text())["artifacts"]["metrics"]["artifacts"]
    assert metrics["metadata"]["rows_read"] == 3  # kfp.local turns ints into floats; 3.0 == 3
    assert metrics["metadata"]["rows_quarantined"] == 1
    assert metrics["metadata"]["bytes_read"] == src.stat().st_size
    assert set(metrics["metadata"]) == {
        "rows_read",
        "rows_written",
        "rows_quarantined",
        "bytes_read",
        "seconds",
    }


def test_component_fails_on_unusable_input(kfp_local, tmp_path) -> None:
    with pytest.raises(RuntimeError):
        ingest(source=str(tmp_path / "missing"))
