"""PyTorchJob / MPIJob / InferenceService objects from components.common.k8s validate against
the kubeflow-training SDK's typed models and the KServe schema (see k8s_schema.py)."""

import copy

import pytest

from components.common import k8s
from tests.manifests.k8s_schema import validate

GPU = k8s.GpuScheduling(gpus_per_pod=2)


@pytest.mark.parametrize(
    "obj",
    [
        k8s.pytorch_job("train", "ghcr.io/fareflow/trainer:0.1.0", "components.train", ["--epochs", "3"]),
        k8s.pytorch_job(
            "train-gpu",
            "ghcr.io/fareflow/trainer:0.1.0",
            "components.train",
            workers=3,
            nproc_per_node=2,
            gpu=GPU,
        ),
        k8s.pytorch_job("train-solo", "ghcr.io/fareflow/trainer:0.1.0", "components.train", workers=0),
        k8s.mpi_job("hvd", "ghcr.io/fareflow/trainer:0.1.0", "components.train", workers=2),
        k8s.mpi_job("hvd-gpu", "ghcr.io/fareflow/trainer:0.1.0", "components.train", workers=4, gpu=GPU),
        k8s.mpi_job(
            "hvd-s3",
            "ghcr.io/fareflow/trainer:0.1.0",
            "components.train",
            ["--backend", "horovod"],
            workers=2,
            slots_per_worker=2,
            env={"AWS_ENDPOINT_URL": "http://seaweedfs.kubeflow:9000"},
            env_from_secret="fareflow-s3",
        ),
        k8s.inference_service("taxi-fare", "s3://mlpipeline/models/taxi"),
        k8s.inference_service("taxi-fare-gpu", "s3://m/x", gpu=k8s.GpuScheduling(), protocol="v1"),
        k8s.inference_service("taxi-fare-kn", "s3://m/x", deployment_mode="Knative", min_replicas=0),
    ],
    ids=lambda o: f"{o['kind']}-{o['metadata']['name']}",
)
def test_builder_output_validates(obj):
    validate(obj)


def test_typed_model_check_rejects_unknown_and_mistyped_fields():
    job = k8s.pytorch_job("t", "img:1", "m")
    bad = copy.deepcopy(job)
    bad["spec"]["pytorchReplicaSpecs"]["Master"]["replica"] = 1
    with pytest.raises(AssertionError, match="replica"):
        validate(bad)
    bad = copy.deepcopy(job)
    bad["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["resources"] = "2"
    with pytest.raises(AssertionError):
        validate(bad)
    bad = copy.deepcopy(job)
    del bad["spec"]["runPolicy"]  # required by the SDK model
    with pytest.raises(AssertionError, match="run_policy"):
        validate(bad)
    mpi = k8s.mpi_job("h", "img:1", "m")
    mpi["spec"]["slotsPerWorker"] = "1"
    with pytest.raises(AssertionError, match="slotsPerWorker"):
        validate(mpi)


def test_kserve_schema_rejects_unknown_fields():
    isvc = k8s.inference_service("x", "s3://b/m")
    isvc["spec"]["predictor"]["model"]["storageURI"] = "s3://b/m"
    with pytest.raises(AssertionError, match="storageURI"):
        validate(isvc)
    isvc = k8s.inference_service("x", "s3://b/m")
    isvc["spec"]["predictor"]["tolerations"] = [{"key": "a", "effect": "NoSchedule", "bogus": 1}]
    with pytest.raises(AssertionError, match="bogus"):
        validate(isvc)
