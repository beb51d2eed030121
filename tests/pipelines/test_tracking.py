"""Experiment tracking (pipelines.tracking, .tracked, .mlflow_store): real pipeline runs
logged to a real local MLflow store (SQLite + file artifacts, what `fareflow run` uses by
default) and read back through MLflow's own client; and the same store served by a full
`mlflow server` (the UI's)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from pipelines import local, mlflow_store, runs, tracked, tracking
from tests.conftest import free_port

pytest.importorskip("mlflow", reason="mlflow-skinny is not installed (pip install mlflow-skinny==3.17.2)")

REPO = Path(__file__).resolve().parents[2]
UI_VENV = REPO / ".venv-mlflow"
SMALL_RUN = ["--rows", "3000", "--months", "2015-01:2015-01", "--tune-trials", "2", "--epochs", "2"]


def _run_dir(workdir: Path) -> Path:
    (path,) = [p for p in workdir.iterdir() if (p / runs.RUN_RECORD).is_file() and not p.is_symlink()]
    return path


def _no_tracking_argv() -> list[str]:
    """The hook in pipelines.local is optional here: these tests call tracking themselves."""
    return ["--no-tracking"] if "--no-tracking" in local.build_parser().format_help() else []


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory) -> Path:
    """A real, small `fareflow run` (generated data, 2 tune trials, 2 epochs), not logged."""
    workdir = tmp_path_factory.mktemp("tracked")
    assert local.main([*SMALL_RUN, "--workdir", str(workdir), *_no_tracking_argv()]) == 0
    return _run_dir(workdir)


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory) -> Path:
    """A real failed `fareflow run`: ingest finds no trip files (exit 2, its one-line error)."""
    base = tmp_path_factory.mktemp("failed")
    (base / "empty").mkdir()
    argv = ["--source", str(base / "empty"), "--workdir", str(base / "w"), *_no_tracking_argv()]
    assert local.main(argv) != 0
    return _run_dir(base / "w")


@pytest.fixture(scope="module")
def logged(pipeline_run, tmp_path_factory):
    """The successful run logged to a fresh SQLite store; (store URI, run.json after, MLflow run)."""
    from mlflow.tracking import MlflowClient

    store = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    entry = tracking.log_run(pipeline_run, uri)
    record = json.loads((pipeline_run / runs.RUN_RECORD).read_text())
    run = MlflowClient(tracking_uri=uri).get_run(entry["mlflow_run_id"])
    return uri, record, run


def test_params_tags_and_status_are_what_run_json_says(logged):
    uri, record, run = logged
    assert record["tracking"]["logged"] is True and record["tracking"]["uri"] == uri
    assert record["tracking"]["mlflow_run_id"] == run.info.run_id
    assert run.info.run_name == record["run_id"] and run.info.status == "FINISHED"
    params = run.data.params
    for key, value in record["parameters"].items():
        assert params[key] == str(value), key
    assert params["generated.rows"] == "3000" and params["generated.months"] == "2015-01:2015-01"
    tags = run.data.tags
    assert tags["fareflow.run_id"] == record["run_id"] and tags["fareflow.status"] == "succeeded"
    assert tags["fareflow.source"] == record["source"] and tags["fareflow.seed"] == "0"
    assert tags["fareflow.code.digest"] == record["code"]["digest"]
    assert tags["fareflow.code.label"] == record["code"]["label"]
    assert tags["fareflow.code.version"] == record["code"]["version"]
    if record["code"]["git"]:
        assert tags["mlflow.source.git.commit"] == record["code"]["git"]
    assert "fareflow.error" not in tags
    # the run's times are fareflow's own (run.json started + seconds), not the logging call's
    assert run.info.end_time - run.info.start_time == pytest.approx(record["seconds"] * 1000, abs=2)


def test_metrics_and_epoch_series_are_the_runs_figures(logged, pipeline_run):
    uri, record, run = logged
    from mlflow.tracking import MlflowClient

    metrics = json.loads((pipeline_run / runs.METRICS).read_text())
    summary = json.loads((pipeline_run / runs.SUMMARY).read_text())
    # metrics.json's figures, exactly; beside them only the step series (their last values)
    flat = {k: v for k, v in run.data.metrics.items() if k in metrics}
    assert metrics and flat == {k: float(v) for k, v in metrics.items()}
    assert set(run.data.metrics) - set(metrics) == {
        "train.epoch.validation_rmse",
        "train.epoch.train_rmse",
        "train.epoch.validation_mae",
        "tune.trial.validation_rmse",
    }
    client = MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(run.info.run_id, "train.epoch.validation_rmse")
    # the values as logged: MLflow keeps doubles, so they come back exactly
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (h["epoch"], h["validation_rmse"]) for h in summary["train"]["history"]
    ]
    assert len(history) == summary["train"]["epochs_run"] >= 1
    trials = client.get_metric_history(run.info.run_id, "tune.trial.validation_rmse")
    complete = [t for t in summary["tune"]["trials"] if t["state"] == "COMPLETE"]
    assert sorted((m.step, m.value) for m in trials) == sorted((t["number"], t["value"]) for t in complete)
    assert len(complete) == 2  # --tune-trials 2
    config = summary["train"]["config"]
    assert run.data.params["train.learning_rate"] == str(config["learning_rate"])
    # kfp.local hands whole numbers back as floats (128.0): logged as the integers they are
    assert run.data.params["train.hidden"] == ",".join(str(int(h)) for h in config["hidden"])
    assert run.data.params["train.batch_size"] == str(int(config["batch_size"]))


def test_artifacts_are_the_runs_files_and_its_model(logged, pipeline_run):
    uri, record, run = logged
    import mlflow

    local_copy = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, tracking_uri=uri))
    for name in (runs.METRICS, runs.SUMMARY):
        assert (local_copy / name).read_bytes() == (pipeline_run / name).read_bytes()
    logged_record = json.loads((local_copy / runs.RUN_RECORD).read_text())
    assert logged_record == {k: v for k, v in record.items() if k != "tracking"}
    reports = sorted(p.name for p in (pipeline_run / "reports").iterdir())
    assert sorted(p.name for p in (local_copy / "reports").iterdir()) == reports
    assert "train.html" in reports
    model_dir = Path(json.loads((pipeline_run / runs.SUMMARY).read_text())["train"]["artifacts"]["model"])
    for name in tracked.MODEL_FILES:
        assert (local_copy / "model" / name).read_bytes() == (model_dir / name).read_bytes()
    model = json.loads((model_dir / "model.json").read_text())
    assert run.data.tags["fareflow.model_version"] == model["model_version"]
    assert not (local_copy / "logs").exists()  # logs go with runs that did not succeed


def test_logging_again_finds_the_run_instead_of_a_duplicate(logged, pipeline_run):
    from mlflow.tracking import MlflowClient

    uri, _, run = logged
    again = tracking.log_run(pipeline_run, uri)
    assert again["existing"] is True and again["mlflow_run_id"] == run.info.run_id
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(mlflow_store.DEFAULT_EXPERIMENT)
    assert len(client.search_runs([experiment.experiment_id])) == 1


def test_a_failed_run_is_logged_failed_with_its_error_and_logs(failed_run, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    entry = tracking.log_run(failed_run, uri, experiment="failures")
    record = json.loads((failed_run / runs.RUN_RECORD).read_text())
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(entry["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["fareflow.status"] == "failed"
    assert run.data.tags["fareflow.error"] == record["error"].splitlines()[0]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"run.json", "logs"} <= names and "model" not in names
    logs = {a.path for a in client.list_artifacts(run.info.run_id, "logs")}
    assert "logs/ingest.log" in logs
    assert client.get_experiment(entry["experiment_id"]).name == "failures"


def test_the_default_store_is_sqlite_beside_the_runs_with_artifacts_there(
    pipeline_run, tmp_path, monkeypatch
):
    """No URI anywhere: WORKDIR/mlflow.db and WORKDIR/mlartifacts (a copy of the run, so the
    module's run stays unlogged in its own workdir)."""
    import shutil

    monkeypatch.delenv(mlflow_store.TRACKING_URI_ENV, raising=False)
    workdir = tmp_path / "w"
    copy = workdir / pipeline_run.name
    shutil.copytree(pipeline_run, copy)
    entry = tracking.log_run(copy)
    assert entry["uri"] == f"sqlite:///{workdir.resolve() / 'mlflow.db'}"
    assert (workdir / "mlflow.db").is_file()
    artifacts = Path(entry["artifact_uri"].removeprefix("file://"))
    assert artifacts.is_relative_to(workdir.resolve() / "mlartifacts") and (artifacts / "run.json").is_file()
    monkeypatch.setenv(mlflow_store.TRACKING_URI_ENV, "sqlite:////elsewhere/x.db")
    assert mlflow_store.resolve_uri(workdir) == "sqlite:////elsewhere/x.db"
    assert mlflow_store.resolve_uri(workdir, "http://h:5000") == "http://h:5000"


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("bogus-scheme://nowhere", id="bad-uri"),
        pytest.param("http://127.0.0.1:{port}", id="server-down"),
    ],
)
def test_a_tracking_failure_is_one_warning_and_recorded(failed_run, tmp_path, capsys, uri):
    import shutil

    uri = uri.format(port=free_port())
    copy = tmp_path / "w" / failed_run.name
    shutil.copytree(failed_run, copy)
    capsys.readouterr()
    started = time.monotonic()
    args = argparse.Namespace(tracking_uri=uri, experiment="fareflow", no_tracking=False)
    assert tracking.track_finished_run(copy, args) is None
    assert time.monotonic() - started < 60  # bounded retries: a down server costs seconds
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("fareflow run: warning: not logged to MLflow: ") and uri in err
    assert f"fareflow runs log {copy.name}" in err
    record = json.loads((copy / runs.RUN_RECORD).read_text())
    assert record["tracking"]["logged"] is False and record["tracking"]["uri"] == uri
    assert uri in record["tracking"]["error"]
    assert record["status"] == "failed"  # the record is otherwise untouched
    assert runs.mlflow_cell(record) == "not logged"


def test_no_tracking_logs_nothing(failed_run, tmp_path, monkeypatch):
    import shutil

    workdir = tmp_path / "w"
    copy = workdir / failed_run.name
    shutil.copytree(failed_run, copy)
    monkeypatch.delenv(mlflow_store.TRACKING_URI_ENV, raising=False)
    args = argparse.Namespace(tracking_uri=None, experiment="fareflow", no_tracking=True)
    assert tracking.track_finished_run(copy, args) is None
    assert not (workdir / "mlflow.db").exists() and not (workdir / "mlartifacts").exists()
    record = json.loads((copy / runs.RUN_RECORD).read_text())
    assert record["tracking"] == {"logged": False, "reason": "--no-tracking"}
    assert runs.mlflow_cell(record) == "off (--no-tracking)"


def test_runs_log_and_list_show_the_mlflow_run(failed_run, tmp_path, capsys, monkeypatch):
    import shutil

    workdir = tmp_path / "w"
    shutil.copytree(failed_run, workdir / failed_run.name)
    monkeypatch.delenv(mlflow_store.TRACKING_URI_ENV, raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # the table's columns unwrapped
    capsys.readouterr()
    assert runs.main(["--workdir", str(workdir), "log"]) == 0
    record = json.loads((workdir / failed_run.name / runs.RUN_RECORD).read_text())
    mlflow_id = record["tracking"]["mlflow_run_id"]
    assert f"MLflow run {mlflow_id}" in capsys.readouterr().out
    assert runs.main(["--workdir", str(workdir), "log", "--all"]) == 0
    assert "nothing to log" in capsys.readouterr().out
    assert runs.main(["--workdir", str(workdir), "list"]) == 0
    assert mlflow_id[:8] in capsys.readouterr().out
    assert runs.main(["--workdir", str(workdir), "show"]) == 0
    assert json.loads(capsys.readouterr().out)["tracking"]["mlflow_run_id"] == mlflow_id
    assert runs.main(["--workdir", str(workdir), "log", "--tracking-uri", "bogus-scheme://x"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("fareflow runs: error: ") and "bogus-scheme://x" in err[0]


def test_fareflow_run_logs_itself_when_it_has_the_hook(tmp_path, monkeypatch):
    """With the hook in pipelines.local: every finished `fareflow run` is logged."""
    if "--no-tracking" not in local.build_parser().format_help():
        pytest.skip("pipelines/local.py does not call tracking.track_finished_run yet")
    monkeypatch.delenv(mlflow_store.TRACKING_URI_ENV, raising=False)
    (tmp_path / "empty").mkdir()
    assert local.main(["--source", str(tmp_path / "empty"), "--workdir", str(tmp_path / "w")]) == 2
    record = json.loads((_run_dir(tmp_path / "w") / runs.RUN_RECORD).read_text())
    assert record["tracking"]["logged"] is True and (tmp_path / "w" / "mlflow.db").is_file()


# ---------------------------------------------------------------- the UI's server (full mlflow)


def _ui_server_or_skip() -> Path:
    mlflow = UI_VENV / "bin" / "mlflow"
    if not mlflow.is_file():
        if os.environ.get("MLFLOW_UI_REQUIRED") == "1":
            pytest.fail(f"{mlflow} missing (MLFLOW_UI_REQUIRED=1): make mlflow-ui creates it")
        pytest.skip(f"no {UI_VENV} (full mlflow for the UI; make mlflow-ui creates it)")
    return mlflow


@pytest.fixture
def ui_server(logged, tmp_path):
    """`mlflow server` of the UI's venv (full mlflow 3.17.2) over the store skinny wrote."""
    mlflow = _ui_server_or_skip()
    uri, _, _ = logged
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)]
        + ["--artifacts-destination", (tmp_path / "served-artifacts").as_uri(), "--workers", "1"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"mlflow server did not start:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


def test_the_ui_server_reads_the_store_skinny_wrote(ui_server, logged):
    _, record, run = logged
    with urllib.request.urlopen(
        f"{ui_server}/api/2.0/mlflow/experiments/get-by-name?experiment_name=fareflow", timeout=30
    ) as reply:
        experiment = json.loads(reply.read())["experiment"]
    found = _post(
        f"{ui_server}/api/2.0/mlflow/runs/search",
        {
            "experiment_ids": [experiment["experiment_id"]],
            "filter": f"tags.`fareflow.run_id` = '{record['run_id']}'",
        },
    )["runs"]
    assert [r["info"]["run_id"] for r in found] == [run.info.run_id]
    served = found[0]["data"]
    assert {m["key"]: m["value"] for m in served["metrics"]} == pytest.approx(run.data.metrics)
    assert {p["key"]: p["value"] for p in served["params"]} == run.data.params
    assert found[0]["info"]["run_name"] == record["run_id"] and found[0]["info"]["status"] == "FINISHED"


def test_the_cluster_step_logs_through_the_server_with_proxied_artifacts(ui_server, pipeline_run, tmp_path):
    """What the cluster pipeline's tracking step does, against a real `mlflow server` over HTTP:
    the step summaries, parameters and model go in; artifacts are uploaded through the server
    (mlflow-artifacts:), so the client needs no store credentials."""
    from mlflow.tracking import MlflowClient

    outputs = json.loads((pipeline_run / runs.SUMMARY).read_text())
    model_dir = tracked.model_dir_of(outputs)
    parameters = {"seed": 0, "epochs": 2.0, "tune_trials": 2}  # kfp hands whole numbers as floats
    run_id = tracking.log_pipeline_run(
        outputs,
        namespace="fareflow",
        name="fareflow-taxi-fare-run-1",
        source="s3://bucket/trips",
        parameters=parameters,
        model_dir=model_dir,
        tags={"kfp.run_id": "1234"},
        experiment="cluster",
        config={"MLFLOW_TRACKING_URI": ui_server},
    )
    client = MlflowClient(tracking_uri=ui_server)
    run = client.get_run(run_id)
    assert run.info.run_name == "fareflow-taxi-fare-run-1" and run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert run.data.params["epochs"] == "2" and run.data.params["seed"] == "0"
    assert run.data.tags["kfp.run_id"] == "1234" and run.data.tags["fareflow.source"] == "s3://bucket/trips"
    assert run.data.metrics == pytest.approx(
        {**{k: float(v) for k, v in runs.step_metrics(outputs).items()}, **_last_series(outputs)}
    )
    names = {a.path for a in client.list_artifacts(run_id)}
    assert names == {"model", "summary.json"}
    served = tmp_path / "served-artifacts"
    assert [p.name for p in served.rglob("model.npz")] == ["model.npz"]  # stored by the server


def _last_series(outputs: dict) -> dict[str, float]:
    return {name: max(points)[1] for name, points in tracked.series_of(outputs).items()}


def test_the_cluster_step_logs_nothing_without_a_server_and_never_fails(capsys):
    assert tracking.cluster_tracking_uri({}) == ""
    assert tracking.cluster_tracking_uri(
        {"NAMESPACE": "team-b", "MLFLOW_TRACKING_HOST": "fareflow-mlflow"}
    ) == ("http://fareflow-mlflow.team-b.svc:5000")
    assert tracking.cluster_tracking_uri(
        {"MLFLOW_TRACKING_URI": "https://mlflow.example", "MLFLOW_TRACKING_HOST": "x"}
    ) == ("https://mlflow.example")
    common = {"namespace": "fareflow", "name": "r", "source": "s", "parameters": {}, "model_dir": None}
    assert tracking.log_pipeline_run({}, config={}, **common) == ""
    assert "no tracking server" in capsys.readouterr().out
    down = f"http://127.0.0.1:{free_port()}"
    assert tracking.log_pipeline_run({}, config={"MLFLOW_TRACKING_URI": down}, **common) == ""
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("warning: not logged to MLflow: ") and down in out[0]


def test_the_tracking_component_compiles_into_a_pipeline(tmp_path):
    import yaml
    from kfp import compiler, dsl

    from pipelines.tracking_component import track

    @dsl.pipeline(name="t")
    def p():  # no annotations: this module's are strings (from __future__), which kfp refuses
        model = dsl.importer(artifact_uri="s3://bucket/model", artifact_class=dsl.Model, reimport=False)
        track(
            ingest={},
            quality={},
            sample={},
            tune={},
            train={},
            model=model.output,
            source="s3://bucket/trips",
            parameters={"seed": 0},
            namespace="fareflow",
            run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        )

    compiler.Compiler().compile(p, str(tmp_path / "p.yaml"))
    spec = yaml.safe_load((tmp_path / "p.yaml").read_text())
    inputs = spec["components"]["comp-track"]["inputDefinitions"]
    assert set(inputs["artifacts"]) == {"model"}
    assert {"run_name", "run_id", "namespace", "parameters"} <= set(inputs["parameters"])
    executor = spec["deploymentSpec"]["executors"]["exec-track"]["container"]
    assert "tracking.log_pipeline_run" in "\n".join(executor["command"])
