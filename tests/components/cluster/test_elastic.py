"""The elastic PyTorchJob (``train_job_object(..., max_restarts=N)``): Worker pods only, with the
elasticPolicy the pinned Training Operator (v1.9.2) turns into torchrun's rendezvous settings,
valid against its CRD schema; the default job is unchanged."""

from __future__ import annotations

import pytest

from components.cluster import core, training
from components.common import k8s
from components.common.errors import UserError
from tests.manifests import k8s_schema


def elastic(workers: int = 3, restarts: int = 4) -> dict:
    return training.train_job_object(
        core.ClusterSettings(),
        "t",
        "s3://b/s",
        "s3://b/m",
        training.TrainParams(),
        workers,
        max_restarts=restarts,
    )


def test_elastic_job_has_only_workers_and_an_elastic_policy():
    job = elastic(workers=3, restarts=4)
    k8s_schema.validate(job)
    spec = job["spec"]
    assert list(spec["pytorchReplicaSpecs"]) == ["Worker"]  # no Master: torchrun's c10d rendezvous instead
    worker = spec["pytorchReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 3 and worker["restartPolicy"] == "ExitCode"
    assert spec["elasticPolicy"] == {
        "rdzvBackend": "c10d",
        "rdzvPort": k8s.ELASTIC_RDZV_PORT,
        "minReplicas": 3,
        "maxReplicas": 3,
        "maxRestarts": 4,
    }
    (c,) = worker["template"]["spec"]["containers"]
    assert c["command"] == ["torchrun", "--module", "components.train"]
    assert spec["nprocPerNode"] == "1"
    # the same training flags as the default job: the checkpoints go beside the model on S3
    default = training.train_job_object(
        core.ClusterSettings(), "t", "s3://b/s", "s3://b/m", training.TrainParams(), 3
    )
    (dc,) = default["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    assert c["args"] == dc["args"]
    # a store per rendezvous round, so a pod the operator recreates can rejoin its survivors
    # (tests/container/test_fault_tolerance.py kills one); the default job keeps torch's default
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in {e["name"] for e in dc["env"]}


def test_one_pod_elastic_job_is_one_worker_and_default_job_is_unchanged():
    job = elastic(workers=1, restarts=0)
    k8s_schema.validate(job)
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    assert job["spec"]["elasticPolicy"]["maxRestarts"] == 0
    default = training.train_job_object(
        core.ClusterSettings(), "t", "s3://b/s", "s3://b/m", training.TrainParams(), 2
    )
    assert "elasticPolicy" not in default["spec"]
    assert sorted(default["spec"]["pytorchReplicaSpecs"]) == ["Master", "Worker"]


def test_negative_max_restarts_is_refused():
    with pytest.raises(UserError, match="max_restarts: expected an integer >= 0, got -1"):
        elastic(restarts=-1)
