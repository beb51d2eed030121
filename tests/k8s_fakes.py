"""In-memory stand-ins for the kubernetes client APIs that components.common.k8s_api calls."""

from types import SimpleNamespace

from kubernetes.client.exceptions import ApiException


class FakeCustomObjects:
    """In-memory stand-in for kubernetes.client.CustomObjectsApi."""

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
        self.store[key] = body
        return body

    def patch_namespaced_custom_object(self, group, version, ns, plural, name, body):
        self.calls.append("patch")
        self.store[self._key(group, version, ns, plural, name)] = body
        return body

    def get_namespaced_custom_object(self, group, version, ns, plural, name):
        key = self._key(group, version, ns, plural, name)
        if key not in self.store:
            raise ApiException(status=404, reason="NotFound")
        obj = dict(self.store[key])
        if self.status_script:
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
        return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name=n)) for n in self.logs])

    def read_namespaced_pod_log(self, name, namespace, tail_lines=None, _preload_content=True):
        return "\n".join(self.logs[name].splitlines()[-tail_lines:])
