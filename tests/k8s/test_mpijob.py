"""The MPIJob builder's object against the real Training Operator (v1 MPIJob): reconciled into a
launcher and workers, the launcher running as the ServiceAccount the operator makes for the job
with ``pods/exec`` on exactly those workers; and what Pod Security "restricted" does to it."""

from __future__ import annotations

import uuid

import pytest

from components.common import k8s

from .conftest import Tier, wait_for

pytestmark = pytest.mark.k8s


@pytest.fixture
def baseline_namespace(tier: Tier):
    name = f"t-mpi-{uuid.uuid4().hex[:8]}"
    tier.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}])  # fmt: skip
    tier.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": k8s.TRAINER_SERVICE_ACCOUNT, "namespace": name}}])  # fmt: skip
    yield name
    tier.kubectl("delete", "namespace", name, "--wait=false", check=False)


def mpi_job(ns: str, workers: int = 2) -> dict:
    return k8s.mpi_job(f"hvd-{uuid.uuid4().hex[:8]}", "ghcr.io/fareflow/trainer:0.1.0", "components.train", ["--epochs", "1"], namespace=ns, workers=workers)  # fmt: skip


def test_mpijob_is_reconciled_into_launcher_and_workers_with_exec_rbac(tier: Tier, baseline_namespace: str):
    ns = baseline_namespace
    job = mpi_job(ns, workers=2)
    name = job["metadata"]["name"]
    tier.apply([job])
    names = {f"{name}-launcher", f"{name}-worker-0", f"{name}-worker-1"}

    def all_pods():
        found = {i["metadata"]["name"]: i for i in tier.get("pods", "-n", ns)["items"]}
        return found if names <= set(found) else None

    found = wait_for(all_pods, 60, "launcher and worker pods")
    launcher = found[f"{name}-launcher"]
    assert launcher["spec"]["serviceAccountName"] == f"{name}-launcher"
    assert launcher["spec"]["containers"][0]["command"][:3] == ["horovodrun", "-np", "2"]
    assert [c["name"] for c in launcher["spec"]["initContainers"]] == ["kubectl-delivery"]
    assert found[f"{name}-worker-0"]["spec"]["serviceAccountName"] == k8s.TRAINER_SERVICE_ACCOUNT
    hostfile = tier.get("configmap", "-n", ns, f"{name}-config")["data"]["hostfile"]
    assert f"{name}-worker-0" in hostfile and f"{name}-worker-1" in hostfile

    launcher_sa = f"{ns}:{name}-launcher"
    for worker in (f"{name}-worker-0", f"{name}-worker-1"):
        assert _exec_allowed(tier, launcher_sa, ns, worker)
    assert not _exec_allowed(tier, launcher_sa, ns, f"{name}-launcher"), "exec only into this job's workers"
    assert not _exec_allowed(tier, f"{ns}:{k8s.TRAINER_SERVICE_ACCOUNT}", ns, f"{name}-worker-0")
    assert not tier.can_i(launcher_sa, "get", "secrets", ns)


def _exec_allowed(tier: Tier, sa: str, ns: str, pod: str) -> bool:
    return tier.can_i(sa, "create", "pods/exec", ns, name=pod)


def test_restricted_pod_security_refuses_the_v1_launcher(tier: Tier, namespace: str):
    """The operator's kubectl-delivery init container has no security context, and v1 MPIJob has
    no setting for one: under "restricted" the launcher is refused (so MPIJobs need a baseline
    namespace), and the refusal is visible as an event on the MPIJob, not silence."""
    tier.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": k8s.TRAINER_SERVICE_ACCOUNT, "namespace": namespace}}])  # fmt: skip
    job = mpi_job(namespace, workers=1)
    name = job["metadata"]["name"]
    tier.apply([job])
    event = wait_for(
        lambda: next((e for e in tier.get("events", "-n", namespace)["items"]
                      if e["involvedObject"]["name"] == name and "violates PodSecurity" in e.get("message", "")), None),
        60, "PodSecurity refusal event on the MPIJob",
    )  # fmt: skip
    assert "kubectl-delivery" in event["message"]
    assert not tier.kubectl("get", "pod", "-n", namespace, f"{name}-launcher", check=False)
