"""The ingest fan-out's kfp components through kfp.local (SubprocessRunner, current environment).

No ``from __future__ import annotations`` here: kfp reads the pipelines' annotations as objects."""

from pathlib import Path

import pytest
from kfp import dsl, local

from components.ingest.component import ingest, ingest_merge, ingest_part, ingest_plan

from .conftest import read_quarantine, read_raw

pytestmark = pytest.mark.slow


@pytest.fixture
def kfp_local(tmp_path) -> Path:
    root = tmp_path / "root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    yield root


def test_fan_out_components_match_the_one_task_component(months, kfp_local) -> None:
    """ingest_plan -> ParallelFor ingest_part -> ingest_merge through kfp.local equals ingest."""

    @dsl.pipeline
    def plan(source: str, tasks: int) -> list:
        return ingest_plan(source=source, tasks=tasks).output

    @dsl.pipeline
    def fan_out(source: str, groups: list) -> dict:
        with dsl.ParallelFor(groups) as group:
            part = ingest_part(source=source, group=group)
        return ingest_merge(parts=dsl.Collected(part.outputs["part"])).outputs["Output"]

    groups = plan(source=str(months), tasks=3).output
    assert [g["files"] for g in groups] == [
        ["taxi_2015_01.txt"],
        ["taxi_2015_02.txt"],
        ["taxi_2015_03.txt", "taxi_2015_04.txt"],
    ]
    merged_task = fan_out(source=str(months), groups=groups)
    one_task = ingest(source=str(months))
    merged, one = merged_task.output, one_task.outputs["Output"]
    keys = (
        "rows_read",
        "rows_written",
        "rows_quarantined",
        "blank_lines",
        "quarantine_reasons",
        "partitions",
    )
    assert {k: merged[k] for k in keys} == {k: one[k] for k in keys}
    assert [t["task"] for t in merged["tasks"]] == [0, 1, 2]
    (merged_raw,) = [p for p in kfp_local.rglob("raw") if p.parent.name.startswith("ingest-merge")]
    (merged_q,) = [p for p in kfp_local.rglob("quarantine") if p.parent.name.startswith("ingest-merge")]
    one_raw = Path(one_task.outputs["raw"].path)
    assert read_raw(merged_raw).equals(read_raw(one_raw))
    q = read_quarantine(merged_q / "part-00000.parquet")
    assert q.num_rows == one["rows_quarantined"] > 0
    assert q.equals(read_quarantine(Path(one_task.outputs["quarantine"].path) / "part-00000.parquet"))
    assert not (merged_raw / "_quarantine").exists()  # the quarantine went to its own artifact
