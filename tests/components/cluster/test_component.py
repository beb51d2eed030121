"""The cluster components' task code with the cluster played by fakes: ``train_job`` publishes
its result (the job, the model files, model.json's metrics) through components.common.publish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.cluster import component, core, models, serving, training


class Artifact:
    """A kfp artifact as a task sees it (path, uri, metadata, log_metric)."""

    def __init__(self, path: Path) -> None:
        self.path, self.uri, self.metadata = str(path), f"minio://mlpipeline/v2/artifacts/{path.name}", {}

    def log_metric(self, name: str, value: float) -> None:
        self.metadata[name] = value


def test_train_job_logs_model_json_numeric_metrics_and_returns_its_summary(tmp_path, monkeypatch):
    model_metrics = {"test_rmse": 2.5, "validation_rmse": 2.75, "best_epoch": 3, "early": True, "note": "x"}
    ran: list[dict] = []

    def copy_model_dir(src_s3: str, dest_dir: str) -> list[str]:
        Path(dest_dir).mkdir(parents=True)
        (Path(dest_dir) / "model.json").write_text(json.dumps({"metrics": model_metrics}))
        return ["model.json", "model.npz"]

    monkeypatch.setattr(core, "load_settings", lambda ns: core.ClusterSettings(namespace=ns))
    monkeypatch.setattr(training, "run_train_job", lambda obj, timeout: ran.append(obj) or obj)
    monkeypatch.setattr(models, "copy_model_dir", copy_model_dir)
    splits, model, metrics = (
        Artifact(tmp_path / "splits"),
        Artifact(tmp_path / "model"),
        Artifact(tmp_path / "m" / "metrics"),
    )
    summary = component.train_job.python_func(
        splits=splits, model=model, metrics=metrics, namespace="team-a", workers=2, epochs=3,
        batch_size=512, learning_rate=0.001, hidden="64,32", weight_decay=0.0, dropout=0.0, seed=1,
        timeout_s=60,
    )  # fmt: skip
    (obj,) = ran
    name = obj["metadata"]["name"]
    assert obj["kind"] == "PyTorchJob" and obj["metadata"]["namespace"] == "team-a"
    assert summary == {
        "job": f"team-a/{name}",
        "model_files": ["model.json", "model.npz"],
        "metrics": model_metrics,  # model.json's, as written
        "artifacts": {"model": model.uri},
    }
    # the numbers only (booleans and text are not metrics), logged and saved to the artifact's file
    numeric = {"best_epoch": 3, "test_rmse": 2.5, "validation_rmse": 2.75}
    assert metrics.metadata == numeric
    assert json.loads(Path(metrics.path).read_text()) == numeric
    assert model.metadata["job"] == name and model.metadata["job_kind"] == "PyTorchJob"


@pytest.mark.parametrize("action", ["promoted", "rolled back"])
def test_deploy_with_a_canary_returns_a_promotion_and_fails_on_a_roll_back(tmp_path, monkeypatch, action):
    """canary_percent > 0 runs the canary rollout with that traffic share; a roll-back fails the
    task (the run must not read as succeeded while its model was refused), with the decision."""
    calls: list = []

    def deploy_canary(settings, name, model_s3, check, timeout):
        calls.append((settings.namespace, name, model_s3, check.traffic_percent, timeout))
        return {"action": action, "decision": f"{action} model version new", "reason": "3/8 trips off"}

    monkeypatch.setattr(core, "load_settings", lambda ns: core.ClusterSettings(namespace=ns))
    monkeypatch.setattr(serving, "deploy_canary", deploy_canary)
    model = Artifact(tmp_path / "model")
    model.uri = "minio://mlpipeline/v2/artifacts/run/train-job/model"
    run = lambda: component.deploy.python_func(  # noqa: E731
        model=model, name="taxi-fare", namespace="team-a", timeout_s=60, canary_percent=20
    )
    if action == "rolled back":
        with pytest.raises(
            RuntimeError, match="team-a/taxi-fare: rolled back model version new: 3/8 trips off"
        ):
            run()
    else:
        assert run()["action"] == "promoted"
    assert calls == [("team-a", "taxi-fare", "s3://mlpipeline/v2/artifacts/run/train-job/model", 20, 60)]
