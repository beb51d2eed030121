"""The cluster step's shared base: the ``fareflow-cluster`` ConfigMap as typed settings, pinned
image tags, artifact URIs and stable job names.

``training``, ``tuning`` and ``serving`` build their objects from these settings with the pure
builders in ``components.common.k8s`` and drive them through ``components.common.k8s_api``;
``models`` moves the model directory. The data flow is in docs/cluster.md.

Run-time settings come from the ``fareflow-cluster`` ConfigMap (``manifests/base``), so an
overlay can change image tags, GPUs and autoscaling without recompiling the pipeline.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from components.common import k8s
from components.common.errors import UserError

CONFIG_MAP = "fareflow-cluster"
S3_SECRET = "fareflow-s3"
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
    serving_request_logging: bool = False  # a log line per request in the predictor's pods
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

        def boolean(key: str, default: bool) -> bool:
            raw = str(data.get(key, default)).strip().lower()
            if raw not in ("true", "false"):
                raise UserError(
                    f"ConfigMap {namespace}/{CONFIG_MAP}: {key}={data[key]!r}: expected true or false"
                )
            return raw == "true"

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
            serving_request_logging=boolean("SERVING_REQUEST_LOGGING", cls.serving_request_logging),
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


def load_settings(namespace: str, api=None) -> ClusterSettings:
    from components.common import k8s_api

    return ClusterSettings.from_config_map(k8s_api.config_map(CONFIG_MAP, namespace, api=api), namespace)


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


def wait_gone(kind: str, name: str, ns: str, *, api, poll: float, timeout: float) -> None:
    """Wait until the deleted object ``kind`` ``ns``/``name`` is gone; ``UserError`` after ``timeout``."""
    import time

    from components.common import k8s_api

    deadline = time.monotonic() + timeout
    while k8s_api.get(kind, name, ns, api=api) is not None:
        if time.monotonic() >= deadline:
            raise UserError(f"{kind} {ns}/{name}: still there {timeout:g}s after delete")
        time.sleep(poll)


def run_workload(
    obj: dict,
    timeout: float,
    *,
    pods: str,
    logs_of: str | None = None,
    pod_security_fix: str = "",
    api=None,
    core_api=None,
    poll: float = 10.0,
    unschedulable_grace: float = 300.0,
    sleep=None,
    clock=None,
) -> dict:
    """Create a job-like object -- a PyTorchJob, MPIJob or batch/v1 Job -- reusing one that
    already succeeded and replacing one that failed, and wait for its success condition
    (``k8s_api.WAIT_CONDITIONS``). It ends early, instead of waiting out ``timeout``: a pod
    (``pods``: their label selector) the scheduler cannot place for ``unschedulable_grace``
    seconds, with the scheduler's reason, and pods the namespace's Pod Security level refuses,
    with ``pod_security_fix``. A failure raises ``UserError`` with the object's reason and the
    last log lines of the pods ``logs_of`` selects (default: ``pods``)."""
    import time

    from components.common import k8s_api

    kind, name, ns = obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]
    done, _failed = k8s_api.WAIT_CONDITIONS[kind]
    existing = k8s_api.get(kind, name, ns, api=api)
    if existing is not None and k8s_api.condition(existing, done):
        return existing
    if existing is not None and k8s_api.failure_condition(existing):
        k8s_api.delete(kind, name, ns, api=api)
        wait_gone(kind, name, ns, api=api, poll=poll, timeout=300)
        existing = None
    if existing is None:
        k8s_api.apply(obj, api=api)
    checks = [
        k8s_api.UnschedulableWatch(f"{kind} {ns}/{name}", ns, pods, unschedulable_grace, api=core_api),
        k8s_api.PodSecurityWatch(kind, name, ns, fix=pod_security_fix, api=core_api),
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
        logs = k8s_api.pod_logs(ns, logs_of or pods, api=core_api)
        raise UserError(f"{err}\n{logs}" if logs else str(err)) from None
