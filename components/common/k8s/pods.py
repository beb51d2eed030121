"""What every pod fareflow defines shares: names of the namespace and ServiceAccounts, the custom
kinds' API paths, resources, GPU scheduling, the restricted security contexts, scratch volumes,
environment and object metadata.

Every pod runs as non-root with no privilege escalation, all capabilities dropped, a read-only
root filesystem (writable ``/tmp`` and ``/dev/shm`` come from ``emptyDir``) and resource
requests and limits. ``GpuScheduling`` adds the GPU pool's node selector, the ``nvidia.com/gpu``
toleration and the GPU limit. Pure functions: nothing here talks to the API server.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..errors import UserError

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
GPU_RESOURCE = "nvidia.com/gpu"
GPU_POOL_LABEL = "fareflow.io/pool"
NON_ROOT_UID = 10001  # high UID (no clash with node users); images must not rely on their own UID


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


def scratch_volumes() -> tuple[list[dict], list[dict]]:
    """Writable /tmp and a memory-backed /dev/shm (torch DataLoader workers) on a read-only rootfs."""
    volumes = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
    ]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "dshm", "mountPath": "/dev/shm"}]
    return volumes, mounts


def env_list(env: dict[str, str] | None) -> list[dict]:
    base = {"HOME": "/tmp", "PYTHONUNBUFFERED": "1"}
    base.update(env or {})
    return [{"name": k, "value": str(v)} for k, v in base.items()]


def env_from(secret: str | None) -> dict:
    """``envFrom`` a Secret (e.g. the S3 credentials), optional so a source needing none still runs."""
    return {"envFrom": [{"secretRef": {"name": secret, "optional": True}}]} if secret else {}


def check_name(name: str) -> None:
    import re

    # A DNS-1035 label (a DNS-1123 label that starts with a letter): KServe's webhook refuses an
    # InferenceService name with a leading digit (IsvcNameFmt), and the Services the operators name
    # after a job or predictor must be DNS-1035 labels.
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name or ""):
        raise UserError(
            f"name {name!r}: expected a DNS-1123 label that starts with a letter "
            "(lower-case letters, digits, '-', <= 63)"
        )


def metadata(name: str, namespace: str, labels: dict[str, str] | None, annotations=None) -> dict:
    check_name(name)
    meta = {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "fareflow", **(labels or {})},
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def pod_template(
    container: dict,
    *,
    service_account: str,
    gpu: GpuScheduling | None,
    labels: dict[str, str] | None,
) -> dict:
    volumes, mounts = scratch_volumes()
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
