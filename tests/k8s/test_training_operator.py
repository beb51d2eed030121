"""components.cluster's training path against the real Training Operator: the PyTorchJob that
``train_job`` builds is admitted (webhook, Pod Security restricted), reconciled into Master and
Worker pods with the operator's env, played to an end by kwok, and waited on by fareflow's code."""

from __future__ import annotations

import uuid

import pytest

from components.cluster import core, training
from components.common import k8s_api
from components.common.errors import UserError

from .conftest import Tier, wait_for

pytestmark = pytest.mark.k8s


def play(obj: dict, exit_code: int = 0, run_time: str = "1s", replica: str | None = None) -> dict:
    """Have kwok end the job's pods (all, or one replica type's) with ``exit_code``."""
    for rtype, spec in obj["spec"]["pytorchReplicaSpecs"].items():
        if replica in (None, rtype):
            annotations = spec["template"]["metadata"].setdefault("annotations", {})
            annotations["kwok.fareflow.io/exit-code"] = str(exit_code)
            annotations["kwok.fareflow.io/run-time"] = run_time
    return obj


@pytest.fixture
def project(tier: Tier, namespace: str) -> str:
    """A namespace with the ServiceAccount the trainer pods run as (as manifests/base makes it)."""
    tier.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "fareflow-trainer", "namespace": namespace}, "automountServiceAccountToken": False}])  # fmt: skip
    return namespace


def job(namespace: str, workers: int = 2) -> dict:
    settings = core.ClusterSettings(namespace=namespace, image_tag="0.1.0")
    name = f"train-{uuid.uuid4().hex[:8]}"
    return training.train_job_object(
        settings, name, "s3://mlpipeline/v2/artifacts/splits", f"s3://mlpipeline/fareflow/models/{name}",
        training.TrainParams(epochs=2), workers,
    )  # fmt: skip


def pods(tier: Tier, namespace: str, name: str) -> dict[str, dict]:
    items = tier.get("pods", "-n", namespace, "-l", f"{training.JOB_NAME_LABEL}={name}")["items"]
    return {p["metadata"]["name"]: p for p in items}


def env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_train_job_runs_to_succeeded_through_master_and_worker_pods(kube_env: Tier, project: str):
    obj = play(job(project, workers=2))
    name = obj["metadata"]["name"]
    done = training.run_train_job(obj, timeout=120, poll=0.5)
    assert k8s_api.condition(done, "Succeeded")

    found = pods(kube_env, project, name)
    assert sorted(found) == [f"{name}-master-0", f"{name}-worker-0"]
    for pod_name, pod in found.items():
        assert pod["status"]["phase"] == "Succeeded", pod_name
        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["torchrun", "--module", "components.train"]
        assert container["args"][:4] == ["--splits", "s3://mlpipeline/v2/artifacts/splits", "--output", f"s3://mlpipeline/fareflow/models/{name}"]  # fmt: skip
        got = env(container)
        # What the operator injects for torchrun (only because a Master replica exists).
        assert got["PET_MASTER_ADDR"] == got["MASTER_ADDR"] == f"{name}-master-0"
        assert got["PET_MASTER_PORT"] == got["MASTER_PORT"] == "23456"
        assert got["PET_NNODES"] == got["WORLD_SIZE"] == "2"
        assert got["PET_NPROC_PER_NODE"] == "1"
        assert got["PET_NODE_RANK"] == got["RANK"] == ("0" if "master" in pod_name else "1")
    worker = found[f"{name}-worker-0"]
    (init,) = worker["spec"]["initContainers"]
    assert init["name"] == "init-pytorch" and init["image"].startswith("alpine:")
    assert init["securityContext"]["allowPrivilegeEscalation"] is False  # admitted under restricted


def test_train_job_reuses_a_job_that_already_succeeded(kube_env: Tier, project: str):
    obj = play(job(project, workers=1))
    first = training.run_train_job(obj, timeout=120, poll=0.5)
    again = training.run_train_job(obj, timeout=5, poll=0.5)
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    assert again["metadata"]["generation"] == first["metadata"]["generation"]


def test_a_failing_job_is_reported_then_replaced_on_the_next_run(kube_env: Tier, project: str):
    failing = play(job(project, workers=2), exit_code=0)
    play(failing, exit_code=1, replica="Master")
    name = failing["metadata"]["name"]
    with pytest.raises(UserError) as err:
        training.run_train_job(failing, timeout=120, poll=0.5)
    message = str(err.value)
    assert f"PyTorchJob {project}/{name} Failed" in message
    assert "Master" in message  # the operator's reason: which replica failed
    failed_uid = kube_env.get("pytorchjob", "-n", project, name)["metadata"]["uid"]

    # The retried task (same name) deletes the failed job and runs a new one to success.
    fixed = play(job(project, workers=2))
    fixed["metadata"]["name"] = name
    for spec in fixed["spec"]["pytorchReplicaSpecs"].values():
        spec["template"]["metadata"]["labels"] = dict(failing["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["labels"])  # fmt: skip
    done = training.run_train_job(fixed, timeout=180, poll=0.5)
    assert done["metadata"]["uid"] != failed_uid
    assert k8s_api.condition(done, "Succeeded")


def test_the_operators_webhook_refuses_what_it_refuses(tier: Tier, project: str):
    obj = job(project, workers=1)
    obj["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = 2
    with pytest.raises(Exception) as err:
        tier.apply([obj])
    assert "validator.pytorchjob.training-operator.kubeflow.org" in str(err.value)
    assert "must be 1" in str(err.value)


def test_a_killed_replica_is_restarted_by_the_exit_code_policy(tier: Tier, project: str):
    """restartPolicy ExitCode: 137 (SIGKILL: OOM, preemption) restarts the pod, it does not fail the job."""
    obj = play(job(project, workers=1), exit_code=137, run_time="1s")
    name = obj["metadata"]["name"]
    tier.apply([obj])
    first = wait_for(lambda: pods(tier, project, name).get(f"{name}-master-0"), 60, "master pod")
    uid = first["metadata"]["uid"]
    wait_for(
        lambda: (p := pods(tier, project, name).get(f"{name}-master-0")) and p["metadata"]["uid"] != uid,
        90, "master pod recreated after exit 137",
    )  # fmt: skip
    conditions = {
        c["type"]: c["status"] for c in tier.get("pytorchjob", "-n", project, name)["status"]["conditions"]
    }
    assert conditions.get("Failed") != "True"
