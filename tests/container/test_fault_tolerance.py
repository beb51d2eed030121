"""Fault tolerance of the cluster training job without a cluster (issue 13, "in the container
tier, kill one PyTorchJob container and restart it as the operator would").

The job is what ``components.cluster``'s train step creates, its pods played by trainer-image
containers and the Training Operator's ``restartPolicy: ExitCode`` by
:class:`tests.container.pytorchjob.PodmanPyTorchJob` (operator facts and file:line evidence
there and in docs/train.md, "Fault tolerance in containers"). Splits, checkpoints and the
model live in an S3 server (moto).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from .pytorchjob import FAILED, SUCCEEDED, PodmanPyTorchJob

pytestmark = pytest.mark.container

ROWS = 20_000  # enough rows that an epoch takes seconds, so a kill lands inside the run
PARAMS = dict(epochs=3, batch_size=256, seed=7)
HOOKS = Path(__file__).parent / "hooks"  # sitecustomize.py: the pause at a fixed batch
BATCH_HOOK = Path(__file__).parents[1] / "components" / "train" / "batch_hook.py"  # what it uses
PAUSE_AT = (2, 5)  # epoch 2 (after epoch 1's checkpoint), batch 5: inside the run, never past it
RESUMED = re.compile(r"resumed from epoch (\d+)(?:, step (\d+) of epoch \d+)? \((\S+)\)")


@pytest.fixture
def splits_s3(image_refs, s3, tmp_path) -> str:
    if "trainer" not in image_refs:
        pytest.skip("trainer image not selected (FAREFLOW_IMAGE_NAMES)")
    from components.cluster import core
    from tests.components.train.conftest import trips, write_splits

    bucket = s3.bucket("mlpipeline")
    uri = "minio://mlpipeline/v2/artifacts/fareflow-taxi-fare/run-1/sample/7/splits"
    root = write_splits(trips(ROWS), tmp_path / "splits", shards=2)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.put(bucket, f"{uri.split('/', 3)[3]}/{path.relative_to(root).as_posix()}", path)
    return core.s3_uri(uri)


def make_job(image_refs, splits_s3: str, tag: str, max_restarts: int | None) -> tuple[dict, str]:
    """The train step's PyTorchJob (2 pods) and its model URI; ``tag`` keeps two runs of the
    same parameters apart (the step's job name is a digest of its inputs)."""
    from components.cluster import core, models, training

    settings = core.ClusterSettings(image_tag=image_refs["trainer"].rsplit(":", 1)[1])
    params = training.TrainParams(**PARAMS)
    name = core.job_name("taxi-fare-train", splits_s3, repr(params), "2", tag)
    output_s3 = models.model_output_uri(splits_s3, name)
    job = training.train_job_object(
        settings, name, splits_s3, output_s3, params, workers=2, max_restarts=max_restarts
    )
    return job, output_s3


def paused_job(job_obj: dict, s3, pod: str, tmp_path) -> tuple[PodmanPyTorchJob, Path]:
    """The job with the test hook mounted: pod ``pod``'s rank pauses at ``PAUSE_AT`` (first
    incarnation only) and waits there for SIGTERM, so the kill or deletion that follows lands
    mid-epoch 2 whatever the machine's speed. Returns the job and the hook's marker file."""
    state = tmp_path / "hook-state"
    state.mkdir()
    state.chmod(0o777)  # the container's user (10001) writes the marker
    epoch, step = PAUSE_AT
    job = PodmanPyTorchJob(
        job_obj,
        s3.endpoint,
        extra_env={
            "PYTHONPATH": "/test-hooks:/test-hooks-lib",
            "FAREFLOW_TEST_PAUSE": f"{pod}:{epoch}:{step}:/test-hook-state",
        },
        volumes=(
            f"{HOOKS}:/test-hooks:ro",
            f"{BATCH_HOOK}:/test-hooks-lib/batch_hook.py:ro",
            f"{state}:/test-hook-state",
        ),
    )
    return job, state / f"paused-{pod}"


def wait_paused(marker: Path, job: PodmanPyTorchJob, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert time.monotonic() < deadline, f"not paused at {PAUSE_AT} in {timeout:.0f}s:\n{job.all_logs()}"
        assert job.reconcile() is None, f"job ended before the pause:\n{job.all_logs()}"
        time.sleep(0.2)


def wait_for_checkpoint(output_s3: str, job: PodmanPyTorchJob, timeout: float = 240, step: bool = False):
    """The first checkpoint in S3 (an epoch's end, or with ``step`` a mid-epoch one), polling
    the object store while the job runs."""
    from components.train import checkpoint

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [f for f in checkpoint.listing(checkpoint.default_dir(output_s3)) if (f.step > 0) == step]
        if found:
            return found[0]
        assert job.reconcile() is None, f"job ended before a checkpoint:\n{job.all_logs()}"
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint in {timeout:.0f}s:\n{job.all_logs()}")


def model_metrics(output_s3: str, tmp_path, name: str) -> dict:
    from components.cluster import models

    model_dir = tmp_path / name
    files = models.copy_model_dir(output_s3, str(model_dir))
    assert {"model.json", "model.pt"} <= set(files)
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["training"]["world_size"] == 2
    return models.read_model_metrics(str(model_dir))


def run_to_end(job: PodmanPyTorchJob, timeout: float = 400) -> str:
    condition = job.wait(timeout)
    assert condition == SUCCEEDED, f"job {condition or 'still running'}:\n{job.all_logs()}"
    return job.all_logs()


def uninterrupted(image_refs, splits_s3, s3, tmp_path, max_restarts) -> dict:
    job_obj, output_s3 = make_job(image_refs, splits_s3, "uninterrupted", max_restarts)
    job = PodmanPyTorchJob(job_obj, s3.endpoint)
    try:
        job.start()
        run_to_end(job)
    finally:
        job.delete_all()
    return model_metrics(output_s3, tmp_path, "uninterrupted")


def test_a_killed_elastic_worker_is_recreated_and_the_job_resumes_from_its_checkpoint(
    image_refs, splits_s3, s3, tmp_path
):
    job_obj, output_s3 = make_job(image_refs, splits_s3, "killed", max_restarts=3)
    victim = f"{job_obj['metadata']['name']}-worker-1"
    job, marker = paused_job(job_obj, s3, victim, tmp_path)
    try:
        job.start()
        wait_paused(marker, job)
        first = wait_for_checkpoint(output_s3, job)
        assert first.epoch == PAUSE_AT[0] - 1
        job.kill(victim)  # SIGKILL: exit 137, as after an OOM kill
        text = run_to_end(job)
    finally:
        job.delete_all()
    print(text)
    assert job.pods[victim].incarnations == 2, job.events
    assert any(f"{victim} exited 137: retryable" in e for e in job.events), job.events
    resumed = [int(m[1]) for m in RESUMED.finditer(text)]
    assert resumed and min(resumed) == PAUSE_AT[0] - 1, text
    got = model_metrics(output_s3, tmp_path, "killed")
    want = uninterrupted(image_refs, splits_s3, s3, tmp_path, max_restarts=3)
    print(f"test RMSE: resumed {got['test_rmse']:.6f}, uninterrupted {want['test_rmse']:.6f}")
    assert got["test_rmse"] == pytest.approx(want["test_rmse"], rel=0.01)


def test_a_killed_worker_of_the_static_job_fails_it_through_the_master(image_refs, splits_s3, s3, tmp_path):
    """The default job (Master + Worker, no elasticPolicy): the operator recreates only the killed
    Worker (137 is retryable), but the Master's rank loses its peer, torchrun (no restarts) exits 1,
    which ExitCode does not retry: the job fails. Only the elastic job can survive a kill."""
    job_obj, output_s3 = make_job(image_refs, splits_s3, "static", max_restarts=None)
    assert set(job_obj["spec"]["pytorchReplicaSpecs"]) == {"Master", "Worker"}
    victim = f"{job_obj['metadata']['name']}-worker-0"
    job, marker = paused_job(job_obj, s3, victim, tmp_path)
    try:
        job.start()
        wait_paused(marker, job)
        job.kill(victim)
        condition = job.wait(240)
    finally:
        job.delete_all()
    assert condition == FAILED, job.all_logs()
    assert f"{victim} exited 137: retryable, pod deleted" in job.events, job.events
    assert f"{job.name}-master-0 exited 1: not retryable, job Failed" in job.events, job.all_logs()


def test_sigterm_on_the_master_writes_a_checkpoint_within_the_grace_period(
    image_refs, splits_s3, s3, tmp_path
):
    """A pod's deletion: SIGTERM to its PID 1 (torchrun), which passes it to the rank; the ranks
    agree to stop, rank 0 writes a mid-epoch checkpoint to S3, and the container exits before
    the 30 s grace period ends (so not killed: 137)."""
    from components.train import checkpoint

    job_obj, output_s3 = make_job(image_refs, splits_s3, "sigterm", max_restarts=None)
    master = f"{job_obj['metadata']['name']}-master-0"
    job, marker = paused_job(job_obj, s3, master, tmp_path)
    try:
        job.start()
        wait_paused(marker, job)
        wait_for_checkpoint(output_s3, job)
        t0 = time.monotonic()
        code = job.delete(master, grace=30)
        seconds = time.monotonic() - t0
        text = job.logs(master)
    finally:
        job.delete_all()
    assert code != 137 and seconds < 30, (code, seconds, text)
    assert "stopped by SIGTERM after epoch" in text, text
    mid = [f for f in checkpoint.listing(checkpoint.default_dir(output_s3)) if f.step > 0]
    assert mid, text
    assert (mid[-1].epoch, mid[-1].step) >= (PAUSE_AT[0] - 1, PAUSE_AT[1]), (mid[-1], text)
    assert f"checkpoint {mid[-1].uri}" in text, text
