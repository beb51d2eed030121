"""Horovod's cluster path against the real Training Operator (v1 MPIJob): the MPIJob that
``train_job_object(backend="horovod")`` builds, in a project rendered from the manifests with
``components/mpijob-baseline`` (overlays/kind moved into a namespace of its own), reconciled into a
launcher and workers, the launcher running as the ServiceAccount the operator makes for the job
with ``pods/exec`` on exactly those workers; fareflow's own ``run_train_job``, as the project's
pipeline-runner ServiceAccount, waiting it through to Succeeded (kwok ends the launcher) and to a
one-line failure; and, without the component (Pod Security "restricted"), the launcher's refusal
reported in one line, quickly, instead of a wait to the timeout."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from components.cluster import core, models, training
from components.common import k8s, k8s_api
from components.common.errors import UserError

from .conftest import MANIFESTS, Tier, project_namespace, wait_for

pytestmark = pytest.mark.k8s

SPLITS = "s3://mlpipeline/v2/artifacts/splits"


def versions() -> dict[str, str]:
    out = subprocess.run(
        ["bash", "-c", f"source {MANIFESTS / 'versions.env'} && echo $MPI_KUBECTL_DELIVERY_IMAGE $TRAINING_OPERATOR_VERSION"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return {"MPI_KUBECTL_DELIVERY_IMAGE": out[0], "TRAINING_OPERATOR_VERSION": out[1]}


@pytest.fixture
def horovod_project(tier: Tier, tmp_path: Path) -> Iterator[str]:
    """A project namespace as a Horovod user sets it up: overlays/kind + components/mpijob-baseline."""
    yield from project_namespace(tier, tmp_path, "t-hvd", ["mpijob-baseline"])


@pytest.fixture
def restricted_project(tier: Tier, tmp_path: Path) -> Iterator[str]:
    """A project namespace without the component: Pod Security "restricted", as base sets it."""
    yield from project_namespace(tier, tmp_path, "t-rst", [])


def horovod_job(settings: core.ClusterSettings, workers: int = 2) -> dict:
    name = f"hvd-{uuid.uuid4().hex[:8]}"
    params = training.TrainParams(epochs=1)
    return training.train_job_object(
        settings, name, SPLITS, models.model_output_uri(SPLITS, name), params, workers, backend="horovod"
    )


def play_launcher(obj: dict, exit_code: int, run_time: str = "2s") -> dict:
    """Have kwok end the launcher (mpirun) with ``exit_code``; the workers idle as they do."""
    meta = obj["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["metadata"]
    meta.setdefault("annotations", {}).update(
        {"kwok.fareflow.io/exit-code": str(exit_code), "kwok.fareflow.io/run-time": run_time}
    )
    return obj


def job_pods(tier: Tier, ns: str, name: str) -> dict[str, dict]:
    items = tier.get("pods", "-n", ns, "-l", f"{training.JOB_NAME_LABEL}={name}")["items"]
    return {p["metadata"]["name"]: p for p in items}


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_the_horovod_job_is_reconciled_into_a_launcher_and_workers_with_exec_rbac(
    tier: Tier, horovod_project: str
):
    ns = horovod_project
    labels = tier.get("namespace", ns)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert (
        labels["pod-security.kubernetes.io/warn"]
        == labels["pod-security.kubernetes.io/audit"]
        == "restricted"
    )
    settings = core.ClusterSettings.from_config_map(
        tier.get("configmap", "-n", ns, core.CONFIG_MAP)["data"], ns
    )
    job = horovod_job(settings, workers=2)  # no kwok annotation: the pods keep running
    name = job["metadata"]["name"]
    tier.apply([job])
    names = {f"{name}-launcher", f"{name}-worker-0", f"{name}-worker-1"}
    found = wait_for(
        lambda: (p := job_pods(tier, ns, name)) and names <= set(p) and p, 60, "launcher and worker pods"
    )

    launcher = found[f"{name}-launcher"]
    assert launcher["metadata"]["labels"][training.REPLICA_TYPE_LABEL] == "launcher"
    assert launcher["spec"]["serviceAccountName"] == f"{name}-launcher"
    assert launcher["spec"]["automountServiceAccountToken"] is True
    assert launcher["spec"]["restartPolicy"] == "Never"
    (init,) = launcher["spec"]["initContainers"]
    pins = versions()
    assert init["name"] == "kubectl-delivery" and init["image"] == pins["MPI_KUBECTL_DELIVERY_IMAGE"]
    (mpi,) = launcher["spec"]["containers"]
    assert mpi["command"][:2] == ["/bin/sh", "-c"]
    assert (
        f"wait --for=condition=Ready --timeout=900s pod/{name}-worker-0 pod/{name}-worker-1;"
        in mpi["command"][2]
    )
    assert mpi["args"][:3] == ["mpirun", "-np", "2"]
    train_args = mpi["args"][mpi["args"].index("components.train") + 1 :]
    assert train_args[train_args.index("--backend") + 1] == "horovod"
    assert train_args[:2] == ["--splits", SPLITS]
    got = env_of(mpi)  # what the operator adds for mpirun
    assert got["OMPI_MCA_plm_rsh_agent"] == "/etc/mpi/kubexec.sh"
    assert got["OMPI_MCA_orte_default_hostfile"] == "/etc/mpi/hostfile"
    assert "AWS_ENDPOINT_URL" not in got and "envFrom" not in mpi
    assert {"/opt/kube", "/etc/mpi", "/tmp"} <= {m["mountPath"] for m in mpi["volumeMounts"]}

    for worker in (f"{name}-worker-0", f"{name}-worker-1"):
        spec = found[worker]["spec"]
        assert spec["serviceAccountName"] == k8s.TRAINER_SERVICE_ACCOUNT
        assert spec["automountServiceAccountToken"] is False
        (c,) = spec["containers"]
        # orted runs in this container (kubectl exec), so the ranks see its env and Secret.
        assert c["envFrom"] == [{"secretRef": {"name": core.S3_SECRET, "optional": True}}]
        assert env_of(c)["AWS_ENDPOINT_URL"] == "http://seaweedfs.kubeflow:9000"
        assert env_of(c)["AWS_DEFAULT_REGION"] == "us-east-1"
        assert "/etc/mpi" in {m["mountPath"] for m in c["volumeMounts"]}  # kubexec.sh, as Open MPI expects
        assert c["securityContext"]["allowPrivilegeEscalation"] is False  # still restricted-grade
    config = tier.get("configmap", "-n", ns, f"{name}-config")["data"]
    assert config["hostfile"] == f"{name}-worker-0 slots=1\n{name}-worker-1 slots=1\n"
    assert config["kubexec.sh"].endswith('/opt/kube/kubectl exec ${POD_NAME} -- /bin/sh -c "$*"')

    launcher_sa = f"{ns}:{name}-launcher"
    for worker in (f"{name}-worker-0", f"{name}-worker-1"):
        assert tier.can_i(launcher_sa, "create", "pods/exec", ns, name=worker)
    assert not tier.can_i(launcher_sa, "create", "pods/exec", ns, name=f"{name}-launcher"), "only its workers"
    assert not tier.can_i(launcher_sa, "create", "pods/exec", ns, name="some-other-pod")
    assert tier.can_i(launcher_sa, "watch", "pods", ns)  # the launcher's wait for its workers
    assert not tier.can_i(launcher_sa, "get", "secrets", ns)
    for sa in (k8s.TRAINER_SERVICE_ACCOUNT, k8s.RUNNER_SERVICE_ACCOUNT):
        assert not tier.can_i(f"{ns}:{sa}", "create", "pods/exec", ns, name=f"{name}-worker-0"), sa


def test_the_operators_kubectl_delivery_pin_is_its_releases_own_tag():
    """versions.env pins the kubectl-delivery tag CI published with the operator image of the
    pinned release (the module's standalone overlay names that image's tag)."""
    pins = versions()
    gomodcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True).stdout.strip()
    overlay = Path(gomodcache) / f"github.com/kubeflow/training-operator@{pins['TRAINING_OPERATOR_VERSION']}" / "manifests/overlays/standalone/kustomization.yaml"  # fmt: skip
    if not overlay.is_file():
        pytest.skip(f"{overlay} not in the module cache")
    (image,) = yaml.safe_load(overlay.read_text())["images"]
    assert pins["MPI_KUBECTL_DELIVERY_IMAGE"].split(":")[1] == image["newTag"]


def test_run_train_job_waits_a_horovod_job_through_to_succeeded_as_the_pipeline_runner(
    tier: Tier, horovod_project: str, as_runner
):
    ns = horovod_project
    as_runner(ns)
    settings = core.load_settings(ns)  # the runner reads its ConfigMap
    obj = play_launcher(horovod_job(settings, workers=2), exit_code=0)
    name = obj["metadata"]["name"]
    done = training.run_train_job(obj, timeout=120, poll=0.5)
    assert done["kind"] == "MPIJob" and k8s_api.condition(done, "Succeeded")
    assert done["status"]["replicaStatuses"]["Launcher"]["succeeded"] == 1
    # cleanPodPolicy Running: the idle workers go once the launcher has finished.
    wait_for(lambda: set(job_pods(tier, ns, name)) == {f"{name}-launcher"}, 90, "workers cleaned up")
    again = training.run_train_job(obj, timeout=5, poll=0.5)
    assert again["metadata"]["uid"] == done["metadata"]["uid"], "a succeeded job is reused"


def test_a_failing_launcher_is_reported_then_the_job_is_replaced(tier: Tier, horovod_project: str, as_runner):
    ns = horovod_project
    as_runner(ns)
    settings = core.load_settings(ns)
    failing = play_launcher(horovod_job(settings, workers=2), exit_code=1)
    name = failing["metadata"]["name"]
    with pytest.raises(UserError) as err:
        training.run_train_job(failing, timeout=120, poll=0.5)
    first, *rest = str(err.value).splitlines()
    # The operator's condition (v1.9.2 UpdateJobStatus; its reason really is "MPIJobMPIJobFailed").
    assert (
        first.startswith(f"MPIJob {ns}/{name} Failed: ") and "because 1 Launcher replica(s) failed" in first
    )
    # Then the launcher's log lines (kwok serves none: the reason why, in one line), never the workers'.
    assert len(rest) == 1 and f"{name}-worker" not in rest[0], rest
    failed_uid = tier.get("mpijob", "-n", ns, name)["metadata"]["uid"]

    fixed = play_launcher(horovod_job(settings, workers=2), exit_code=0)
    fixed["metadata"]["name"] = name
    fixed["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0] = failing["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]  # fmt: skip
    done = training.run_train_job(fixed, timeout=180, poll=0.5)
    assert done["metadata"]["uid"] != failed_uid and k8s_api.condition(done, "Succeeded")


def test_under_restricted_the_launchers_refusal_is_one_line_naming_the_namespace_and_the_fix(
    tier: Tier, restricted_project: str, as_runner
):
    """v1 MPIJob cannot give the operator's kubectl-delivery init container a security context,
    so "restricted" refuses the launcher; the operator retries forever. fareflow's wait reads the
    operator's event and stops at once instead of waiting out its timeout."""
    ns = restricted_project
    assert (
        tier.get("namespace", ns)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    )
    runner = as_runner(ns)
    assert tier.can_i(runner, "list", "events", ns)
    settings = core.load_settings(ns)
    obj = horovod_job(settings, workers=1)
    name = obj["metadata"]["name"]
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        training.run_train_job(obj, timeout=600, poll=0.5)
    elapsed = time.monotonic() - start
    message = str(err.value)
    assert elapsed < 60, f"took {elapsed:.0f}s"
    assert "\n" not in message, message
    assert message.startswith(f'MPIJob {ns}/{name}: namespace {ns} enforces Pod Security "restricted')
    assert f"refuses pod {name}-launcher" in message and 'container "kubectl-delivery"' in message
    assert "manifests/components/mpijob-baseline" in message
    assert f"kubectl label namespace {ns} pod-security.kubernetes.io/enforce=baseline --overwrite" in message
    assert not tier.kubectl("get", "pod", "-n", ns, f"{name}-launcher", check=False)
