"""Training jobs as plain dicts (Kubeflow Training Operator v1.9):

- ``pytorch_job``: ``kubeflow.org/v1`` PyTorchJob, one Master plus N Workers, each running
  ``torchrun``. The operator injects ``PET_*`` (and ``MASTER_ADDR``/``MASTER_PORT``/
  ``WORLD_SIZE``/``RANK``) only because a Master replica exists; torchrun reads the ``PET_*``
  variables, so no rendezvous flags are passed here. Elastic: Workers only, an elasticPolicy.
- ``mpi_job``: ``kubeflow.org/v1`` MPIJob (the Training Operator's, not mpi-operator's
  v2beta1), one Launcher that waits for its N Workers and runs plain ``mpirun`` over the
  operator's hostfile and kubexec.sh rsh agent; the ranks (Horovod's) run in the Workers.
"""

from __future__ import annotations

import copy

from ..errors import UserError
from .pods import (
    DEFAULT_NAMESPACE,
    TRAINER_SERVICE_ACCOUNT,
    GpuScheduling,
    Resources,
    check_name,
    container_security_context,
    env_from,
    env_list,
    metadata,
    pod_template,
)


def _launcher_template(container: dict, labels: dict[str, str] | None) -> dict:
    """The MPIJob launcher's pod: no serviceAccountName, so the Training Operator runs it as the
    ServiceAccount it makes for the job (``NAME-launcher``, bound to a Role allowing
    ``pods/exec`` on exactly this job's workers: v1.9.2 pkg/controller.v1/mpi/mpijob_controller.go
    newLauncher, newLauncherRole), with its token mounted for ``kubexec.sh``'s kubectl."""
    template = pod_template(container, service_account="", gpu=None, labels=labels)
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
    resources: Resources = Resources(),  # noqa: B008 (a frozen dataclass)
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
        "env": env_list(env),
        **env_from(env_from_secret),
        "resources": resources.to_dict(gpus),
        "securityContext": container_security_context(),
    }
    template = pod_template(container, service_account=service_account, gpu=gpu, labels=labels)
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
        "metadata": metadata(name, namespace, labels),
        "spec": {
            "nprocPerNode": str(nproc_per_node),
            "runPolicy": _run_policy(backoff_limit, ttl_seconds_after_finished, "None"),
            **elastic,
            "pytorchReplicaSpecs": replica_specs,
        },
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
    resources: Resources = Resources(),  # noqa: B008 (a frozen dataclass)
    launcher_resources: Resources = Resources("250m", "512Mi", "1", "1Gi"),  # noqa: B008 (a frozen dataclass)
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
    check_name(name)
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
        "env": env_list(None),
        "resources": launcher_resources.to_dict(),
        "securityContext": container_security_context(),
    }
    worker = {
        "name": "mpi",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sleep", "infinity"],
        "env": env_list(env),
        **env_from(env_from_secret),
        "resources": resources.to_dict(gpus),
        "securityContext": container_security_context(),
    }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "MPIJob",
        "metadata": metadata(name, namespace, labels),
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
                    "template": pod_template(worker, service_account=service_account, gpu=gpu, labels=labels),
                },
            },
        },
    }
