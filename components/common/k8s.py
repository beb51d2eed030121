"""Kubernetes objects for cluster mode, built as plain dicts by pure functions.

- ``pytorch_job``: ``kubeflow.org/v1`` PyTorchJob (Training Operator v1.9), one Master plus
  N Workers, each running ``torchrun``. The operator injects ``PET_*`` (and
  ``MASTER_ADDR``/``MASTER_PORT``/``WORLD_SIZE``/``RANK``) only because a Master replica exists;
  torchrun reads the ``PET_*`` variables, so no rendezvous flags are passed here.
- ``mpi_job``: ``kubeflow.org/v1`` MPIJob (the Training Operator's, not mpi-operator's
  v2beta1), one Launcher that waits for its N Workers and runs plain ``mpirun`` over the
  operator's hostfile and kubexec.sh rsh agent; the ranks (Horovod's) run in the Workers.
- ``tune_job``: ``batch/v1`` Job of N identical pods (``parallelism`` = ``completions`` = N),
  each one Optuna worker (``python -m components.tune``) on one shared study in PostgreSQL,
  whose credentials come from a Secret (``secretKeyRef`` env), never from the object itself.
- ``inference_service``: ``serving.kserve.io/v1beta1`` InferenceService using the
  ``fareflow-server`` ServingRuntime from ``manifests/base`` (open inference protocol v2, and v1),
  Standard (raw Deployment + HPA) or Knative deployment mode, min/max replicas.

Every pod runs as non-root with no privilege escalation, all capabilities dropped, a
read-only root filesystem (writable ``/tmp`` and ``/dev/shm`` come from ``emptyDir``) and
resource requests and limits. ``GpuScheduling`` adds the GPU pool's node selector, the
``nvidia.com/gpu`` toleration and the GPU limit.

Nothing here talks to the API server (that is ``components.common.k8s_api``).
``python -m components.common.k8s KIND ...`` prints an object as YAML (a dry run).
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass, field

from .errors import UserError

# Group/version/plural of each custom kind, shared with k8s_api.
CUSTOM_KINDS: dict[str, tuple[str, str, str]] = {
    "PyTorchJob": ("kubeflow.org", "v1", "pytorchjobs"),
    "MPIJob": ("kubeflow.org", "v1", "mpijobs"),
    "InferenceService": ("serving.kserve.io", "v1beta1", "inferenceservices"),
    # Not custom, but CustomObjectsApi's /apis/GROUP/VERSION/namespaces/NS/PLURAL paths serve
    # every non-core group: the tune step's parallel workers (``tune_job``).
    "Job": ("batch", "v1", "jobs"),
}

DEFAULT_NAMESPACE = "fareflow"
RUNNER_SERVICE_ACCOUNT = "fareflow-pipeline-runner"
TRAINER_SERVICE_ACCOUNT = "fareflow-trainer"
# An InferenceService's label naming the model its predictor serves (model.json's model_version).
MODEL_VERSION_LABEL = "fareflow.io/model-version"
SERVING_SERVICE_ACCOUNT = "fareflow-serving"
SERVING_RUNTIME = "fareflow-server"
MODEL_FORMAT = "fareflow"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_POOL_LABEL = "fareflow.io/pool"
NON_ROOT_UID = 10001  # high UID (no clash with node users); images must not rely on their own UID
DEPLOYMENT_MODES = ("Standard", "RawDeployment", "Knative", "Serverless")
KNATIVE_MODES = ("Knative", "Serverless")
PROTOCOLS = ("v1", "v2")
# KServe v0.21's validator (pkg/apis/serving/v1beta1/inference_service_validation.go): the HPA
# class takes cpu or memory, Knative's KPA only concurrency or rps. First = the default.
HPA_METRICS = ("cpu", "memory")
KPA_METRICS = ("concurrency", "rps")
DEFAULT_SCALE_TARGETS = {"cpu": 70, "concurrency": 10, "rps": 100}


@dataclass(frozen=True)
class Resources:
    """Requests and limits of one container (Kubernetes quantity strings)."""

    cpu_request: str = "500m"
    memory_request: str = "1Gi"
    cpu_limit: str = "2"
    memory_limit: str = "4Gi"

    def to_dict(self, gpus: int = 0) -> dict:
        out = {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }
        if gpus:
            # Extended resources: the request must equal the limit; setting the limit is enough.
            out["limits"][GPU_RESOURCE] = str(gpus)
        return out


@dataclass(frozen=True)
class GpuScheduling:
    """Where GPU pods go: the GPU node pool's label, its taint and the GPUs per pod."""

    gpus_per_pod: int = 1
    node_selector: dict[str, str] = field(default_factory=lambda: {GPU_POOL_LABEL: "gpu"})
    toleration_key: str = GPU_RESOURCE

    def __post_init__(self) -> None:
        if self.gpus_per_pod < 1:
            raise UserError(f"gpus_per_pod: expected an integer >= 1, got {self.gpus_per_pod}")

    def tolerations(self) -> list[dict]:
        return [{"key": self.toleration_key, "operator": "Exists", "effect": "NoSchedule"}]


def pod_security_context() -> dict:
    """Pod-level: non-root (this also covers containers the operators inject), RuntimeDefault seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "runAsGroup": NON_ROOT_UID,
        "fsGroup": NON_ROOT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(read_only_root: bool = True) -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _scratch_volumes() -> tuple[list[dict], list[dict]]:
    """Writable /tmp and a memory-backed /dev/shm (torch DataLoader workers) on a read-only rootfs."""
    volumes = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
    ]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "dshm", "mountPath": "/dev/shm"}]
    return volumes, mounts


def _env(env: dict[str, str] | None) -> list[dict]:
    base = {"HOME": "/tmp", "PYTHONUNBUFFERED": "1"}
    base.update(env or {})
    return [{"name": k, "value": str(v)} for k, v in base.items()]


def _env_from(secret: str | None) -> dict:
    """``envFrom`` a Secret (e.g. the S3 credentials), optional so a source needing none still runs."""
    return {"envFrom": [{"secretRef": {"name": secret, "optional": True}}]} if secret else {}


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name or ""):
        raise UserError(f"name {name!r}: expected a DNS-1123 label (lower-case letters, digits, '-', <= 63)")


def _metadata(name: str, namespace: str, labels: dict[str, str] | None, annotations=None) -> dict:
    _check_name(name)
    meta = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "fareflow", **(labels or {})},
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _pod_template(
    container: dict,
    *,
    service_account: str,
    gpu: GpuScheduling | None,
    labels: dict[str, str] | None,
) -> dict:
    volumes, mounts = _scratch_volumes()
    container = copy.deepcopy(container)
    container = {**container, "volumeMounts": mounts + container.get("volumeMounts", [])}
    spec: dict = {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }
    if gpu is not None:
        spec["nodeSelector"] = dict(gpu.node_selector)
        spec["tolerations"] = gpu.tolerations()
    meta = {"labels": {"app.kubernetes.io/part-of": "fareflow", **(labels or {})}}
    # Istio sidecars (if any) would keep a finished job's pods alive.
    meta["annotations"] = {"sidecar.istio.io/inject": "false"}
    return {"metadata": meta, "spec": spec}


def _launcher_template(container: dict, labels: dict[str, str] | None) -> dict:
    """The MPIJob launcher's pod: no serviceAccountName, so the Training Operator runs it as the
    ServiceAccount it makes for the job (``NAME-launcher``, bound to a Role allowing
    ``pods/exec`` on exactly this job's workers: v1.9.2 pkg/controller.v1/mpi/mpijob_controller.go
    newLauncher, newLauncherRole), with its token mounted for ``kubexec.sh``'s kubectl."""
    template = _pod_template(container, service_account="", gpu=None, labels=labels)
    del template["spec"]["serviceAccountName"]
    template["spec"]["automountServiceAccountToken"] = True
    return template


def _run_policy(backoff_limit: int, ttl_seconds: int, clean: str) -> dict:
    return {"cleanPodPolicy": clean, "backoffLimit": backoff_limit, "ttlSecondsAfterFinished": ttl_seconds}


def pytorch_job(
    name: str,
    image: str,
    module: str,
    args: list[str] | None = None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    workers: int = 1,
    nproc_per_node: int = 1,
    resources: Resources = Resources(),
    gpu: GpuScheduling | None = None,
    env: dict[str, str] | None = None,
    env_from_secret: str | None = None,
    service_account: str = TRAINER_SERVICE_ACCOUNT,
    labels: dict[str, str] | None = None,
    backoff_limit: int = 2,
    ttl_seconds_after_finished: int = 3600,
    max_restarts: int | None = None,
) -> dict:
    """A PyTorchJob: Master + ``workers`` Workers, each ``torchrun --module MODULE ARGS``.

    ``env_from_secret``: a Secret whose keys become environment variables (S3 credentials).

    ``max_restarts`` (elastic): ``workers + 1`` Worker replicas and no Master, with an
    ``elasticPolicy`` (c10d rendezvous on worker-0, min = max = that many pods, torchrun
    ``--max-restarts`` via PET_MAX_RESTARTS). A pod killed with 128+ is recreated by the
    ExitCode policy and rejoins: the other pods' torchrun restarts its processes, and the
    ranks resume from the newest checkpoint (docs/train.md, "On a cluster")."""
    if workers < 0:
        raise UserError(f"workers: expected an integer >= 0, got {workers}")
    if max_restarts is not None and max_restarts < 0:
        raise UserError(f"max_restarts: expected an integer >= 0, got {max_restarts}")
    if nproc_per_node < 1:
        raise UserError(f"nproc_per_node: expected an integer >= 1, got {nproc_per_node}")
    gpus = gpu.gpus_per_pod if gpu else 0
    if gpu and nproc_per_node > gpus:
        raise UserError(f"nproc_per_node={nproc_per_node} exceeds the {gpus} GPU(s) per pod")
    if max_restarts is not None:
        # Elastic pods: torchrun's agents would share the rendezvous round's TCP store, hosted by
        # one agent; a pod the operator recreates starts a fresh agent that never learns the new
        # round's MASTER_ADDR from the survivor (container tier: the survivor timed out after 60 s
        # and the job failed). With a store per round the recreated pod rejoins.
        env = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", **(env or {})}
    container = {
        "name": "pytorch",  # the operator finds the training container by this name
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["torchrun", "--module", module],
        "args": list(args or []),
        "env": _env(env),
        **_env_from(env_from_secret),
        "resources": resources.to_dict(gpus),
        "securityContext": container_security_context(),
    }
    template = _pod_template(container, service_account=service_account, gpu=gpu, labels=labels)
    # ExitCode: exit codes 1-127 (a user error, a bug) fail the job at once; only 128+ (killed:
    # OOM, preemption, node loss) restart the replica. OnFailure would rerun a deterministic
    # failure backoff_limit times.
    elastic = {}
    if max_restarts is not None:
        # Training Operator v1.9.2: an elasticPolicy needs a Worker spec (webhook) and sets PET_RDZV_*,
        # PET_NNODES=min:max and PET_MAX_RESTARTS for torchrun (pkg/controller.v1/pytorch/elastic.go);
        # with no Master it injects no MASTER_ADDR/RANK and adds no init container (envvar.go,
        # initcontainer.go), and the job succeeds once a worker succeeds (pytorchjob_controller.go).
        pods = workers + 1
        elastic = {
            "elasticPolicy": {
                "rdzvBackend": "c10d",
                "rdzvPort": ELASTIC_RDZV_PORT,
                "minReplicas": pods,
                "maxReplicas": pods,
                "maxRestarts": max_restarts,
            }
        }
        replica_specs = {"Worker": {"replicas": pods, "restartPolicy": "ExitCode", "template": template}}
        workers = 0
    else:
        replica_specs = {"Master": {"replicas": 1, "restartPolicy": "ExitCode", "template": template}}
    if workers:
        worker_template = copy.deepcopy(template)  # no shared objects: YAML output stays anchor-free
        replica_specs["Worker"] = {
            "replicas": workers,
            "restartPolicy": "ExitCode",
            "template": worker_template,
        }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": _metadata(name, namespace, labels),
        "spec": {
            "nprocPerNode": str(nproc_per_node),
            "runPolicy": _run_policy(backoff_limit, ttl_seconds_after_finished, "None"),
            **elastic,
            "pytorchReplicaSpecs": replica_specs,
        },
    }


# A tune worker's exit status for a user error (components.common.errors: one line, exit 2):
# the same inputs fail the same way, so the Job fails at once instead of retrying.
USER_ERROR_EXIT = 2


def tune_job(
    name: str,
    image: str,
    args: list[str],
    *,
    namespace: str = DEFAULT_NAMESPACE,
    workers: int = 2,
    resources: Resources = Resources(),
    env: dict[str, str] | None = None,
    env_from_secret: str | None = None,
    secret_env: dict[str, tuple[str, str]] | None = None,
    service_account: str = TRAINER_SERVICE_ACCOUNT,
    labels: dict[str, str] | None = None,
    backoff_limit: int = 3,
    active_deadline_seconds: int | None = None,
    ttl_seconds_after_finished: int = 3600,
    module: str = "components.tune",
) -> dict:
    """A ``batch/v1`` Job: ``workers`` pods at once (``parallelism`` = ``completions`` =
    ``workers``), each ``python -m MODULE ARGS``: one Optuna worker on the shared study, which
    exits 0 once the study holds its total, so every pod completes.

    ``secret_env``: ``{ENV_NAME: (secret, key)}``, each a ``secretKeyRef`` (the database user and
    password: in the pod's environment only, never in the object, the argv or a log).
    ``env_from_secret``: a Secret whose keys all become environment variables (S3 credentials,
    optional). Pods never restart in place (``restartPolicy: Never``); a failed pod is replaced up
    to ``backoff_limit`` times, except that a user error (exit 2) fails the Job at once and a pod
    lost to a disruption (preemption, eviction, node drain) is replaced without counting
    (``podFailurePolicy``). The replacement joins the same study: the trial its predecessor was
    running turns FAIL at its stale heartbeat and is run again."""
    if workers < 1:
        raise UserError(f"workers: expected an integer >= 1, got {workers}")
    if backoff_limit < 0:
        raise UserError(f"backoff_limit: expected an integer >= 0, got {backoff_limit}")
    secret_refs = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for var, (secret, key) in (secret_env or {}).items()
    ]
    clash = sorted(set(secret_env or {}) & set(env or {}))
    if clash:
        raise UserError(f"env {clash}: set both as a value and from a Secret")
    container = {
        "name": "tune",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", module],
        "args": list(args),
        "env": _env(env) + secret_refs,
        **_env_from(env_from_secret),
        "resources": resources.to_dict(),
        "securityContext": container_security_context(),
    }
    template = _pod_template(container, service_account=service_account, gpu=None, labels=labels)
    template["spec"]["restartPolicy"] = "Never"  # podFailurePolicy needs Never
    spec: dict = {
        "parallelism": workers,
        "completions": workers,
        "backoffLimit": backoff_limit,
        "ttlSecondsAfterFinished": ttl_seconds_after_finished,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": "tune", "operator": "In", "values": [USER_ERROR_EXIT]},
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]
        },
        "template": template,
    }
    if active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = int(active_deadline_seconds)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(name, namespace, labels),
        "spec": spec,
    }


ELASTIC_RDZV_PORT = 29400  # torchrun's c10d rendezvous port, on the worker-0 pod (headless Service)


# Where the v1 MPIJob launcher finds what the Training Operator adds to it (v1.9.2
# pkg/controller.v1/mpi/mpijob.go, newLauncher/newConfigMap): kubectl, copied to /opt/kube by its
# kubectl-delivery init container, and from the ConfigMap NAME-config the hostfile
# (``OMPI_MCA_orte_default_hostfile``: ``NAME-worker-i slots=S`` lines) and kubexec.sh
# (``OMPI_MCA_plm_rsh_agent``: ``/opt/kube/kubectl exec POD -- /bin/sh -c "$*"``).
MPI_KUBECTL = "/opt/kube/kubectl"
# mpirun's options (Open MPI 4.1, Debian bookworm's openmpi-bin 4.1.4): no core binding, ranks
# filled slot by slot over the hostfile, the ob1 point-to-point layer over TCP (no InfiniBand
# verbs btl), and every worker's orted started by mpirun itself rather than by another worker's
# orted (tree spawn would need kubectl and pods/exec in the workers; only the launcher has them).
MPIRUN_OPTIONS = (
    "--bind-to", "none", "--map-by", "slot",
    "--mca", "pml", "ob1", "--mca", "btl", "^openib",
    "--mca", "plm_rsh_no_tree_spawn", "1",
)  # fmt: skip


def mpi_launcher_script(worker_pods: list[str], timeout_s: int) -> str:
    """The launcher's ``/bin/sh -c`` step before mpirun. The operator creates the launcher in the
    same pass as the workers, and kubexec.sh fails on a worker whose container does not run yet,
    so first wait until every worker is Ready (the launcher's ServiceAccount may get and watch
    pods; kubectl finds its token and namespace in the pod), then ``exec "$0" "$@"``: the
    container's args, which are the mpirun command line."""
    pods = " ".join(f"pod/{p}" for p in worker_pods)
    return f'set -e; {MPI_KUBECTL} wait --for=condition=Ready --timeout={timeout_s}s {pods}; exec "$0" "$@"'


def mpi_job(
    name: str,
    image: str,
    module: str,
    args: list[str] | None = None,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    workers: int = 2,
    slots_per_worker: int = 1,
    resources: Resources = Resources(),
    launcher_resources: Resources = Resources("250m", "512Mi", "1", "1Gi"),
    gpu: GpuScheduling | None = None,
    env: dict[str, str] | None = None,
    env_from_secret: str | None = None,
    service_account: str = TRAINER_SERVICE_ACCOUNT,
    labels: dict[str, str] | None = None,
    backoff_limit: int = 2,
    ttl_seconds_after_finished: int = 3600,
    workers_ready_timeout_s: int = 900,
) -> dict:
    """An MPIJob (Training Operator v1, not mpi-operator's v2beta1): a Launcher that waits for its
    workers, then runs ``mpirun -np W*S ... python -m MODULE ARGS`` over the operator's hostfile
    (one rank per slot, ``slots_per_worker`` per worker), and ``workers`` Workers that idle until
    mpirun's orted is started in them through ``kubectl exec`` (kubexec.sh).

    The ranks run inside the WORKER containers (orted inherits their environment), so ``env`` and
    ``env_from_secret`` (e.g. the S3 credentials) go to the workers; the launcher only drives
    them and gets neither the Secret nor a GPU. It runs as the ServiceAccount the operator makes
    for the job (``NAME-launcher``: ``pods/exec`` on exactly this job's workers), with its token;
    the workers run as ``service_account`` without one.

    ``restartPolicy`` Never on the launcher: a failed mpirun fails the job at once (its exit
    code cannot tell a preempted worker from a bug, and rerunning a deterministic failure only
    delays the report); the pipeline's retry makes a new job. Pod Security: every container here
    meets "restricted", but the operator's kubectl-delivery init container has no security
    context and v1 MPIJob has no field for one, so the launcher needs a namespace that enforces
    "baseline" (``manifests/components/mpijob-baseline``)."""
    if workers < 1:
        raise UserError(f"workers: expected an integer >= 1, got {workers}")
    if slots_per_worker < 1:
        raise UserError(f"slots_per_worker: expected an integer >= 1, got {slots_per_worker}")
    if workers_ready_timeout_s < 1:
        raise UserError(f"workers_ready_timeout_s: expected an integer >= 1, got {workers_ready_timeout_s}")
    gpus = gpu.gpus_per_pod if gpu else 0
    if gpu and slots_per_worker > gpus:
        raise UserError(f"slots_per_worker={slots_per_worker} exceeds the {gpus} GPU(s) per worker")
    _check_name(name)
    worker_pods = [f"{name}-worker-{i}" for i in range(workers)]
    launcher = {
        "name": "mpi",  # the operator adds its env and mounts to the first container
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", mpi_launcher_script(worker_pods, workers_ready_timeout_s)],
        "args": [
            "mpirun",
            "-np",
            str(workers * slots_per_worker),
            *MPIRUN_OPTIONS,
            "python",
            "-m",
            module,
            *(args or []),
        ],
        "env": _env(None),
        "resources": launcher_resources.to_dict(),
        "securityContext": container_security_context(),
    }
    worker = {
        "name": "mpi",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sleep", "infinity"],
        "env": _env(env),
        **_env_from(env_from_secret),
        "resources": resources.to_dict(gpus),
        "securityContext": container_security_context(),
    }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "MPIJob",
        "metadata": _metadata(name, namespace, labels),
        "spec": {
            "slotsPerWorker": slots_per_worker,
            # Running: once the launcher has finished, the idle workers are deleted.
            "runPolicy": _run_policy(backoff_limit, ttl_seconds_after_finished, "Running"),
            "mpiReplicaSpecs": {
                "Launcher": {
                    "replicas": 1,
                    "restartPolicy": "Never",
                    "template": _launcher_template(launcher, labels),
                },
                "Worker": {
                    "replicas": workers,
                    "restartPolicy": "OnFailure",
                    "template": _pod_template(
                        worker, service_account=service_account, gpu=gpu, labels=labels
                    ),
                },
            },
        },
    }


@dataclass(frozen=True)
class Canary:
    """A candidate model served beside the stable one (KServe's ``spec.canary``, Standard mode):
    its own Deployment ``ISVC-NAME-predictor`` with a fixed number of replicas, sharing
    ``traffic_percent`` of the requests (KServe v0.20.0+
    ``pkg/controller/v1beta1/inferenceservice/components/predictor.go``,
    ``reconcileCanaryDeployments``; validated by ``inference_service_validation.go``
    ``validateCanarySpecs``)."""

    name: str
    storage_uri: str
    traffic_percent: int

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not 0 <= self.traffic_percent <= 100:
            raise UserError(f"canary traffic_percent={self.traffic_percent}: expected an integer in [0, 100]")
        _check_storage_uri(self.storage_uri)


def predictor_service(isvc: str, predictor_name: str | None = None) -> str:
    """The predictor's Deployment and Service name (KServe ``constants.PredictorServiceName``)."""
    return f"{isvc}-{predictor_name}-predictor" if predictor_name else f"{isvc}-predictor"


def _check_storage_uri(storage_uri: str) -> None:
    if not storage_uri.startswith(("s3://", "pvc://", "gs://", "https://")):
        raise UserError(f"storage_uri {storage_uri!r}: expected s3://, pvc://, gs:// or https://")


def inference_service(
    name: str,
    storage_uri: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    runtime: str = SERVING_RUNTIME,
    model_format: str = MODEL_FORMAT,
    protocol: str = "v2",
    deployment_mode: str = "Standard",
    min_replicas: int = 1,
    max_replicas: int = 3,
    scale_metric: str | None = None,
    scale_target: int | None = None,
    resources: Resources = Resources("250m", "512Mi", "1", "1Gi"),
    gpu: GpuScheduling | None = None,
    service_account: str = SERVING_SERVICE_ACCOUNT,
    labels: dict[str, str] | None = None,
    predictor_name: str | None = None,
    canary: Canary | None = None,
) -> dict:
    """An InferenceService for a model under ``storage_uri`` (s3://… or pvc://…).

    ``predictor_name`` names the stable predictor (its Deployment ``NAME-PREDICTOR-predictor``;
    a promoted canary keeps its name). ``canary``: a candidate model beside it (Standard mode).

    The URL's model name (``/v1/models/NAME:predict``, ``/v2/models/NAME/infer``) is ``name``:
    the ServingRuntime passes ``{{.Name}}`` to the server as its model name.

    ``scale_metric``: Standard (HPA) ``cpu`` (default) or ``memory``; Knative (KPA)
    ``concurrency`` (default) or ``rps``. ``scale_target`` defaults per metric (cpu 70 %,
    concurrency 10, rps 100; memory has none).
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"protocol {protocol!r}: expected one of {PROTOCOLS}")
    if deployment_mode not in DEPLOYMENT_MODES:
        raise UserError(f"deployment_mode {deployment_mode!r}: expected one of {DEPLOYMENT_MODES}")
    knative = deployment_mode in KNATIVE_MODES
    metrics = KPA_METRICS if knative else HPA_METRICS
    scale_metric = scale_metric or metrics[0]
    if scale_metric not in metrics:
        raise UserError(
            f"scale_metric {scale_metric!r}: expected one of {metrics} in {deployment_mode} mode "
            f"({'Knative KPA' if knative else 'HPA'} autoscaling)"
        )
    scale_target = DEFAULT_SCALE_TARGETS.get(scale_metric) if scale_target is None else scale_target
    if scale_target is not None and not (1 <= scale_target <= (100 if scale_metric == "cpu" else 10**9)):
        bound = "[1, 100] (% CPU)" if scale_metric == "cpu" else ">= 1"
        raise UserError(f"scale_target={scale_target}: expected {bound} for scale_metric {scale_metric}")
    if min_replicas < (0 if knative else 1):
        raise UserError(
            f"min_replicas={min_replicas}: scale to zero needs the Knative mode; expected >= 1 in {deployment_mode}"
        )
    if max_replicas < max(min_replicas, 1):
        raise UserError(f"max_replicas={max_replicas}: expected >= min_replicas ({min_replicas}) and >= 1")
    _check_storage_uri(storage_uri)
    if predictor_name is not None:
        _check_name(predictor_name)
    if canary is not None:
        if knative:
            raise UserError(
                f"canary: KServe serves a canary beside the stable model in Standard mode only, not {deployment_mode}"
            )
        if canary.name == predictor_name:
            raise UserError(f"canary name {canary.name!r}: expected a name other than the stable predictor's")
    annotations = {"serving.kserve.io/deploymentMode": deployment_mode}
    if not knative:
        annotations["serving.kserve.io/autoscalerClass"] = "hpa"
    gpus = gpu.gpus_per_pod if gpu else 0
    volumes, mounts = _scratch_volumes()
    predictor: dict = {
        "serviceAccountName": service_account,
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "scaleMetric": scale_metric,
        **({"scaleTarget": scale_target} if scale_target is not None else {}),
        "securityContext": pod_security_context(),
        "model": {
            "modelFormat": {"name": model_format},
            "runtime": runtime,
            "protocolVersion": protocol,
            "storageUri": storage_uri,
            "resources": resources.to_dict(gpus),
            "securityContext": container_security_context(),
            "volumeMounts": mounts,
        },
        "volumes": volumes,
    }
    if gpu is not None:
        predictor["nodeSelector"] = dict(gpu.node_selector)
        predictor["tolerations"] = gpu.tolerations()
    if predictor_name is not None:
        predictor["name"] = predictor_name
    spec: dict = {"predictor": predictor}
    if canary is not None:
        # KServe builds the canary's pods from the stable predictor with these fields merged in;
        # it refuses replica or autoscaling settings here (the canary's replicas are fixed).
        model = {**copy.deepcopy(predictor["model"]), "storageUri": canary.storage_uri}
        spec["canary"] = [
            {"predictor": {"name": canary.name, "model": model}, "trafficPercent": canary.traffic_percent}
        ]
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _metadata(name, namespace, labels, annotations),
        "spec": spec,
    }


def to_yaml(obj: dict | list[dict]) -> str:
    import yaml

    docs = obj if isinstance(obj, list) else [obj]
    return yaml.safe_dump_all(docs, sort_keys=False)


def _parser() -> argparse.ArgumentParser:
    from .images import SERVER_IMAGE, TRAINER_IMAGE

    p = argparse.ArgumentParser(
        prog="python -m components.common.k8s",
        description="Print a PyTorchJob, MPIJob or InferenceService as YAML (dry run; nothing is applied). "
        "Arguments after -- go to the training module.",
    )
    p.add_argument("kind", choices=["pytorchjob", "mpijob", "inferenceservice"])
    p.add_argument("--name", default="fareflow-train")
    p.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    p.add_argument(
        "--image", default=None, help=f"default: {TRAINER_IMAGE} (jobs), {SERVER_IMAGE} unused by ISVC"
    )
    p.add_argument("--module", default="components.train", help="python module the training pods run")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--gpus", type=int, default=0, help="GPUs per training/serving pod (0: CPU pool)")
    p.add_argument("--storage-uri", default="s3://fareflow/models/latest")
    p.add_argument("--deployment-mode", default="Standard", choices=DEPLOYMENT_MODES)
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=3)
    p.add_argument("--scale-metric", default=None, help="cpu/memory (Standard), concurrency/rps (Knative)")
    return p


def main(argv: list[str] | None = None) -> int:
    from .images import TRAINER_IMAGE

    argv = list(sys.argv[1:] if argv is None else argv)
    own, _, module_args = (
        (argv[: argv.index("--")], True, argv[argv.index("--") + 1 :])
        if "--" in argv
        else (
            argv,
            False,
            [],
        )
    )
    ns = _parser().parse_args(own)
    ns.args = module_args
    gpu = GpuScheduling(gpus_per_pod=ns.gpus) if ns.gpus else None
    image = ns.image or TRAINER_IMAGE
    if ns.kind == "pytorchjob":
        obj = pytorch_job(
            ns.name, image, ns.module, ns.args, namespace=ns.namespace, workers=ns.workers, gpu=gpu
        )
    elif ns.kind == "mpijob":
        obj = mpi_job(ns.name, image, ns.module, ns.args, namespace=ns.namespace, workers=ns.workers, gpu=gpu)
    else:
        obj = inference_service(
            ns.name,
            ns.storage_uri,
            namespace=ns.namespace,
            deployment_mode=ns.deployment_mode,
            min_replicas=ns.min_replicas,
            max_replicas=ns.max_replicas,
            scale_metric=ns.scale_metric,
            gpu=gpu,
        )
    sys.stdout.write(to_yaml(obj))
    return 0


if __name__ == "__main__":
    from .errors import cli_entry

    sys.exit(cli_entry(main)())
