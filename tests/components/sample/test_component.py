# No "from __future__ import annotations": the pipeline below needs real annotations for kfp.

import json
from pathlib import Path

import pytest

kfp = pytest.importorskip("kfp")


def test_component_signature_is_the_agreed_one():
    from components.common.images import COMPONENT_IMAGE
    from components.sample.component import sample

    spec = sample.component_spec
    assert list(spec.inputs) == ["clean", "population_stats", "rows", "seed", "shards", "fractions"]
    assert set(spec.outputs) == {"splits", "report", "summary_md", "metrics", "Output"}
    assert spec.outputs["Output"].type == "Dict"
    assert spec.implementation.container.image == COMPONENT_IMAGE


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")
def test_component_runs_through_kfp_local(inputs, local_kfp):
    from kfp import dsl

    from components.sample.component import sample

    clean, stats, _ = inputs

    @dsl.pipeline(name="sample-only")
    def sample_only(clean_uri: str, stats_uri: str) -> dict:
        clean_data = dsl.importer(artifact_uri=clean_uri, artifact_class=dsl.Dataset, reimport=True)
        population = dsl.importer(artifact_uri=stats_uri, artifact_class=dsl.Artifact, reimport=True)
        task = sample(
            clean=clean_data.output,
            population_stats=population.output,
            rows=3000,
            seed=5,
            shards=2,
            fractions="0.7,0.2,0.1",
        )
        return task.outputs["Output"]

    run = sample_only(clean_uri=str(clean), stats_uri=str(stats))
    summary = run.output
    assert summary["passed"] is True and summary["seed"] == 5
    assert summary["sample_rows"] == 3000 and summary["fractions"] == [0.7, 0.2, 0.1]
    task_dirs = list(Path(local_kfp).glob("*/sample"))
    assert len(task_dirs) == 1
    splits = task_dirs[0] / "splits"
    for split in ("train", "validation", "test"):
        assert sorted(p.name for p in (splits / split).iterdir()) == [
            "part-00000.parquet",
            "part-00001.parquet",
        ]
    assert "data:image/png;base64," in (task_dirs[0] / "report").read_text()
    assert "PASSED" in (task_dirs[0] / "summary_md").read_text()
    metrics = json.loads((task_dirs[0] / "executor_output.json").read_text())
    logged = metrics["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert logged["rows_train"] == summary["rows"]["train"] and logged["attempts"] == 1
