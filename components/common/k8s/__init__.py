"""Kubernetes objects for cluster mode, built as plain dicts by pure functions, one module per
kind of object; this package's namespace is their import surface (``from components.common
import k8s``; each name below is the one its module defines, re-exported unchanged):

- ``pods``: names, resources, GPU scheduling, security contexts shared by every pod;
- ``training``: ``pytorch_job`` (PyTorchJob, torchrun) and ``mpi_job`` (MPIJob, mpirun);
- ``jobs``: ``tune_job`` (the tune step's ``batch/v1`` Job of Optuna workers);
- ``serving``: ``inference_service`` (KServe InferenceService), ``Canary``, ``predictor_service``;
- ``cli``: ``python -m components.common.k8s KIND ...`` prints an object as YAML (a dry run).

Nothing here talks to the API server (that is ``components.common.k8s_api``). See docs/cluster.md.
"""

from .cli import main, to_yaml
from .jobs import USER_ERROR_EXIT, tune_job
from .pods import (
    CUSTOM_KINDS,
    DEFAULT_NAMESPACE,
    GPU_POOL_LABEL,
    GPU_RESOURCE,
    NON_ROOT_UID,
    RUNNER_SERVICE_ACCOUNT,
    TRAINER_SERVICE_ACCOUNT,
    GpuScheduling,
    Resources,
    container_security_context,
    pod_security_context,
)
from .serving import (
    DEFAULT_SCALE_TARGETS,
    DEPLOYMENT_MODES,
    HPA_METRICS,
    KNATIVE_MODES,
    KPA_METRICS,
    MODEL_FORMAT,
    MODEL_VERSION_LABEL,
    PROTOCOLS,
    SERVING_RUNTIME,
    SERVING_SERVICE_ACCOUNT,
    Canary,
    inference_service,
    predictor_service,
)
from .training import (
    ELASTIC_RDZV_PORT,
    MPI_KUBECTL,
    MPIRUN_OPTIONS,
    mpi_job,
    mpi_launcher_script,
    pytorch_job,
)

__all__ = [
    "CUSTOM_KINDS", "DEFAULT_NAMESPACE", "DEFAULT_SCALE_TARGETS", "DEPLOYMENT_MODES", "ELASTIC_RDZV_PORT",
    "GPU_POOL_LABEL", "GPU_RESOURCE", "HPA_METRICS", "KNATIVE_MODES", "KPA_METRICS", "MODEL_FORMAT",
    "MODEL_VERSION_LABEL", "MPIRUN_OPTIONS", "MPI_KUBECTL", "NON_ROOT_UID", "PROTOCOLS",
    "RUNNER_SERVICE_ACCOUNT", "SERVING_RUNTIME", "SERVING_SERVICE_ACCOUNT", "TRAINER_SERVICE_ACCOUNT",
    "USER_ERROR_EXIT", "Canary", "GpuScheduling", "Resources", "container_security_context", "inference_service",
    "main", "mpi_job", "mpi_launcher_script", "pod_security_context", "predictor_service", "pytorch_job",
    "to_yaml", "tune_job",
]  # fmt: skip
