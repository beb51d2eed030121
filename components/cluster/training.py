"""The train job: a PyTorchJob (torchrun) or an MPIJob (mpirun, Horovod) running
``components.train`` on the sample task's splits in the object store; run it, wait, and the
train task's result.

Rank 0 writes the model directory to ``components.cluster.models.model_output_uri``; the train
task copies it into its ``Model`` artifact (``models.copy_model_dir``). See docs/cluster.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.cluster.core import S3_SECRET, ClusterSettings, check_backend, job_name, run_workload
from components.common import k8s
from components.common.errors import UserError

JOB_NAME_LABEL = "training.kubeflow.org/job-name"  # the Training Operator's pod label


@dataclass(frozen=True)
class TrainParams:
    """What the PyTorchJob's ``components.train`` gets (its CLI flags)."""

    epochs: int = 8
    batch_size: int = 1024
    learning_rate: float = 1e-3
    hidden: str = "128,64,32"
    seed: int = 0
    weight_decay: float = 1e-4
    dropout: float = 0.0

    def config(self, splits_uri: str, output_uri: str, device: str = "auto", backend: str = "ddp"):
        """The ``components.train`` config these settings make (its CLI is built from it)."""
        from components.train.config import TrainConfig, parse_hidden

        return TrainConfig(
            splits_uri, output_uri, epochs=self.epochs, batch_size=self.batch_size,
            learning_rate=float(self.learning_rate), hidden=parse_hidden(self.hidden), seed=self.seed,
            weight_decay=float(self.weight_decay), dropout=float(self.dropout), device=device,
            backend=backend,
        )  # fmt: skip

    def args(self, splits_uri: str, output_uri: str, device: str = "auto", backend: str = "ddp") -> list[str]:
        """``components.train``'s flags, from its config spec (one source for names and formats)."""
        from components.common.configspec import to_argv

        return to_argv(self.config(splits_uri, output_uri, device, backend))


def train_job_name(splits_s3: str, params: TrainParams, workers: int, backend: str = "ddp") -> str:
    """The training job's name: the same inputs find the same job (and model directory) again;
    another backend is another job (its model is written under its own name)."""
    return job_name("taxi-fare-train", splits_s3, repr(params), str(workers), check_backend(backend))


def train_job_object(
    settings: ClusterSettings,
    name: str,
    splits_s3: str,
    output_s3: str,
    params: TrainParams,
    workers: int,
    max_restarts: int | None = None,
    backend: str = "ddp",
) -> dict:
    """The training job: ``workers`` pods, each running one training process per GPU
    (``TRAIN_GPUS_PER_POD``) or one on CPU; world size = pods x that. Both backends write the
    same model directory to ``output_s3`` (rank 0), so the deploy step does not care which ran.

    ``backend`` "ddp": a PyTorchJob, one Master and ``workers - 1`` Workers, torchrun in each.
    "horovod": an MPIJob, ``workers`` Workers (one Horovod rank per slot) driven by a launcher
    running ``mpirun ... python -m components.train --backend horovod``; the launcher needs a
    namespace enforcing Pod Security "baseline" (``manifests/components/mpijob-baseline``).
    Either way the training pods get the S3 Secret (``envFrom``) and the object store's
    ``AWS_ENDPOINT_URL``/``AWS_DEFAULT_REGION``.

    On GPUs the pods run the CUDA trainer image with ``--device cuda``, so a pod without a usable
    GPU fails with one line instead of training on CPU; without GPUs, ``--device cpu``.

    ``max_restarts`` (elastic, ddp only): ``workers`` Worker pods with an elasticPolicy, so a
    killed pod is recreated and rejoins, and torchrun restarts the group up to that many times;
    the ranks resume from the checkpoints beside the model (``OUTPUT.checkpoints`` on S3, kept
    across retries because the job name is stable)."""
    check_backend(backend)
    if workers < 1:
        raise UserError(f"workers: expected an integer >= 1, got {workers}")
    env = {"AWS_ENDPOINT_URL": settings.aws_endpoint_url} if settings.aws_endpoint_url else {}
    if settings.aws_region:
        env["AWS_DEFAULT_REGION"] = settings.aws_region
    gpus = settings.train_gpus_per_pod
    image = settings.image("trainer", cuda=gpus > 0)
    args = params.args(splits_s3, output_s3, "cuda" if gpus else "cpu", backend)
    labels = {"app.kubernetes.io/component": "train"}
    if backend == "horovod":
        if max_restarts:
            raise UserError(
                f"TRAIN_MAX_RESTARTS={max_restarts}: elastic training is a PyTorchJob feature "
                "(train_backend ddp); an MPIJob cannot resume a lost rank"
            )
        return k8s.mpi_job(
            name,
            image,
            "components.train",
            args,
            namespace=settings.namespace,
            workers=workers,
            slots_per_worker=max(1, gpus),
            gpu=settings.gpu(gpus),
            env=env,
            env_from_secret=S3_SECRET,
            labels=labels,
        )
    return k8s.pytorch_job(
        name,
        image,
        "components.train",
        args,
        namespace=settings.namespace,
        workers=workers - 1,
        nproc_per_node=max(1, gpus),
        gpu=settings.gpu(gpus),
        env=env,
        env_from_secret=S3_SECRET,
        labels=labels,
        max_restarts=max_restarts,
    )


# The Training Operator's replica-type pod label; an MPIJob's launcher holds mpirun's output of
# every rank (the workers' own logs are empty: the ranks run under orted, started through exec).
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"


def run_train_job(
    obj: dict,
    timeout: float,
    *,
    api=None,
    core_api=None,
    poll: float = 10.0,
    unschedulable_grace: float = 300.0,
) -> dict:
    """Create the PyTorchJob or MPIJob (reusing one that already succeeded; replacing a failed
    one) and wait for it. A failure raises ``UserError`` with the job's reason and its pods'
    last log lines (an MPIJob's: the launcher's, where mpirun gathers every rank's output). It
    also ends early, instead of waiting out ``timeout``: a pod the scheduler cannot place for
    ``unschedulable_grace`` seconds (with the scheduler's reason, e.g. no node with a free GPU),
    and pods the namespace's Pod Security level refuses (the operator's event on the job; an
    MPIJob's launcher in a "restricted" namespace), with the namespace and the fix."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    selector = f"{JOB_NAME_LABEL}={name}"
    return run_workload(
        obj, timeout, pods=selector,
        logs_of=f"{selector},{REPLICA_TYPE_LABEL}=launcher" if kind == "MPIJob" else selector,
        pod_security_fix=POD_SECURITY_FIXES.get(kind, ""),
        api=api, core_api=core_api, poll=poll, unschedulable_grace=unschedulable_grace,
    )  # fmt: skip


# What to do when Pod Security refuses a job's pods (the PodSecurityWatch's one-line fix).
POD_SECURITY_FIXES = {
    "MPIJob": (
        "the v1 MPIJob launcher's kubectl-delivery init container has no security context, so "
        "MPIJobs need a namespace that enforces baseline: add the kustomize component "
        "manifests/components/mpijob-baseline to the project's overlay, or "
        "kubectl label namespace {namespace} pod-security.kubernetes.io/enforce=baseline --overwrite"
    ),
}


@dataclass(frozen=True)
class TrainJobResult:
    """The ``train_job`` task's result, as ``components.common.publish`` reads a step's result:
    the job, the model files copied into the task's artifact, and the metrics the job's rank 0
    wrote into model.json."""

    job: str  # NAMESPACE/NAME
    model_files: list[str]
    model_metrics: dict

    def summary(self) -> dict:
        return {"job": self.job, "model_files": list(self.model_files), "metrics": dict(self.model_metrics)}

    def metrics(self) -> dict[str, float]:
        """The numeric entries of model.json's metrics (booleans and text are not metrics)."""
        return {
            key: value
            for key, value in sorted(self.model_metrics.items())
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
