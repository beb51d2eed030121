"""The MLflow tracking server image (images/mlflow) run the way components/mlflow's Deployment
runs it, against a real PostgreSQL (tests/postgres.py) and an S3 server (moto) for artifacts.

The container is built from the Deployment in manifests/components/mlflow/mlflow.yaml, read
here, not restated: its user, read-only root, dropped capabilities and no-new-privileges; its
emptyDir as a tmpfs; each Secret volume as read-only files at its mount path (the keys its
``items`` name, mode ``defaultMode``, group ``fsGroup``); its env, with the ConfigMap's values
(the object store's endpoint and region) filled in. Containers share the host's network
(images/podman-setup.sh), so three settings change: PostgreSQL's host and port (the test
server's) and the server's port (a free one instead of 5000).

Checked: the entrypoint creates the ``mlflow`` database on the first start and not on the next;
``/health`` answers; a run logged from the host by the cluster pipeline's tracking step
(``pipelines.tracking.log_pipeline_run``, with no S3 credentials on the client) lands in
PostgreSQL, its artifacts in the bucket through the server's proxy; a wrong password is one
line and exit 2; no secret shows in ``podman inspect``, the logs or the processes' command lines.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests import postgres
from tests.conftest import free_port

from .conftest import IMAGE_NAMES, RUN_LABEL, SESSION_ID, logs, podman, wait_for_exit

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "manifests" / "components" / "mlflow" / "mlflow.yaml"
BUCKET = "mlpipeline"
ADMIN_DB = "optuna"  # components/optuna-postgres's POSTGRES_DB: the entrypoint connects to it first


def _deployment_pod() -> tuple[dict, dict]:
    """(pod spec, its one container) of the fareflow-mlflow Deployment."""
    (deployment,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d and d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


@pytest.fixture(scope="module")
def mlflow_image() -> str:
    if "mlflow" not in IMAGE_NAMES:
        pytest.skip("mlflow image not selected (FAREFLOW_IMAGE_NAMES)")
    from components.common.images import REGISTRY, TAG

    ref = f"{REGISTRY}/mlflow:{TAG}"
    if podman("image", "exists", ref, check=False).returncode != 0:
        pytest.fail(f"image not built: {ref} (run `make images`)")
    return ref


@pytest.fixture(scope="module")
def pg() -> Iterator[postgres.PostgresServer]:
    postgres.require()
    server = postgres.PostgresServer.start()
    try:
        server.create_database(ADMIN_DB)
        yield server
    finally:
        server.stop()


def _secret_dir(root: Path, keys: dict[str, str], volume: dict, fs_group: int) -> Path:
    """A Secret volume as the kubelet writes it: the ``items`` named (or every key), mode
    ``defaultMode``, group ``fsGroup``."""
    spec = volume["secret"]
    directory = root / volume["name"]
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    items = spec.get("items") or [{"key": k, "path": k} for k in keys]
    for item in items:
        path = directory / item["path"]
        path.write_text(keys[item["key"]])
        if os.geteuid() == 0:  # as the kubelet does; otherwise readable by all
            os.chown(path, 0, fs_group)
            path.chmod(spec.get("defaultMode", 0o644))
        else:
            path.chmod(0o644)
    return directory


def deployment_args(
    secret_data: dict[str, dict[str, str]],
    config: dict[str, str],
    overrides: dict[str, str],
    root: Path,
) -> list[str]:
    """``podman run`` arguments for the Deployment's container: its security context, volumes
    and env (``secretKeyRef``/``configMapKeyRef`` resolved from ``secret_data``/``config``)."""
    pod, c = _deployment_pod()
    sc, pod_sc = c["securityContext"], pod["securityContext"]
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    args = ["--user", f"{user}:{group}"]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    args += [f"--cap-drop={cap.lower()}" for cap in sc.get("capabilities", {}).get("drop", [])]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in c["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            args += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777"]
        elif "secret" in volume:
            keys = secret_data[volume["secret"]["secretName"]]
            host = _secret_dir(root, keys, volume, pod_sc.get("fsGroup", group))
            args += [
                "-v",
                f"{host}:{mount['mountPath']}:ro"
                if mount.get("readOnly")
                else f"{host}:{mount['mountPath']}",
            ]
        else:
            raise AssertionError(f"volume kind not played here: {volume}")
    env = {}
    for entry in c["env"]:
        source = entry.get("valueFrom", {})
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "configMapKeyRef" in source:
            env[entry["name"]] = config[source["configMapKeyRef"]["key"]]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[entry["name"]] = secret_data[ref["name"]][ref["key"]]
        else:
            raise AssertionError(f"env source not played here: {entry}")
    env.update(overrides)
    for name, value in env.items():
        args += ["--env", f"{name}={value}"]
    return args


@contextmanager
def mlflow_container(image: str, args: list[str], name: str) -> Iterator[str]:
    """The server container (detached, not auto-removed so its logs outlive it); its name."""
    podman(
        "run", "-d", "--name", name, "--label", f"{RUN_LABEL}={SESSION_ID}", "--network", "host", *args, image
    )
    try:
        yield name
    finally:
        podman("rm", "-f", "-t", "5", name, check=False)


def wait_healthy(name: str, url: str, timeout: float = 240) -> str:
    """The body of ``/health`` once it answers 200; fails with the logs if the container exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=3) as reply:
                if reply.status == 200:
                    return reply.read().decode()
        except OSError:
            pass
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        if state != "running":
            raise AssertionError(f"mlflow container {state} before /health answered:\n{logs(name)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"/health did not answer within {timeout:.0f}s:\n{logs(name)}")
        time.sleep(1)


def _model_dir(root: Path) -> Path:
    import numpy as np

    model = root / "model"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"model_version": "7", "features": ["distance_km"]}))
    np.savez(model / "model.npz", w=np.arange(12, dtype=np.float32).reshape(3, 4))
    return model


def _outputs(model: Path) -> dict:
    """Step summaries as the cluster pipeline hands them to its track step."""
    return {
        "ingest": {"rows_read": 3000, "rows_written": 2980, "rows_quarantined": 20},
        "tune": {
            "best_validation_rmse": 4.3,
            "trials": [{"number": 0, "value": 4.6, "state": "COMPLETE"}, {"number": 1, "value": 4.3, "state": "COMPLETE"}],
        },
        "train": {
            "metrics": {"test_rmse": 4.2, "test_mae": 2.9},
            "best_epoch": 2,
            "epochs_run": 2,
            "history": [
                {"epoch": 1, "validation_rmse": 4.8, "train_rmse": 5.0, "validation_mae": 3.2},
                {"epoch": 2, "validation_rmse": 4.4, "train_rmse": 4.5, "validation_mae": 3.0},
            ],
            "artifacts": {"model": str(model)},
        },
    }  # fmt: skip


def _sql(pg: postgres.PostgresServer, database: str, query: str, *params) -> list[tuple]:
    import psycopg

    with psycopg.connect(
        host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=database, connect_timeout=10
    ) as conn:
        return conn.execute(query, params).fetchall()


def _no_secret_anywhere(name: str, hidden: list[str]) -> None:
    """No secret value in the container's config (args, env), its logs, or any of its
    processes' command lines."""
    inspected = podman("inspect", name).stdout
    (config,) = json.loads(inspected)
    assert config["Config"]["Env"], "podman inspect shows no env at all"
    text = logs(name)
    cmdlines = podman(
        "exec", name, "python", "-c",
        "import pathlib;print('\\n'.join(p.read_bytes().replace(b'\\0', b' ').decode() "
        "for p in pathlib.Path('/proc').glob('[0-9]*/cmdline')))",
        check=False,
    ).stdout  # fmt: skip
    for value in hidden:
        assert value not in inspected, "a secret is in podman inspect"
        assert value not in text, "a secret is in the logs"
        assert value not in cmdlines, "a secret is on a process's command line"


def test_the_server_keeps_runs_in_postgres_and_artifacts_in_s3(mlflow_image, pg, s3, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from pipelines import tracking

    s3.bucket(BUCKET)
    s3_secret = {
        "AWS_ACCESS_KEY_ID": "fareflow-test-key",
        "AWS_SECRET_ACCESS_KEY": "s3-" + secrets.token_hex(12),
    }
    secret_data = {
        "fareflow-postgres": {
            "POSTGRES_USER": pg.user,
            "POSTGRES_PASSWORD": pg.password,
            "POSTGRES_DB": ADMIN_DB,
        },
        "fareflow-s3": s3_secret,
    }
    config = {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
    port = free_port()
    overrides = {"POSTGRES_HOST": pg.host, "POSTGRES_PORT": str(pg.port), "MLFLOW_PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    hidden = [pg.password, s3_secret["AWS_SECRET_ACCESS_KEY"]]
    assert not _sql(pg, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'mlflow'")

    # The client has no S3 endpoint or credentials: artifacts can only go through the server.
    for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    model = _model_dir(tmp_path)
    outputs = _outputs(model)

    first = deployment_args(secret_data, config, overrides, tmp_path / "start-1")
    with mlflow_container(mlflow_image, first, f"fareflow-mlflow-test-{port}-1") as name:
        assert wait_healthy(name, url) == "OK"
        assert "mlflow-server: created database mlflow" in logs(name)
        assert _sql(pg, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'mlflow'") == [(1,)]
        run_id = tracking.log_pipeline_run(
            outputs,
            namespace="fareflow",
            name="fareflow-taxi-fare-run-1",
            source="s3://mlpipeline/trips",
            parameters={"seed": 0, "epochs": 2.0, "tune_trials": 2},
            model_dir=model,
            tags={"kfp.run_id": "run-1"},
            experiment="cluster",
            config={"MLFLOW_TRACKING_URI": url},
        )
        assert run_id, logs(name)
        _no_secret_anywhere(name, hidden)

    # In PostgreSQL: the run, its params, metrics and tags; the experiment's artifacts proxied.
    ((run_name, status, experiment_id),) = _sql(
        pg, "mlflow", "SELECT name, status, experiment_id FROM runs WHERE run_uuid = %s", run_id
    )
    assert (run_name, status) == ("fareflow-taxi-fare-run-1", "FINISHED")
    ((experiment, location),) = _sql(
        pg,
        "mlflow",
        "SELECT name, artifact_location FROM experiments WHERE experiment_id = %s",
        experiment_id,
    )
    assert experiment == "cluster" and location.startswith("mlflow-artifacts:")
    params = dict(_sql(pg, "mlflow", "SELECT key, value FROM params WHERE run_uuid = %s", run_id))
    assert params["epochs"] == "2" and params["seed"] == "0"
    metrics = dict(_sql(pg, "mlflow", "SELECT key, value FROM latest_metrics WHERE run_uuid = %s", run_id))
    assert metrics["train.test_rmse"] == pytest.approx(4.2) and metrics["ingest.rows_read"] == 3000
    assert metrics["train.epoch.validation_rmse"] == pytest.approx(4.4)  # the last epoch's
    tags = dict(_sql(pg, "mlflow", "SELECT key, value FROM tags WHERE run_uuid = %s", run_id))
    assert tags["kfp.run_id"] == "run-1" and tags["fareflow.model_version"] == "7"

    # In the bucket, under the Deployment's MLFLOW_ARTIFACTS_DESTINATION: the very files.
    _, c = _deployment_pod()
    destination = next(e["value"] for e in c["env"] if e["name"] == "MLFLOW_ARTIFACTS_DESTINATION")
    bucket, _, prefix = destination.removeprefix("s3://").partition("/")
    assert bucket == BUCKET
    run_prefix = f"{prefix}/{experiment_id}/{run_id}/artifacts/"
    keys = s3.keys(BUCKET, run_prefix)
    assert {k.removeprefix(run_prefix) for k in keys} == {
        "model/model.json",
        "model/model.npz",
        "summary.json",
    }
    assert s3.get(BUCKET, run_prefix + "model/model.npz") == (model / "model.npz").read_bytes()
    assert json.loads(s3.get(BUCKET, run_prefix + "summary.json"))["train"]["best_epoch"] == 2

    # A second start on the same PostgreSQL: no new database, the run is still there.
    second = deployment_args(secret_data, config, overrides, tmp_path / "start-2")
    with mlflow_container(mlflow_image, second, f"fareflow-mlflow-test-{port}-2") as name:
        assert wait_healthy(name, url) == "OK"
        assert "created database" not in logs(name)
        run = MlflowClient(tracking_uri=url).get_run(run_id)
        assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
        client = MlflowClient(tracking_uri=url)
        assert {a.path for a in client.list_artifacts(run_id, "model")} == {
            "model/model.json",
            "model/model.npz",
        }
        _no_secret_anywhere(name, hidden)


@pytest.mark.parametrize("failure", ["wrong password", "no server"])
def test_a_wrong_setting_is_one_line_and_exit_2(mlflow_image, pg, s3, tmp_path, failure):
    wrong = "wrong-" + secrets.token_hex(8)
    password, pg_port = (wrong, pg.port) if failure == "wrong password" else (pg.password, free_port())
    secret_data = {
        "fareflow-postgres": {
            "POSTGRES_USER": pg.user,
            "POSTGRES_PASSWORD": password,
            "POSTGRES_DB": ADMIN_DB,
        },
        "fareflow-s3": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "fareflow-test-s3-secret"},
    }
    config = {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
    port = free_port()
    # A refused password must not wait for the server at all; an absent server waits 3 s here.
    wait_s = "300" if failure == "wrong password" else "3"
    overrides = {
        "POSTGRES_HOST": pg.host, "POSTGRES_PORT": str(pg_port), "MLFLOW_PORT": str(port), "POSTGRES_WAIT_S": wait_s,
    }  # fmt: skip
    args = deployment_args(secret_data, config, overrides, tmp_path)
    started = time.monotonic()
    with mlflow_container(mlflow_image, args, f"fareflow-mlflow-test-{port}-fail") as name:
        code = wait_for_exit(name, 90)
        elapsed = time.monotonic() - started
        text = logs(name)
        inspected = podman("inspect", name).stdout
    assert code == 2, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"mlflow-server: error: PostgreSQL at {pg.host}:{pg_port}: "
    ), text
    if failure == "wrong password":
        assert "password authentication failed" in lines[0]
        assert elapsed < 60, f"a refused password should fail at once, took {elapsed:.0f}s"
    else:
        assert "Connection refused" in lines[0]
    for value in (password, "fareflow-test-s3-secret"):
        assert value not in text and value not in inspected
