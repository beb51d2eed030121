# No "from __future__ import annotations": the pipeline below needs real annotations for kfp.

import json
from pathlib import Path
from typing import NamedTuple

import pytest

kfp = pytest.importorskip("kfp")


def test_component_signature_is_the_agreed_one():
    from components.common.images import TRAINER_IMAGE
    from components.tune.component import tune

    spec = tune.component_spec
    assert list(spec.inputs) == [
        "splits", "trials", "epochs", "seed", "learning_rate", "batch_size", "hidden", "weight_decay", "dropout",
        "workers",
    ]  # fmt: skip
    assert spec.inputs["workers"].default == 1  # one process: the study in memory, as before
    assert {name: out.type for name, out in spec.outputs.items()} == {
        "report": "system.HTML@0.0.1",
        "summary_md": "system.Markdown@0.0.1",
        "metrics": "system.Metrics@0.0.1",
        "learning_rate": "Float",
        "batch_size": "Integer",
        "hidden": "String",
        "weight_decay": "Float",
        "dropout": "Float",
        "summary": "Dict",
    }
    assert spec.implementation.container.image == TRAINER_IMAGE


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning")
def test_component_runs_through_kfp_local_and_its_named_outputs_come_back(make_splits, local_kfp):
    from kfp import dsl

    from components.common.images import COMPONENT_IMAGE
    from components.train.config import parse_hidden
    from components.tune.component import tune

    @dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
    def echo(learning_rate: float, batch_size: int, hidden: str) -> str:
        return f"{learning_rate!r}|{batch_size}|{hidden}"

    class Outputs(NamedTuple):
        summary: dict
        echoed: str
        hidden: str

    @dsl.pipeline(name="tune-only")
    def tune_only(splits_uri: str) -> Outputs:
        data = dsl.importer(artifact_uri=splits_uri, artifact_class=dsl.Dataset, reimport=True)
        task = tune(
            splits=data.output, trials=3, epochs=2, seed=7,
            learning_rate=0.001, batch_size=1024, hidden="128,64,32", weight_decay=0.0001, dropout=0.0,
        )  # fmt: skip
        downstream = echo(
            learning_rate=task.outputs["learning_rate"],
            batch_size=task.outputs["batch_size"],
            hidden=task.outputs["hidden"],
        )
        return Outputs(
            summary=task.outputs["summary"], echoed=downstream.output, hidden=task.outputs["hidden"]
        )

    run = tune_only(splits_uri=str(make_splits(n=1500)))
    summary, echoed = run.outputs["summary"], run.outputs["echoed"]
    best = summary["best_params"]
    assert (
        len(summary["trials"]) == 3 and summary["best_validation_rmse"] <= summary["default_validation_rmse"]
    )
    # the summary crosses kfp as a protobuf Struct: its numbers come back as floats (2048.0)
    assert echoed == f"{float(best['learning_rate'])!r}|{int(best['batch_size'])}|{best['hidden']}"
    assert run.outputs["hidden"] == best["hidden"] and parse_hidden(run.outputs["hidden"])
    task_dirs = list(Path(local_kfp).glob("*/tune"))
    assert len(task_dirs) == 1
    assert (task_dirs[0] / "report").read_text().count("data:image/png;base64,") == 4  # Optuna's four plots
    assert "## Best hyper-parameters" in (task_dirs[0] / "summary_md").read_text()
    executor = json.loads((task_dirs[0] / "executor_output.json").read_text())
    logged = executor["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    assert logged["best_validation_rmse"] == pytest.approx(summary["best_validation_rmse"])
    assert logged["trials_complete"] + logged["trials_pruned"] + logged["trials_failed"] == 3
    assert json.loads((task_dirs[0] / "metrics").read_text())["trials_complete"] == logged["trials_complete"]
