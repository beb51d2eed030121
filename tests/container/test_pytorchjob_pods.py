"""The cluster training path without a cluster: the PyTorchJob that ``train_job`` creates, its
Master and Worker pods played by two trainer-image containers.

Each container runs exactly the container spec of ``components.cluster.training.train_job_object``
(command, args, env) plus what the Training Operator injects into a PyTorchJob with a Master
replica (``PET_NNODES``, ``PET_NODE_RANK``, ``PET_NPROC_PER_NODE``, ``PET_MASTER_ADDR``,
``PET_MASTER_PORT``, which torchrun reads, and the rest), and the ``fareflow-s3`` Secret's keys:
``tests.container.pytorchjob.PodmanPyTorchJob``, which also plays the operator's restart policy. The splits
and the model live in an S3 server (moto) the way they live in KFP's object store; the task
then copies the model back (``copy_model_dir``) and the model server's loader reads it.
"""

from __future__ import annotations

import pytest

from .conftest import wait_for_exit
from .pytorchjob import SUCCEEDED, PodmanPyTorchJob

pytestmark = pytest.mark.container


def _upload(s3, bucket: str, root, prefix: str) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.put(bucket, f"{prefix}/{path.relative_to(root).as_posix()}", path)


def test_pytorchjob_master_and_worker_train_from_s3(image_refs, s3, tmp_path):
    if "trainer" not in image_refs:
        pytest.skip("trainer image not selected (FAREFLOW_IMAGE_NAMES)")
    from components.cluster import core, models, training
    from components.serve.core import FarePredictor
    from tests.components.train.conftest import trips, write_splits

    bucket = s3.bucket("mlpipeline")
    splits_uri = "minio://mlpipeline/v2/artifacts/fareflow-taxi-fare/run-1/sample/7/splits"
    _upload(s3, bucket, write_splits(trips(4000), tmp_path / "splits", shards=2), splits_uri.split("/", 3)[3])

    settings = core.ClusterSettings(image_tag=image_refs["trainer"].rsplit(":", 1)[1])
    splits_s3 = core.s3_uri(splits_uri)
    params = training.TrainParams(epochs=3, batch_size=256)
    name = core.job_name("taxi-fare-train", splits_s3, repr(params), "2")
    output_s3 = models.model_output_uri(splits_s3, name)
    job = training.train_job_object(settings, name, splits_s3, output_s3, params, workers=2)
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"} and specs["Worker"]["replicas"] == 1

    job_run = PodmanPyTorchJob(job, s3.endpoint)
    for pod in job_run.pods.values():
        assert pod.image == image_refs["trainer"]
    try:
        job_run.start()
        condition = job_run.wait(300)
        codes = {name: wait_for_exit(pod.container, 60) for name, pod in job_run.pods.items()}
        text = job_run.all_logs()
    finally:
        job_run.delete_all()
    assert condition == SUCCEEDED, text
    assert codes == {name: 0 for name in job_run.pods}, text
    assert all(pod.incarnations == 1 for pod in job_run.pods.values()), job_run.events

    # Rank 0 wrote the model directory; the task copies it into its Model artifact.
    model_dir = tmp_path / "model"
    files = models.copy_model_dir(output_s3, str(model_dir))
    assert {"model.json", "model.pt"} <= set(files)
    metrics = models.read_model_metrics(str(model_dir))
    assert metrics["test_rmse"] < 0.6 * metrics["baseline_rmse"], metrics
    import json

    assert json.loads((model_dir / "model.json").read_text())["training"]["world_size"] == 2
    fares = FarePredictor.load(str(model_dir)).predict_records(
        [
            {
                "ORIGIN_BLOCK_LATITUDE": 38.9007,
                "ORIGIN_BLOCK_LONGITUDE": -77.0365,
                "DESTINATION_BLOCK_LATITUDE": 38.8899,
                "DESTINATION_BLOCK_LONGITUDE": -77.0091,
                "ORIGINDATETIME_TR": "03/14/2015 08:00",
            }
        ]
    )
    assert 3.25 <= fares[0] <= 30
