"""The one module that talks to the Kubernetes API server.

Applies, reads, waits on and deletes the custom objects ``components.common.k8s`` builds
(PyTorchJob, MPIJob, InferenceService) through the ``kubernetes`` client's
``CustomObjectsApi``. The client is imported lazily; pass ``api=`` to use another
``CustomObjectsApi`` (tests pass a fake).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import UserError
from .k8s import CUSTOM_KINDS

# Conditions that end a wait: (condition type that means success, types that mean failure).
_JOB_DONE = ("Succeeded", ("Failed",))
_READY = ("Ready", ())
WAIT_CONDITIONS = {"PyTorchJob": _JOB_DONE, "MPIJob": _JOB_DONE, "InferenceService": _READY}


def _load_config() -> None:
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, FileNotFoundError, TypeError) as err:
            raise UserError(f"no Kubernetes configuration (in-cluster or kubeconfig): {err}") from err


def custom_objects_api():
    """A CustomObjectsApi from the in-cluster config, else from the kubeconfig."""
    from kubernetes import client

    _load_config()
    return client.CustomObjectsApi()


def core_v1_api():
    """A CoreV1Api (ConfigMaps, pod logs), configured like ``custom_objects_api``."""
    from kubernetes import client

    _load_config()
    return client.CoreV1Api()


def config_map(name: str, namespace: str, api=None) -> dict[str, str] | None:
    """A ConfigMap's data, or None when it does not exist."""
    api = api or core_v1_api()
    try:
        return dict(api.read_namespaced_config_map(name, namespace).data or {})
    except _api_exception() as err:
        if err.status == 404:
            return None
        raise UserError(f"get ConfigMap {namespace}/{name}: HTTP {err.status}: {err.reason}") from err


def pod_logs(namespace: str, selector: str, tail: int = 40, api=None) -> str:
    """The last ``tail`` log lines of each pod matching ``selector`` (best effort, for error messages)."""
    api = api or core_v1_api()
    chunks = []
    try:
        for pod in api.list_namespaced_pod(namespace, label_selector=selector).items:
            name = pod.metadata.name
            text = api.read_namespaced_pod_log(name, namespace, tail_lines=tail, _preload_content=True)
            chunks.append(f"--- {name} (last {tail} lines)\n{text}")
    except _api_exception() as err:
        chunks.append(f"(pod logs unavailable: HTTP {err.status}: {err.reason})")
    return "\n".join(chunks)


def _gvp(kind: str) -> tuple[str, str, str]:
    try:
        return CUSTOM_KINDS[kind]
    except KeyError:
        raise UserError(f"kind {kind!r}: expected one of {sorted(CUSTOM_KINDS)}") from None


def _api_exception():
    from kubernetes.client.exceptions import ApiException

    return ApiException


def apply(obj: dict, api=None) -> dict:
    """Create the object, or merge-patch it when it exists already (idempotent)."""
    api = api or custom_objects_api()
    group, version, plural = _gvp(obj["kind"])
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    ApiException = _api_exception()
    try:
        return api.create_namespaced_custom_object(group, version, ns, plural, obj)
    except ApiException as err:
        if err.status != 409:
            raise UserError(f"create {obj['kind']} {ns}/{name}: HTTP {err.status}: {err.reason}") from err
    return api.patch_namespaced_custom_object(group, version, ns, plural, name, obj)


def get(kind: str, name: str, namespace: str, api=None) -> dict | None:
    """The object, or None when it does not exist."""
    api = api or custom_objects_api()
    group, version, plural = _gvp(kind)
    try:
        return api.get_namespaced_custom_object(group, version, namespace, plural, name)
    except _api_exception() as err:
        if err.status == 404:
            return None
        raise UserError(f"get {kind} {namespace}/{name}: HTTP {err.status}: {err.reason}") from err


def delete(kind: str, name: str, namespace: str, api=None) -> bool:
    """Delete (foreground propagation); False when it was not there."""
    api = api or custom_objects_api()
    group, version, plural = _gvp(kind)
    try:
        api.delete_namespaced_custom_object(
            group, version, namespace, plural, name, body={"propagationPolicy": "Foreground"}
        )
        return True
    except _api_exception() as err:
        if err.status == 404:
            return False
        raise UserError(f"delete {kind} {namespace}/{name}: HTTP {err.status}: {err.reason}") from err


def condition(obj: dict, type_: str) -> dict | None:
    """The status condition of a type whose status is "True", if any."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and str(cond.get("status")) == "True":
            return cond
    return None


def wait(
    kind: str,
    name: str,
    namespace: str,
    timeout: float = 3600.0,
    poll: float = 5.0,
    api=None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """Poll until a job Succeeded (UserError if it Failed) or an InferenceService is Ready."""
    api = api or custom_objects_api()
    done, failed = WAIT_CONDITIONS[kind] if kind in WAIT_CONDITIONS else (_gvp(kind) and _READY)
    deadline = clock() + timeout
    while True:
        obj = get(kind, name, namespace, api=api)
        if obj is not None:
            if condition(obj, done):
                return obj
            for bad in failed:
                cond = condition(obj, bad)
                if cond:
                    raise UserError(
                        f"{kind} {namespace}/{name} {bad}: {cond.get('reason', '')} {cond.get('message', '')}".strip()
                    )
        if clock() >= deadline:
            state = (
                "not found" if obj is None else f"conditions {(obj.get('status') or {}).get('conditions')}"
            )
            raise UserError(f"{kind} {namespace}/{name}: no {done} condition after {timeout:g}s ({state})")
        sleep(poll)
