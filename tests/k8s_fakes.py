"""In-memory stand-ins for the kubernetes client APIs that components.common.k8s_api calls."""

from types import SimpleNamespace

from kubernetes.client.exceptions import ApiException

# The kinds fareflow creates; status_script plays their status (other objects, e.g. a Knative
# Service behind a predictor, keep the status stored with them).
SCRIPTED_PLURALS = {"pytorchjobs", "mpijobs", "inferenceservices"}


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class FakeCustomObjects:
    """In-memory stand-in for kubernetes.client.CustomObjectsApi. Like the API server, it sets
    metadata.generation to 1 on create and increments it on every patch."""

    def __init__(self):
        self.store: dict[tuple, dict] = {}
        self.calls: list[str] = []
        self.status_script: list[dict] = []

    def _key(self, group, version, ns, plural, name):
        return (group, version, ns, plural, name)

    def create_namespaced_custom_object(self, group, version, ns, plural, body):
        self.calls.append("create")
        key = self._key(group, version, ns, plural, body["metadata"]["name"])
        if key in self.store:
            raise ApiException(status=409, reason="AlreadyExists")
        self.store[key] = {**body, "metadata": {**body["metadata"], "generation": 1}}
        return self.store[key]

    def patch_namespaced_custom_object(self, group, version, ns, plural, name, body):
        """A JSON merge patch (RFC 7386), as the client sends a dict body: objects merge, a
        ``None`` removes the field, anything else (lists too) replaces it."""
        self.calls.append("patch")
        key = self._key(group, version, ns, plural, name)
        if key not in self.store:
            raise ApiException(status=404, reason="NotFound")
        merged = merge_patch(self.store[key], body)
        merged["metadata"]["generation"] = (self.store[key]["metadata"].get("generation") or 0) + 1
        self.store[key] = merged
        return merged

    def get_namespaced_custom_object(self, group, version, ns, plural, name):
        key = self._key(group, version, ns, plural, name)
        if key not in self.store:
            raise ApiException(status=404, reason="NotFound")
        obj = dict(self.store[key])
        if self.status_script and plural in SCRIPTED_PLURALS:
            obj["status"] = self.status_script.pop(0)
        return obj

    def delete_namespaced_custom_object(self, group, version, ns, plural, name, body=None):
        key = self._key(group, version, ns, plural, name)
        if key not in self.store:
            raise ApiException(status=404, reason="NotFound")
        del self.store[key]


class FakeCoreV1:
    """In-memory stand-in for the parts of kubernetes.client.CoreV1Api fareflow uses."""

    def __init__(self, config_maps: dict | None = None, pod_logs: dict | None = None):
        self.config_maps = config_maps or {}  # (namespace, name) -> data
        self.logs = pod_logs or {}  # pod name -> text (every pod matches every selector)

    def read_namespaced_config_map(self, name, namespace):
        if (namespace, name) not in self.config_maps:
            raise ApiException(status=404, reason="NotFound")
        return SimpleNamespace(data=self.config_maps[(namespace, name)])

    def list_namespaced_pod(self, namespace, label_selector=None):
        return SimpleNamespace(
            items=[
                SimpleNamespace(metadata=SimpleNamespace(name=n), status=SimpleNamespace(conditions=[]))
                for n in self.logs
            ]
        )

    def read_namespaced_pod_log(self, name, namespace, tail_lines=None, _preload_content=True):
        return "\n".join(self.logs[name].splitlines()[-tail_lines:])


def deployment(
    name: str,
    storage_uri: str | None,
    *,
    generation=1,
    observed=1,
    replicas=1,
    updated=None,
    total=None,
    available=None,
    namespace="fareflow",
) -> dict:
    """A predictor Deployment as the API returns it (camelCase JSON)."""
    annotations = (
        {"internal.serving.kserve.io/storage-initializer-sourceuri": storage_uri} if storage_uri else {}
    )
    updated = replicas if updated is None else updated
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": {"replicas": replicas, "template": {"metadata": {"annotations": annotations}}},
        "status": {
            "observedGeneration": observed,
            "replicas": updated if total is None else total,
            "updatedReplicas": updated,
            "availableReplicas": updated if available is None else available,
        },
    }


class FakeAppsV1:
    """In-memory stand-in for kubernetes.client.AppsV1Api.read_namespaced_deployment. ``script``:
    successive states of one Deployment, one per read (the last one stays)."""

    def __init__(self, deployments: dict | None = None, script: list[dict] | None = None):
        self.deployments = deployments or {}  # (namespace, name) -> dict
        self.script = list(script or [])
        self.reads = 0

    def read_namespaced_deployment(self, name, namespace):
        self.reads += 1
        if self.script:
            state = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            self.deployments[(namespace, name)] = state
        if (namespace, name) not in self.deployments:
            raise ApiException(status=404, reason="NotFound")
        return self.deployments[(namespace, name)]
