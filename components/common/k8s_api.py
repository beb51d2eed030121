"""The one module that talks to the Kubernetes API server.

Applies, reads, waits on and deletes the custom objects ``components.common.k8s`` builds
(PyTorchJob, MPIJob, InferenceService; and the tune step's batch/v1 Job) through the ``kubernetes`` client's
``CustomObjectsApi``. The client is imported lazily; pass ``api=`` to use another
``CustomObjectsApi`` (tests pass a fake), and ``apps_api=`` for the ``AppsV1Api``.

When is a (re)deployed InferenceService serving the model it was given? Its ``Ready``
condition alone says nothing about the current spec: in Standard mode it mirrors the predictor
Deployment's ``Available`` condition, which stays True on the old pods during a rollout, and
its ``status.observedGeneration`` is copied from the predictor Deployment (Knative mode: from
the Knative Service), not from the InferenceService's own ``metadata.generation`` (KServe
v0.21 ``pkg/apis/serving/v1beta1/inference_service_status.go``), so comparing the two would
be comparing unrelated counters. ``wait`` therefore also requires that the object behind the
predictor, ``NAME-predictor`` (a Deployment, or a Knative Service), carries the
InferenceService's ``storageUri`` in its pod template
(``internal.serving.kserve.io/storage-initializer-sourceuri``), has observed its own latest
generation (``status.observedGeneration >= metadata.generation``), and finished rolling out.
Training Operator v1.9 jobs have no ``observedGeneration`` (``JobStatus``: conditions, replica
statuses, times); fareflow never updates a job in place (a failed one is deleted and created
again), so their Succeeded/Failed conditions are the job's own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from .errors import UserError
from .k8s import CUSTOM_KINDS

# Conditions that end a wait: (condition type that means success, types that mean failure).
_JOB_DONE = ("Succeeded", ("Failed",))
_READY = ("Ready", ())
# batch/v1 Job (Kubernetes v1.32, pkg/controller/job): with JobManagedBy (beta, on by default
# since v1.32) or JobPodReplacementPolicy (since v1.29) the controller first adds the interim
# SuccessCriteriaMet / FailureTarget condition and adds Complete / Failed, with the same reason
# and message, once every pod has terminated. Success waits for Complete (the Job's pods are
# done); FailureTarget already means Failed (a podFailurePolicy FailJob rule, backoffLimit,
# activeDeadlineSeconds), so the wait ends there instead of waiting out the pods' termination.
_BATCH_JOB_DONE = ("Complete", ("Failed", "FailureTarget"))
WAIT_CONDITIONS = {
    "PyTorchJob": _JOB_DONE,
    "MPIJob": _JOB_DONE,
    "Job": _BATCH_JOB_DONE,
    "InferenceService": _READY,
}
# How a failure condition is named in the wait's error: the one the object will end with.
_REPORTED_AS = {"FailureTarget": "Failed"}


def failure_condition(obj: dict) -> tuple[str, dict] | None:
    """The first of the object's kind's failure conditions (``WAIT_CONDITIONS``) that is True, as
    (the condition it stands for, the condition), or None."""
    _done, failed = WAIT_CONDITIONS.get(obj.get("kind", ""), _READY)
    for bad in failed:
        cond = condition(obj, bad)
        if cond:
            return _REPORTED_AS.get(bad, bad), cond
    return None


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


def apps_v1_api():
    """An AppsV1Api (the predictor Deployment), configured like ``custom_objects_api``."""
    from kubernetes import client

    _load_config()
    return client.AppsV1Api()


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


def unschedulable_pods(namespace: str, selector: str, api=None) -> dict[str, str]:
    """The pods matching ``selector`` that the scheduler could not place: name -> its reason
    (the PodScheduled=False condition's message, e.g. "0/3 nodes are available: ...")."""
    api = api or core_v1_api()
    try:
        pods = api.list_namespaced_pod(namespace, label_selector=selector).items
    except _api_exception() as err:
        raise UserError(f"list pods {namespace} -l {selector}: HTTP {err.status}: {err.reason}") from err
    found = {}
    for pod in pods:
        for cond in (pod.status and pod.status.conditions) or []:
            if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
                found[pod.metadata.name] = cond.message or cond.reason
    return found


class UnschedulableWatch:
    """A ``wait`` check that ends the wait once some pod of the job has been unschedulable for
    ``grace`` seconds, with the scheduler's reason (a GPU request no node can meet, a quota, a
    node selector) instead of waiting out the whole timeout. The grace lets a cluster
    autoscaler add a node first."""

    def __init__(
        self, what: str, namespace: str, selector: str, grace: float, api=None, clock=time.monotonic
    ):
        self.what, self.namespace, self.selector, self.grace = what, namespace, selector, grace
        self.api, self.clock = api, clock
        self.since: dict[str, float] = {}

    def __call__(self, obj: dict | None) -> None:
        now = self.clock()
        stuck = unschedulable_pods(self.namespace, self.selector, api=self.api)
        self.since = {pod: self.since.get(pod, now) for pod in stuck}
        for pod, reason in sorted(stuck.items()):
            waited = now - self.since[pod]
            if waited >= self.grace:
                raise UserError(
                    f"{self.what}: pod {pod} unschedulable for {waited:.0f}s (grace {self.grace:g}s): {reason}"
                )


# Pod Security Admission's refusal, as the operators record it in a Warning event on the job
# (Training Operator v1.9.2: "launcher pod created failed: <the API error>" for an MPIJob's
# launcher, "Error creating: <the API error>" for replica pods).
_PSA_REFUSAL = re.compile(
    r'pods? "(?P<pod>[^"]+)" is forbidden: violates PodSecurity "(?P<level>[^"]+)": (?P<detail>.*)', re.S
)


def pod_security_refusal(kind: str, name: str, namespace: str, uid: str | None = None, api=None):
    """The newest Warning event on the job saying that Pod Security refused one of its pods, as
    (pod, level, what it violates), or None. ``uid``: only events of this object (a job deleted
    and created again under the same name leaves the old one's events behind)."""
    api = api or core_v1_api()
    selector = f"involvedObject.kind={kind},involvedObject.name={name},type=Warning"
    try:
        events = api.list_namespaced_event(namespace, field_selector=selector).items
    except _api_exception() as err:
        raise UserError(f"list events of {kind} {namespace}/{name}: HTTP {err.status}: {err.reason}") from err
    found = None
    for event in events:
        involved = event.involved_object
        if uid and involved is not None and involved.uid and involved.uid != uid:
            continue
        match = _PSA_REFUSAL.search(event.message or "")
        if match:
            found = (match["pod"], match["level"], " ".join(match["detail"].split()))
    return found


class PodSecurityWatch:
    """A ``wait`` check that ends the wait as soon as the job's controller reports that the
    namespace's Pod Security level refused one of its pods (the controller retries forever, so
    the job would otherwise wait out its whole timeout): one line with the namespace, the pod,
    what it violates and ``fix`` (``{namespace}`` is filled in)."""

    def __init__(self, kind: str, name: str, namespace: str, fix: str = "", api=None):
        self.kind, self.name, self.namespace, self.fix, self.api = kind, name, namespace, fix, api

    def __call__(self, obj: dict | None) -> None:
        uid = ((obj or {}).get("metadata") or {}).get("uid")
        refused = pod_security_refusal(self.kind, self.name, self.namespace, uid, api=self.api)
        if refused is None:
            return
        pod, level, detail = refused
        fix = f" Fix: {self.fix.format(namespace=self.namespace)}" if self.fix else ""
        raise UserError(
            f"{self.kind} {self.namespace}/{self.name}: namespace {self.namespace} enforces Pod Security "
            f'"{level}", which refuses pod {pod} ({detail}).{fix}'
        )


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


def patch(kind: str, name: str, namespace: str, body: dict, api=None) -> dict:
    """A JSON merge patch (a ``None`` value removes that field, e.g. ``{"spec": {"canary": None}}``)."""
    api = api or custom_objects_api()
    group, version, plural = _gvp(kind)
    try:
        return api.patch_namespaced_custom_object(group, version, namespace, plural, name, body)
    except _api_exception() as err:
        raise UserError(f"patch {kind} {namespace}/{name}: HTTP {err.status}: {err.reason}") from err


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


SOURCE_URI_ANNOTATION = "internal.serving.kserve.io/storage-initializer-sourceuri"
KNATIVE_SERVICE = ("serving.knative.dev", "v1", "services")


def generation_observed(obj: dict) -> bool:
    """``status.observedGeneration >= metadata.generation`` (an object without a generation, or
    whose controller never reports one, cannot be checked: False)."""
    gen = (obj.get("metadata") or {}).get("generation")
    seen = (obj.get("status") or {}).get("observedGeneration")
    return gen is not None and seen is not None and int(seen) >= int(gen)


def _template_source_uri(obj: dict) -> str | None:
    template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return (template.get("annotations") or {}).get(SOURCE_URI_ANNOTATION)


def predictor_rollout(isvc: dict, api=None, apps_api=None) -> str | None:
    """None when the InferenceService's predictor runs its current ``storageUri`` everywhere,
    else what is still missing (for the wait's timeout message)."""
    from .k8s import predictor_service

    meta = isvc["metadata"]
    predictor_name = ((isvc.get("spec") or {}).get("predictor") or {}).get("name")
    name, ns = predictor_service(meta["name"], predictor_name), meta["namespace"]
    uri = (((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}).get("storageUri")
    mode = (meta.get("annotations") or {}).get("serving.kserve.io/deploymentMode", "Standard")
    ApiException = _api_exception()
    if mode in ("Knative", "Serverless"):
        try:
            obj = (api or custom_objects_api()).get_namespaced_custom_object(
                *KNATIVE_SERVICE[:2], ns, KNATIVE_SERVICE[2], name
            )
        except ApiException as err:
            return f"Knative Service {ns}/{name}: HTTP {err.status}"
        where = f"Knative Service {ns}/{name}"
    else:
        try:
            obj = (apps_api or apps_v1_api()).read_namespaced_deployment(name, ns)
        except ApiException as err:
            return f"Deployment {ns}/{name}: HTTP {err.status}"
        if not isinstance(obj, dict):  # a V1Deployment: as the API's camelCase JSON
            from kubernetes.client import ApiClient

            obj = ApiClient().sanitize_for_serialization(obj)
        where = f"Deployment {ns}/{name}"
    if uri and _template_source_uri(obj) != uri:
        return f"{where} does not run storageUri {uri} yet (has {_template_source_uri(obj)})"
    if not generation_observed(obj):
        return f"{where}: observedGeneration < generation (its controller has not seen the change)"
    status = obj.get("status") or {}
    if mode in ("Knative", "Serverless"):
        if not condition(obj, "Ready"):
            return f"{where} not Ready"
        if status.get("latestReadyRevisionName") != status.get("latestCreatedRevisionName"):
            return f"{where}: revision {status.get('latestCreatedRevisionName')} not ready yet"
        return None
    want = ((obj.get("spec") or {}).get("replicas")) or 0
    updated, total = status.get("updatedReplicas") or 0, status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    if updated < want or total > updated or available < updated:
        return f"{where}: rollout {updated}/{want} updated, {available} available, {total - updated} old"
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
    apps_api=None,
    check: Callable[[dict | None], None] | None = None,
) -> dict:
    """Poll until a job Succeeded (a batch/v1 Job: Complete; UserError if it Failed) or an InferenceService is Ready and
    its predictor has rolled out the InferenceService's current ``storageUri`` (see the module
    docstring: KServe's Ready and observedGeneration alone cannot tell an old model from the new).
    ``check(obj)`` runs on every poll and may end the wait early by raising ``UserError``."""
    api = api or custom_objects_api()
    done, failed = WAIT_CONDITIONS[kind] if kind in WAIT_CONDITIONS else (_gvp(kind) and _READY)
    deadline = clock() + timeout
    while True:
        obj = get(kind, name, namespace, api=api)
        if check is not None:
            check(obj)
        pending = None
        if obj is not None:
            if condition(obj, done):
                if kind != "InferenceService":
                    return obj
                pending = predictor_rollout(obj, api=api, apps_api=apps_api)
                if pending is None:
                    return obj
            for bad in failed:
                cond = condition(obj, bad)
                if cond:
                    said = _REPORTED_AS.get(bad, bad)
                    raise UserError(
                        f"{kind} {namespace}/{name} {said}: {cond.get('reason', '')} {cond.get('message', '')}".strip()
                    )
        if clock() >= deadline:
            if pending:
                raise UserError(
                    f"{kind} {namespace}/{name}: {done} but not rolled out after {timeout:g}s ({pending})"
                )
            state = (
                "not found" if obj is None else f"conditions {(obj.get('status') or {}).get('conditions')}"
            )
            raise UserError(f"{kind} {namespace}/{name}: no {done} condition after {timeout:g}s ({state})")
        sleep(poll)
