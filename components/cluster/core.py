"""Cluster-mode steps: train as a PyTorchJob, serve as a KServe InferenceService.

The pipeline tasks that run these (``components.cluster.component``) only drive the cluster:
they build the objects with the pure builders in ``components.common.k8s``, create them and
wait through ``components.common.k8s_api`` (the one module that talks to the API server),
and move the small model directory between the object store and the task's artifact.

Data flow (KFP standalone keeps artifacts in its object store, bucket ``mlpipeline``):

1. ``train_job``: the sample task's splits are at ``minio://mlpipeline/v2/artifacts/...``
   (:func:`s3_uri` maps that to ``s3://``). A PyTorchJob (Master + Workers, ``torchrun
   --module components.train``) in the project namespace reads them and writes the model
   directory to ``s3://BUCKET/fareflow/models/JOB/``; the task then copies that directory
   into its ``Model`` artifact (KFP uploads it to its own artifact URI).
2. ``deploy``: an InferenceService whose ``storageUri`` is the model artifact's ``s3://``
   URI; KServe's storage initializer downloads it (S3 settings from the ``fareflow-s3``
   Secret on the ``fareflow-serving`` ServiceAccount) and the ``fareflow-server`` runtime
   serves it (``components.serve``). The task waits until it is Ready.

Run-time settings come from the ``fareflow-cluster`` ConfigMap (``manifests/base``), so an
overlay can change image tags, GPUs and autoscaling without recompiling the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from components.common import k8s
from components.common.errors import UserError

CONFIG_MAP = "fareflow-cluster"
S3_SECRET = "fareflow-s3"
MODEL_PREFIX = "fareflow/models"
JOB_NAME_LABEL = "training.kubeflow.org/job-name"  # the Training Operator's pod label
# An image tag as the OCI distribution spec allows it.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def check_image_tag(key: str, tag: str, where: str = "") -> str:
    """``tag`` if it pins an image: never empty (the engine would pull ``latest``) nor ``latest``."""
    prefix = f"{where}: " if where else ""
    if not tag or tag == "latest" or not _TAG.fullmatch(tag):
        raise UserError(
            f"{prefix}{key}={tag!r}: expected a pinned image tag (not empty, not 'latest'; "
            "letters, digits, '_', '.', '-')"
        )
    return tag


@dataclass(frozen=True)
class ClusterSettings:
    """The ``fareflow-cluster`` ConfigMap, typed (see manifests/base/cluster-config.yaml)."""

    namespace: str = k8s.DEFAULT_NAMESPACE
    image_registry: str = "ghcr.io/fareflow"
    image_tag: str = "0.1.0"
    cuda_image_tag: str = ""  # the trainer's CUDA build; "" means IMAGE_TAG + "-cuda"
    train_gpus_per_pod: int = 0
    train_max_restarts: int = 0  # > 0: an elastic PyTorchJob that survives this many restarts
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    serving_gpus: int = 0
    serving_deployment_mode: str = "Standard"
    serving_min_replicas: int = 1
    serving_max_replicas: int = 3
    serving_scale_metric: str = ""  # "" = the mode's default (cpu for Standard, concurrency for Knative)
    serving_scale_target: int = 0  # 0 = the metric's default
    aws_endpoint_url: str = ""
    aws_region: str = ""
    # The Optuna study database (manifests/components/optuna-postgres patches these in); its
    # user, password and database are the POSTGRES_SECRET's, read by the pods themselves.
    optuna_storage_host: str = ""
    optuna_storage_port: int = 5432

    def __post_init__(self) -> None:
        check_image_tag("IMAGE_TAG", self.image_tag, f"ConfigMap {self.namespace}/{CONFIG_MAP}")
        if self.cuda_image_tag:
            check_image_tag("CUDA_IMAGE_TAG", self.cuda_image_tag, f"ConfigMap {self.namespace}/{CONFIG_MAP}")

    @classmethod
    def from_config_map(cls, data: dict[str, str] | None, namespace: str) -> ClusterSettings:
        """Typed settings; a ConfigMap that is missing (None) means the defaults."""
        data = data or {}

        def integer(key: str, default: int) -> int:
            raw = str(data.get(key, default)).strip()
            if not re.fullmatch(r"\d+", raw):
                raise UserError(
                    f"ConfigMap {namespace}/{CONFIG_MAP}: {key}={raw!r}: expected an integer >= 0"
                )
            return int(raw)

        selector = {}
        for pair in filter(None, (p.strip() for p in str(data.get("GPU_NODE_SELECTOR", "")).split(","))):
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise UserError(
                    f"ConfigMap {namespace}/{CONFIG_MAP}: GPU_NODE_SELECTOR={data['GPU_NODE_SELECTOR']!r}: "
                    "expected key=value[,key=value]"
                )
            selector[key.strip()] = value.strip()
        where = f"ConfigMap {namespace}/{CONFIG_MAP}"
        tag = check_image_tag("IMAGE_TAG", str(data.get("IMAGE_TAG", cls.image_tag)).strip(), where)
        cuda_tag = str(data.get("CUDA_IMAGE_TAG", "")).strip()
        if "CUDA_IMAGE_TAG" in data:
            check_image_tag("CUDA_IMAGE_TAG", cuda_tag, where)
        return cls(
            namespace=str(data.get("NAMESPACE", namespace)),
            image_registry=str(data.get("IMAGE_REGISTRY", cls.image_registry)).rstrip("/"),
            image_tag=tag,
            cuda_image_tag=cuda_tag,
            train_gpus_per_pod=integer("TRAIN_GPUS_PER_POD", 0),
            train_max_restarts=integer("TRAIN_MAX_RESTARTS", 0),
            gpu_node_selector=selector,
            serving_gpus=integer("SERVING_GPUS", 0),
            serving_deployment_mode=str(data.get("SERVING_DEPLOYMENT_MODE", "Standard")),
            serving_min_replicas=integer("SERVING_MIN_REPLICAS", 1),
            serving_max_replicas=integer("SERVING_MAX_REPLICAS", 3),
            serving_scale_metric=str(data.get("SERVING_SCALE_METRIC", "")).strip(),
            serving_scale_target=integer("SERVING_SCALE_TARGET", 0),
            aws_endpoint_url=str(data.get("AWS_ENDPOINT_URL", "")),
            aws_region=str(data.get("AWS_DEFAULT_REGION", "")).strip(),
            optuna_storage_host=str(data.get("OPTUNA_STORAGE_HOST", "")).strip(),
            optuna_storage_port=integer("OPTUNA_STORAGE_PORT", 5432),
        )

    def optuna_host(self) -> str:
        """The study database's host as every namespace resolves it (``NAME.NAMESPACE`` for a
        Service name: the tune task runs in KFP's namespace, its Job's pods in the project's)."""
        host = self.optuna_storage_host
        if not host:
            raise UserError(
                f"ConfigMap {self.namespace}/{CONFIG_MAP}: no OPTUNA_STORAGE_HOST: tune_workers > 1 needs "
                "the study database (add the kustomize component manifests/components/optuna-postgres)"
            )
        return host if "." in host else f"{host}.{self.namespace}"

    def image(self, name: str, cuda: bool = False) -> str:
        """``REGISTRY/NAME:TAG``; ``cuda``: the CUDA build (``CUDA_IMAGE_TAG``, else ``TAG-cuda``)."""
        tag = (self.cuda_image_tag or f"{self.image_tag}-cuda") if cuda else self.image_tag
        return f"{self.image_registry}/{name}:{tag}"

    def gpu(self, gpus: int) -> k8s.GpuScheduling | None:
        if not gpus:
            return None
        if self.gpu_node_selector:
            return k8s.GpuScheduling(gpus_per_pod=gpus, node_selector=dict(self.gpu_node_selector))
        return k8s.GpuScheduling(gpus_per_pod=gpus)


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


def s3_uri(artifact_uri: str) -> str:
    """An artifact's object-store URI as ``s3://bucket/key`` (KFP writes ``minio://``)."""
    for scheme in ("minio://", "s3://"):
        if artifact_uri.startswith(scheme):
            rest = artifact_uri[len(scheme) :].strip("/")
            if "/" not in rest:
                break
            return f"s3://{rest}"
    raise UserError(
        f"artifact URI {artifact_uri!r}: expected minio:// or s3:// (cluster mode keeps artifacts in the "
        "object store; this step cannot run with a local pipeline root)"
    )


BACKENDS = ("ddp", "horovod")  # the pipeline's train_backend: PyTorchJob (torchrun) or MPIJob (mpirun)


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UserError(f"train_backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    return backend


def job_name(prefix: str, *parts: str) -> str:
    """A DNS-1123 name, stable for the same inputs (a retried task finds its job again)."""
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]
    return f"{prefix}-{digest}"


def train_job_name(splits_s3: str, params: TrainParams, workers: int, backend: str = "ddp") -> str:
    """The training job's name: the same inputs find the same job (and model directory) again;
    another backend is another job (its model is written under its own name)."""
    return job_name("taxi-fare-train", splits_s3, repr(params), str(workers), check_backend(backend))


def model_output_uri(splits_s3: str, name: str) -> str:
    bucket = splits_s3[len("s3://") :].split("/", 1)[0]
    return f"s3://{bucket}/{MODEL_PREFIX}/{name}"


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


# --- tune: N parallel Optuna workers as a Kubernetes Job on the manifests' PostgreSQL -------

POSTGRES_SECRET = "fareflow-postgres"  # manifests/components/optuna-postgres
# libpq's environment, from the Secret's keys: the workers' --storage is a bare postgresql://
POSTGRES_SECRET_ENV = {
    "PGUSER": (POSTGRES_SECRET, "POSTGRES_USER"),
    "PGPASSWORD": (POSTGRES_SECRET, "POSTGRES_PASSWORD"),
    "PGDATABASE": (POSTGRES_SECRET, "POSTGRES_DB"),
}
JOB_POD_LABEL = "batch.kubernetes.io/job-name"  # the Job controller's pod label
TUNE_STORAGE = "postgresql://"  # everything from PG* variables: no DSN in the spec or argv


def tune_job_name(splits_s3: str, config) -> str:
    """The Job's (and the study's) name: the same inputs find the same Job and study again, so a
    retried task resumes the study instead of starting over."""
    from dataclasses import replace

    key = replace(config, splits_uri=splits_s3, storage="", study_name="", workers=1)
    return job_name("taxi-fare-tune", splits_s3, repr(key))


def tune_worker_args(config) -> list[str]:
    """Each Job pod's ``components.tune`` flags (one worker each, the shared study): from the
    tune config spec, so names and formats are the CLI's own."""
    from dataclasses import replace

    from components.common.configspec import to_argv

    return to_argv(replace(config, storage=TUNE_STORAGE, workers=1, device="cpu"))


def tune_job_object(settings: ClusterSettings, config, workers: int, timeout_s: int | None = None) -> dict:
    """The tune Job: ``workers`` pods of the trainer image, each ``python -m components.tune
    ... --storage postgresql:// --workers 1`` on ``config.study_name``; PGHOST/PGPORT from the
    settings, PGUSER/PGPASSWORD/PGDATABASE from the ``fareflow-postgres`` Secret, S3 settings as
    the training pods get them."""
    if workers < 2:
        raise UserError(f"tune_workers: a tune Job is for 2 or more workers, got {workers}")
    env = {"PGHOST": settings.optuna_host(), "PGPORT": str(settings.optuna_storage_port)}
    if settings.aws_endpoint_url:
        env["AWS_ENDPOINT_URL"] = settings.aws_endpoint_url
    if settings.aws_region:
        env["AWS_DEFAULT_REGION"] = settings.aws_region
    return k8s.tune_job(
        config.study_name,
        settings.image("trainer"),
        tune_worker_args(config),
        namespace=settings.namespace,
        workers=workers,
        env=env,
        env_from_secret=S3_SECRET,
        secret_env=POSTGRES_SECRET_ENV,
        labels={"app.kubernetes.io/component": "tune"},
        active_deadline_seconds=timeout_s,
    )


def tune_config(
    splits_uri: str,
    trials: int,
    epochs: int,
    seed: int,
    base_params: dict,
    *,
    storage: str = "",
    study_name: str = "",
):
    """The tune step's config as the pipeline's tune task runs it: until the study holds
    ``trials`` trials (so a rerun resumes), starting from ``base_params``."""
    from components.tune.config import DEFAULT_STUDY, TuneConfig

    return TuneConfig(
        splits_uri, total_trials=trials, epochs=epochs, seed=seed, base_params=dict(base_params),
        storage=storage, study_name=study_name or DEFAULT_STUDY,
    )  # fmt: skip


def use_study_database(settings: ClusterSettings, environ=None) -> None:
    """Point this process's libpq at the study database: PGHOST/PGPORT from the settings (the
    user, password and database are already in the environment, from the Secret)."""
    import os

    environ = os.environ if environ is None else environ
    missing = [var for var in POSTGRES_SECRET_ENV if not environ.get(var)]
    if missing:
        raise UserError(
            f"tune_workers > 1: {', '.join(missing)} not set: the tune task takes them from the Secret "
            f"{POSTGRES_SECRET} (keys POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB) in its own namespace"
        )
    environ["PGHOST"] = settings.optuna_host()
    environ["PGPORT"] = str(settings.optuna_storage_port)


def run_tune_job(
    settings: ClusterSettings,
    config,
    workers: int,
    timeout: float,
    *,
    api=None,
    core_api=None,
    poll: float = 10.0,
    unschedulable_grace: float = 300.0,
    log=print,
):
    """Tune on ``workers`` pods: create the study and its starting point here (the workers find
    them), run the Job (reusing one that completed, replacing one that failed), wait, and read
    the study's result (``components.tune.core.study_result``). ``config.storage`` must be the
    study database's URL as this process reaches it (``postgresql://`` with PG* variables)."""
    from components.tune import core as tune_core

    config.validate()
    study = tune_core.open_study(config)
    tune_core.enqueue_base(study, config)
    before = len(tune_core._counted(study))
    obj = tune_job_object(settings, config, workers, int(timeout))
    name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
    if before >= (config.total_trials or 0):
        log(f"study {name!r} already holds {before} finished trial(s); no Job needed")
    else:
        log(
            f"Job {ns}/{name}: {workers} tune workers, {config.total_trials} trials, image {settings.image('trainer')}"
        )
        run_job(obj, timeout, api=api, core_api=core_api, poll=poll, unschedulable_grace=unschedulable_grace)
    return tune_core.study_result(tune_core.open_study(config), config, before=0)


def run_job(
    obj: dict,
    timeout: float,
    *,
    api=None,
    core_api=None,
    poll: float = 10.0,
    unschedulable_grace: float = 300.0,
    sleep=None,
    clock=None,
) -> dict:
    """Create a ``batch/v1`` Job (reusing one that completed, replacing one that failed) and
    wait until it is Complete (``k8s_api.wait``). Failed (its reason; from the controller's
    interim FailureTarget on, e.g. a worker's exit 2 under the podFailurePolicy), pods the
    scheduler cannot place for ``unschedulable_grace`` s, pods Pod Security refuses, or
    ``timeout``: ``UserError`` with the pods' last log lines."""
    import time

    from components.common import k8s_api

    kind, name, ns = obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]
    done, _failed = k8s_api.WAIT_CONDITIONS[kind]
    existing = k8s_api.get(kind, name, ns, api=api)
    if existing is not None and k8s_api.condition(existing, done):
        return existing
    if existing is not None and k8s_api.failure_condition(existing):
        k8s_api.delete(kind, name, ns, api=api)
        _wait_gone(kind, name, ns, api=api, poll=poll, timeout=300)
        existing = None
    if existing is None:
        k8s_api.apply(obj, api=api)
    selector = f"{JOB_POD_LABEL}={name}"
    what = f"{kind} {ns}/{name}"
    checks = [
        k8s_api.UnschedulableWatch(what, ns, selector, unschedulable_grace, api=core_api),
        k8s_api.PodSecurityWatch(kind, name, ns, api=core_api),
    ]

    def check(current: dict | None) -> None:
        for watch in checks:
            watch(current)

    try:
        return k8s_api.wait(
            kind, name, ns, timeout=timeout, poll=poll, api=api, check=check,
            sleep=sleep or time.sleep, clock=clock or time.monotonic,
        )  # fmt: skip
    except UserError as err:
        logs = k8s_api.pod_logs(ns, selector, api=core_api)
        raise UserError(f"{err}\n{logs}" if logs else str(err)) from None


MODEL_VERSION_LABEL = k8s.MODEL_VERSION_LABEL  # the InferenceService's model (model.json's model_version)


def read_model_json(model_dir: str) -> dict:
    """``model_dir``/model.json (a local path or ``s3://`` prefix) as a dict; ``UserError`` if it
    is missing or unreadable."""
    from components.common import model_dir as fare_model
    from components.common import storage

    where = f"{model_dir.rstrip('/')}/{fare_model.META_FILE}"
    fs, root = storage.resolve_filesystem(model_dir.rstrip("/"))
    try:
        with fs.open_input_stream(f"{root}/{fare_model.META_FILE}") as src:
            meta = json.loads(src.read().decode("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{where}: missing (not a model directory)") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{where}: cannot read it ({err})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    return meta


def read_model_version(model_dir: str) -> str | None:
    """``model_version`` from the model's model.json; None for a model written before versions."""
    from components.common import model_dir as fare_model

    return fare_model.model_version(read_model_json(model_dir))


def inference_service_object(
    settings: ClusterSettings,
    name: str,
    model_s3: str,
    predictor_name: str | None = None,
    canary: k8s.Canary | None = None,
    model_version: str | None = None,
) -> dict:
    """The InferenceService serving the model directory at ``model_s3`` (as a prefix ending in
    ``/``, so KServe's download cannot pick up a sibling key such as ``model-old/...``), with an
    optional candidate beside it (``canary``)."""
    if canary is not None:
        canary = k8s.Canary(canary.name, canary.storage_uri.rstrip("/") + "/", canary.traffic_percent)
    return k8s.inference_service(
        name,
        model_s3.rstrip("/") + "/",
        predictor_name=predictor_name,
        canary=canary,
        namespace=settings.namespace,
        deployment_mode=settings.serving_deployment_mode,
        min_replicas=settings.serving_min_replicas,
        max_replicas=settings.serving_max_replicas,
        scale_metric=settings.serving_scale_metric or None,
        scale_target=settings.serving_scale_target or None,
        gpu=settings.gpu(settings.serving_gpus),
        labels={
            "app.kubernetes.io/component": "serve",
            **({MODEL_VERSION_LABEL: model_version} if model_version else {}),
        },
    )


def load_settings(namespace: str, api=None) -> ClusterSettings:
    from components.common import k8s_api

    return ClusterSettings.from_config_map(k8s_api.config_map(CONFIG_MAP, namespace, api=api), namespace)


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
    from components.common import k8s_api

    kind, name, ns = obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]
    existing = k8s_api.get(kind, name, ns, api=api)
    if existing is not None and k8s_api.condition(existing, "Succeeded"):
        return existing
    if existing is not None and k8s_api.condition(existing, "Failed"):
        k8s_api.delete(kind, name, ns, api=api)
        _wait_gone(kind, name, ns, api=api, poll=poll, timeout=300)
        existing = None
    if existing is None:
        k8s_api.apply(obj, api=api)
    selector = f"{JOB_NAME_LABEL}={name}"
    what = f"{kind} {ns}/{name}"
    checks = [
        k8s_api.UnschedulableWatch(what, ns, selector, unschedulable_grace, api=core_api),
        k8s_api.PodSecurityWatch(kind, name, ns, fix=POD_SECURITY_FIXES.get(kind, ""), api=core_api),
    ]

    def check(current: dict | None) -> None:
        for watch in checks:
            watch(current)

    try:
        return k8s_api.wait(kind, name, ns, timeout=timeout, poll=poll, api=api, check=check)
    except UserError as err:
        logs_of = f"{selector},{REPLICA_TYPE_LABEL}=launcher" if kind == "MPIJob" else selector
        logs = k8s_api.pod_logs(ns, logs_of, api=core_api)
        raise UserError(f"{err}\n{logs}" if logs else str(err)) from None


# What to do when Pod Security refuses a job's pods (the PodSecurityWatch's one-line fix).
POD_SECURITY_FIXES = {
    "MPIJob": (
        "the v1 MPIJob launcher's kubectl-delivery init container has no security context, so "
        "MPIJobs need a namespace that enforces baseline: add the kustomize component "
        "manifests/components/mpijob-baseline to the project's overlay, or "
        "kubectl label namespace {namespace} pod-security.kubernetes.io/enforce=baseline --overwrite"
    ),
}


def _wait_gone(kind: str, name: str, ns: str, *, api, poll: float, timeout: float) -> None:
    import time

    from components.common import k8s_api

    deadline = time.monotonic() + timeout
    while k8s_api.get(kind, name, ns, api=api) is not None:
        if time.monotonic() >= deadline:
            raise UserError(f"{kind} {ns}/{name}: still there {timeout:g}s after delete")
        time.sleep(poll)


def deploy(obj: dict, timeout: float, *, api=None, apps_api=None, poll: float = 10.0) -> dict:
    """Create or update the InferenceService and wait until it is Ready and its predictor runs
    this ``storageUri`` (``k8s_api.wait``); return a summary."""
    from components.common import k8s_api

    k8s_api.apply(obj, api=api)
    ready = k8s_api.wait(
        obj["kind"],
        obj["metadata"]["name"],
        obj["metadata"]["namespace"],
        timeout,
        poll,
        api=api,
        apps_api=apps_api,
    )
    status = ready.get("status") or {}
    name = obj["metadata"]["name"]
    return {
        "name": name,
        "namespace": obj["metadata"]["namespace"],
        "url": status.get("url", ""),
        "storage_uri": obj["spec"]["predictor"]["model"]["storageUri"],
        "model_version": (obj["metadata"].get("labels") or {}).get(MODEL_VERSION_LABEL),
        "v1_predict": f"/v1/models/{name}:predict",
        "v2_infer": f"/v2/models/{name}/infer",
    }


def deploy_canary(
    settings: ClusterSettings,
    name: str,
    model_s3: str,
    check,
    timeout: float,
    *,
    api=None,
    apps_api=None,
    poll: float = 10.0,
    predictor_url=None,
) -> dict:
    """Roll ``model_s3`` out as a canary of the model ``name`` serves now, check it, promote or
    roll back (``components.cluster.canary``); the first model is deployed as ``deploy`` does.
    ``predictor_url(predictor_name)``: where a predictor answers (default: its Service's
    in-cluster URL, which the deploy task in the kubeflow namespace reaches)."""
    from components.cluster import canary as rollout

    def build(
        uri: str,
        predictor_name: str | None = None,
        canary: k8s.Canary | None = None,
        model_version: str | None = None,
    ) -> dict:
        return inference_service_object(
            settings, name, uri, predictor_name=predictor_name, canary=canary, model_version=model_version
        )

    return rollout.rollout(
        build,
        model_s3.rstrip("/") + "/",
        check,
        deploy=lambda obj: deploy(obj, timeout, api=api, apps_api=apps_api, poll=poll),
        predictor_url=predictor_url
        or (lambda pname: rollout.in_cluster_url(name, settings.namespace, pname)),
        model_name=name,
        api=api,
        poll=poll,
        version_of=read_model_version,
    )


def copy_model_dir(src_s3: str, dest_dir: str) -> list[str]:
    """Copy the model directory the job wrote (``model.json`` required) into ``dest_dir``."""
    import os

    import pyarrow.fs as pafs

    from components.common.storage import resolve_filesystem

    fs, path = resolve_filesystem(src_s3)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    files = [i for i in infos if i.type == pafs.FileType.File]
    if not any(os.path.basename(i.path) == "model.json" for i in files):
        raise UserError(f"{src_s3}: no model.json (the training job wrote no complete model directory)")
    os.makedirs(dest_dir, exist_ok=True)
    copied = []
    for info in files:
        rel = info.path[len(path.rstrip("/")) + 1 :]
        target = os.path.join(dest_dir, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with fs.open_input_stream(info.path) as src, open(target, "wb") as dst:
            dst.write(src.read())
        copied.append(rel)
    return sorted(copied)


def read_model_metrics(model_dir: str) -> dict:
    return dict(read_model_json(model_dir).get("metrics") or {})


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
