"""Scheduling by the real kube-scheduler on the kwok pools: GPU training pods go to the GPU
pool (node selector + toleration), CPU pods never do (the taint), and a GPU request no node can
meet stays Pending with the scheduler's reason, which fareflow's wait reports."""

from __future__ import annotations

import uuid

import pytest

from components.cluster import core, training
from components.common.errors import UserError

from .conftest import Tier
from .test_training_operator import play, pods

pytestmark = pytest.mark.k8s

GPU_POOL = {"fareflow.io/pool": "gpu"}


@pytest.fixture
def project(tier: Tier, namespace: str) -> str:
    tier.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "fareflow-trainer", "namespace": namespace}}])  # fmt: skip
    return namespace


def gpu_nodes(tier: Tier) -> set[str]:
    return {n["metadata"]["name"] for n in tier.get("nodes", "-l", "fareflow.io/pool=gpu")["items"]}


def train_job(ns: str, gpus: int, workers: int) -> dict:
    settings = core.ClusterSettings(
        namespace=ns, train_gpus_per_pod=gpus, gpu_node_selector=GPU_POOL if gpus else {}
    )
    name = f"sched-{uuid.uuid4().hex[:8]}"
    return training.train_job_object(
        settings, name, "s3://b/splits", f"s3://b/models/{name}", training.TrainParams(), workers
    )


def test_gpu_training_pods_land_on_the_gpu_pool(kube_env: Tier, project: str):
    obj = play(train_job(project, gpus=1, workers=2))
    training.run_train_job(obj, timeout=120, poll=0.5)
    found = pods(kube_env, project, obj["metadata"]["name"])
    assert len(found) == 2
    for pod in found.values():
        assert pod["spec"]["nodeName"] in gpu_nodes(kube_env)
        (container,) = pod["spec"]["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["image"].endswith("-cuda") and "--device" in container["args"]
        assert container["args"][container["args"].index("--device") + 1] == "cuda"


def test_cpu_pods_never_land_on_the_gpu_pool(kube_env: Tier, project: str):
    obj = play(train_job(project, gpus=0, workers=4))
    training.run_train_job(obj, timeout=120, poll=0.5)
    found = pods(kube_env, project, obj["metadata"]["name"])
    assert len(found) == 4
    assert not {p["spec"]["nodeName"] for p in found.values()} & gpu_nodes(kube_env)


def test_a_gpu_request_no_node_can_meet_is_reported_with_the_schedulers_reason(kube_env: Tier, project: str):
    capacity = max(
        int(n["status"]["capacity"].get("nvidia.com/gpu", 0)) for n in kube_env.get("nodes")["items"]
    )
    obj = play(train_job(project, gpus=capacity + 1, workers=1))
    name = obj["metadata"]["name"]
    with pytest.raises(UserError) as err:
        training.run_train_job(obj, timeout=300, poll=0.5, unschedulable_grace=2)
    message = str(err.value)
    assert f"PyTorchJob {project}/{name}: pod {name}-master-0 unschedulable" in message
    assert "Insufficient nvidia.com/gpu" in message  # the scheduler's own words
    pod = kube_env.get("pod", "-n", project, f"{name}-master-0")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
