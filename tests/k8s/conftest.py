"""Fixtures of the k8s tier: a real API server (and controllers, kwok nodes, the Training
Operator) started by ``make k8s-up``. Every test module here sets ``pytestmark = pytest.mark.k8s``;
the tests are skipped with one line when the tier is not up, so ``make test`` never needs it and ``make k8s-test`` runs it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from components.common import k8s

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
# KServe's kinds are not in the tier (tests/k8s/test_manifests.py NOT_IN_TIER).
NOT_IN_TIER = {"ServingRuntime", "InferenceService"}
DEFAULT_KUBECONFIG = REPO / ".cache" / "k8s-tier" / "run" / "admin.kubeconfig"


class KubectlError(RuntimeError):
    def __init__(self, args: list[str], proc: subprocess.CompletedProcess):
        self.stderr = proc.stderr
        self.returncode = proc.returncode
        super().__init__(f"kubectl {' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")


@dataclass(frozen=True)
class Tier:
    kubeconfig: str

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        """Run kubectl against the tier; stdout, or KubectlError with its stderr."""
        cmd = ["kubectl", "--kubeconfig", self.kubeconfig, *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise KubectlError(list(args), proc)
        return proc.stdout

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def apply(self, objs: list[dict] | str, *extra: str) -> str:
        text = objs if isinstance(objs, str) else yaml.safe_dump_all(objs)
        return self.kubectl(
            "apply", "--server-side", "--field-manager", "fareflow-k8s-test", "-f", "-", *extra, input=text
        )

    def can_i(
        self, sa: str, verb: str, resource: str, namespace: str | None = None, name: str | None = None
    ) -> bool:
        """What the authorizer answers for ServiceAccount ``NS:NAME`` (a SubjectAccessReview, so
        kinds whose CRD is not installed are asked about too). ``resource`` is kubectl's form:
        ``plural[.group]``, ``plural/subresource`` or ``plural/name`` for ``get``-by-name checks;
        ``name`` names the object of a subresource check (``pods/exec`` into one pod)."""
        ns_of_sa, sa_name = sa.split(":")
        plural, _, rest = resource.partition("/")
        plural, _, group = plural.partition(".")
        attrs = {"verb": verb, "resource": plural, "group": group}
        if rest:
            attrs["subresource" if rest in SUBRESOURCES else "name"] = rest
        if namespace:
            attrs["namespace"] = namespace
        if name:
            attrs["name"] = name
        review = {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{ns_of_sa}:{sa_name}",
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns_of_sa}", "system:authenticated"],
                "resourceAttributes": attrs,
            },
        }  # fmt: skip
        out = self.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(review))
        return bool(json.loads(out)["status"].get("allowed"))


SUBRESOURCES = {
    "log",
    "exec",
    "status",
    "attach",
    "portforward",
    "proxy",
    "scale",
    "binding",
    "eviction",
    "token",
}


def _tier_or_reason() -> Tier | str:
    kubeconfig = os.environ.get("K8S_TIER_KUBECONFIG") or str(DEFAULT_KUBECONFIG)
    if not Path(kubeconfig).is_file():
        return f"k8s tier not up: no kubeconfig at {kubeconfig} (make k8s-up)"
    try:
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "get", "--raw", "/readyz"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"k8s tier not reachable through {kubeconfig}: {err}"
    if proc.returncode != 0:
        return f"k8s tier not ready through {kubeconfig}: {proc.stderr.strip().splitlines()[-1:]}"
    return Tier(kubeconfig)


@pytest.fixture(scope="session")
def tier() -> Tier:
    """The running tier; a one-line skip when it is not up, or a failure with
    K8S_TIER_REQUIRED=1 (CI: a tier that did not come up must not pass as skipped tests)."""
    found = _tier_or_reason()
    if isinstance(found, str):
        if os.environ.get("K8S_TIER_REQUIRED") == "1":
            pytest.fail(found)
        pytest.skip(found)
    return found


def use_kubeconfig(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Make components.common.k8s_api load ``path``: the kubernetes client reads $KUBECONFIG once,
    when kubernetes.config is first imported, so its default location is set too (restored after
    the test, like the environment)."""
    from kubernetes.config import kube_config

    monkeypatch.setenv("KUBECONFIG", path)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", path)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.fixture
def kube_env(tier: Tier, monkeypatch: pytest.MonkeyPatch) -> Tier:
    """The tier as the process's kubeconfig, so components.common.k8s_api talks to it."""
    use_kubeconfig(monkeypatch, tier.kubeconfig)
    return tier


@pytest.fixture
def namespace(tier: Tier) -> Iterator[str]:
    """A fresh namespace for one test (Pod Security restricted), deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    tier.apply(
        [{
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
        }]
    )  # fmt: skip
    wait_for(lambda: _has_default_sa(tier, name), 60, f"default ServiceAccount in {name}")
    yield name
    tier.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _has_default_sa(tier: Tier, ns: str) -> bool:
    return tier.kubectl("-n", ns, "get", "serviceaccount", "default", check=False) != ""


def wait_for(check: Callable[[], object], timeout: float, what: str, poll: float = 0.25):
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not after {timeout:g}s")
        time.sleep(poll)


def render_project(tmp: Path, namespace: str, components: list[str]) -> list[dict]:
    """overlays/kind in ``namespace`` (as overlays/team-b moves it) with ``components``."""
    (tmp / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": namespace,
                "resources": [os.path.relpath(MANIFESTS / "overlays/kind", tmp)],
                "transformers": [os.path.relpath(MANIFESTS / "base/follow-namespace", tmp)],
                "components": [os.path.relpath(MANIFESTS / "components" / c, tmp) for c in components],
            }
        )
    )
    out = subprocess.run(
        ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(tmp)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(out) if d and d["kind"] not in NOT_IN_TIER]


def project_namespace(
    tier: Tier, tmp: Path, prefix: str, components: list[str], runner_may: str = "mpijobs.kubeflow.org"
) -> Iterator[str]:
    """A project rendered from the manifests (``render_project``) into a fresh namespace, applied
    server-side; deleted afterwards. Ready once the authorizer lets the runner create ``runner_may``."""
    ns = f"{prefix}-{uuid.uuid4().hex[:8]}"
    docs = render_project(tmp, ns, components)
    tier.apply(docs)
    wait_for(
        lambda: tier.kubectl("-n", ns, "get", "serviceaccount", "default", check=False),
        60,
        f"default SA in {ns}",
    )
    # The authorizer learns new Roles and RoleBindings from its informers: wait until it does.
    runner = f"{ns}:{k8s.RUNNER_SERVICE_ACCOUNT}"
    wait_for(lambda: tier.can_i(runner, "create", runner_may, ns), 60, f"the runner's Role in {ns}")
    yield ns
    tier.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture
def as_runner(tier: Tier, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Make components.common.k8s_api talk to the tier as NS's fareflow-pipeline-runner
    ServiceAccount (a token from the TokenRequest API), so its Role is what the code gets."""

    def become(ns: str) -> str:
        admin = yaml.safe_load(Path(tier.kubeconfig).read_text())
        cluster = admin["clusters"][0]["cluster"]
        token = tier.kubectl(
            "-n", ns, "create", "token", k8s.RUNNER_SERVICE_ACCOUNT, "--duration", "1h"
        ).strip()
        if "certificate-authority" in cluster:
            ca = base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
            cluster = {"server": cluster["server"], "certificate-authority-data": ca}
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "runner",
            "clusters": [{"name": "tier", "cluster": cluster}],
            "users": [{"name": "runner", "user": {"token": token}}],
            "contexts": [{"name": "runner", "context": {"cluster": "tier", "user": "runner", "namespace": ns}}],
        }  # fmt: skip
        path = tmp_path / f"runner-{ns}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        use_kubeconfig(monkeypatch, str(path))
        return f"{ns}:{k8s.RUNNER_SERVICE_ACCOUNT}"

    return become
