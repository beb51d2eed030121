"""The elastic PyTorchJob (``train_job_object(..., max_restarts=N)``) against the real Training
Operator v1.9.2: admitted by its webhook (an elasticPolicy needs a Worker spec), reconciled
into Worker pods only with torchrun's rendezvous env (pkg/controller.v1/pytorch/elastic.go),
a worker killed with 137 recreated (ExitCode policy) without failing the job, and the job
Succeeded once its workers end with 0; exit 1 fails it."""

from __future__ import annotations

import json
import uuid

import pytest

from components.cluster import core, training
from components.common import k8s, k8s_api
from components.common.errors import UserError

from .conftest import Tier, wait_for
from .test_training_operator import env, play, pods

pytestmark = pytest.mark.k8s


@pytest.fixture
def project(tier: Tier, namespace: str) -> str:
    tier.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "fareflow-trainer", "namespace": namespace}, "automountServiceAccountToken": False}])  # fmt: skip
    return namespace


def elastic_job(namespace: str, workers: int = 2, max_restarts: int = 3) -> dict:
    settings = core.ClusterSettings(namespace=namespace, image_tag="0.1.0")
    name = f"elastic-{uuid.uuid4().hex[:8]}"
    return training.train_job_object(
        settings, name, "s3://mlpipeline/v2/artifacts/splits", f"s3://mlpipeline/fareflow/models/{name}",
        training.TrainParams(epochs=2), workers, max_restarts=max_restarts,
    )  # fmt: skip


def test_elastic_job_runs_worker_pods_with_torchruns_rendezvous_env(kube_env: Tier, project: str):
    obj = play(elastic_job(project, workers=2, max_restarts=3))
    name = obj["metadata"]["name"]
    done = training.run_train_job(obj, timeout=120, poll=0.5)
    assert k8s_api.condition(done, "Succeeded")
    stored = kube_env.get("pytorchjob", "-n", project, name)
    assert stored["spec"]["elasticPolicy"]["maxRestarts"] == 3
    assert stored["spec"]["elasticPolicy"]["rdzvBackend"] == "c10d"

    found = pods(kube_env, project, name)
    assert sorted(found) == [f"{name}-worker-0", f"{name}-worker-1"]  # no Master
    for pod_name, pod in found.items():
        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["torchrun", "--module", "components.train"]
        got = env(container)
        assert got["PET_RDZV_BACKEND"] == "c10d"
        assert got["PET_RDZV_ENDPOINT"] == f"{name}-worker-0:{k8s.ELASTIC_RDZV_PORT}"
        assert got["PET_NNODES"] == "2:2"
        assert got["PET_MAX_RESTARTS"] == "3"
        assert got["PET_NPROC_PER_NODE"] == "1"
        # torchrun sets RANK/WORLD_SIZE for its processes; the operator sets none without a Master
        assert "MASTER_ADDR" not in got and "RANK" not in got and "WORLD_SIZE" not in got, pod_name
        assert not pod["spec"].get("initContainers"), pod_name  # nothing waits on a master


def test_a_killed_elastic_worker_is_recreated_and_the_job_still_succeeds(kube_env: Tier, project: str):
    tier = kube_env
    obj = play(elastic_job(project, workers=2), exit_code=137, run_time="2s")
    name = obj["metadata"]["name"]
    tier.apply([obj])
    first = wait_for(
        lambda: len(pods(tier, project, name)) == 2 and pods(tier, project, name), 60, "2 worker pods"
    )
    uids = {n: p["metadata"]["uid"] for n, p in first.items()}
    # pods made from now on end with 0 (the ones running keep their 137)
    patch = {"spec": {"pytorchReplicaSpecs": {"Worker": {"template": {"metadata": {"annotations": {"kwok.fareflow.io/exit-code": "0"}}}}}}}  # fmt: skip
    tier.kubectl("patch", "pytorchjob", "-n", project, name, "--type", "merge", "-p", json.dumps(patch))
    worker0 = f"{name}-worker-0"
    wait_for(
        lambda: (p := pods(tier, project, name).get(worker0)) and p["metadata"]["uid"] != uids[worker0],
        90, "worker-0 recreated after exit 137",
    )  # fmt: skip
    done = k8s_api.wait("PyTorchJob", name, project, timeout=120, poll=0.5)
    assert k8s_api.condition(done, "Succeeded")
    assert not k8s_api.condition(done, "Failed")


def test_a_non_retryable_exit_fails_the_elastic_job(kube_env: Tier, project: str):
    obj = play(elastic_job(project, workers=2), exit_code=1)
    with pytest.raises(UserError) as err:
        training.run_train_job(obj, timeout=120, poll=0.5)
    assert f"PyTorchJob {project}/{obj['metadata']['name']} Failed" in str(err.value)
