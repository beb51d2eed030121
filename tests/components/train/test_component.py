# No "from __future__ import annotations": the pipeline below needs real annotations for kfp.

import json
from pathlib import Path

import pytest

kfp = pytest.importorskip("kfp")


def test_component_signature_is_the_agreed_one():
    from components.common.images import TRAINER_IMAGE
    from components.train.component import train

    spec = train.component_spec
    assert list(spec.inputs) == [
        "splits",
        "epochs",
        "batch_size",
        "learning_rate",
        "hidden",
        "weight_decay",
        "dropout",
        "workers",
        "seed",
        "backend",
    ]
    assert spec.inputs["backend"].default == "ddp"
    assert set(spec.outputs) == {"model", "metrics", "report", "summary_md", "Output"}
    assert spec.outputs["model"].type == "system.Model@0.0.1"
    assert spec.outputs["Output"].type == "Dict"
    assert spec.implementation.container.image == TRAINER_IMAGE


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")
def test_component_runs_through_kfp_local(splits, local_kfp):
    from kfp import dsl

    from components.common import model_dir
    from components.train.component import train

    @dsl.pipeline(name="train-only")
    def train_only(splits_uri: str) -> dict:
        data = dsl.importer(artifact_uri=splits_uri, artifact_class=dsl.Dataset, reimport=True)
        task = train(
            splits=data.output,
            epochs=4,
            batch_size=64,
            learning_rate=3e-3,
            hidden="32,16",
            weight_decay=0.0,
            dropout=0.1,
            workers=1,
            seed=3,
        )
        return task.outputs["Output"]

    run = train_only(splits_uri=str(splits))
    summary = run.output
    m = summary["metrics"]
    assert summary["epochs_run"] == 4 and summary["config"]["hidden"] == [32, 16]
    assert m["test_rmse"] < 0.25 * m["baseline_rmse"]
    task_dirs = list(Path(local_kfp).glob("*/train"))
    assert len(task_dirs) == 1
    loaded = model_dir.load(task_dirs[0] / "model")
    assert loaded.architecture.hidden == (32, 16) and loaded.meta["metrics"]["test_rmse"] == m["test_rmse"]
    assert (task_dirs[0] / "report").read_text().count("data:image/png;base64,") == 3
    assert "## Metrics" in (task_dirs[0] / "summary_md").read_text()
    executor = json.loads((task_dirs[0] / "executor_output.json").read_text())
    logged = executor["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert logged["test_rmse"] == pytest.approx(m["test_rmse"]) and logged["rows_per_s"] > 0
    assert set(logged) >= {"test_rmse", "validation_rmse", "baseline_rmse", "rows_per_s"}
    meta = executor["artifacts"]["model"]["artifacts"][0]["metadata"]
    assert meta["framework"] == "pytorch" and meta["test_rmse"] == pytest.approx(m["test_rmse"])
    assert json.loads((task_dirs[0] / "metrics").read_text())["test_rmse"] == pytest.approx(m["test_rmse"])
