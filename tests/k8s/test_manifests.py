"""The rendered overlays against a real API server: applied server-side, idempotent, stored as
rendered; Pod Security, RBAC and quota as the manifests set them, enforced by the real
admission chain and authorizer."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from components.common import k8s

from .conftest import REPO, KubectlError, Tier, wait_for

pytestmark = pytest.mark.k8s

# KServe's Go module is refused by the module proxy (403), so the tier has no KServe CRDs: its
# objects are left out, by kind, and a test keeps that list to exactly KServe's kinds.
NOT_IN_TIER = {("serving.kserve.io", "ServingRuntime"), ("serving.kserve.io", "InferenceService")}
PROJECTS = {"overlays/kind": "fareflow", "overlays/team-b": "team-b"}


def render(overlay: str) -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "manifests" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def in_tier(docs: list[dict]) -> list[dict]:
    return [d for d in docs if (d["apiVersion"].split("/")[0], d["kind"]) not in NOT_IN_TIER]


def ref(doc: dict) -> list[str]:
    ns = doc["metadata"].get("namespace")
    return [f"{doc['kind']}.{doc['apiVersion'].split('/')[0] if '/' in doc['apiVersion'] else ''}".rstrip("."), doc["metadata"]["name"], *(["-n", ns] if ns else [])]  # fmt: skip


def stored(tier: Tier, doc: dict) -> dict:
    return tier.get(*ref(doc))


def missing(rendered, live, path="") -> list[str]:
    """Paths of ``rendered`` that ``live`` lacks or holds with another value."""
    if isinstance(rendered, dict):
        if not isinstance(live, dict):
            return [path or "/"]
        return [m for k, v in rendered.items() for m in missing(v, live.get(k, _ABSENT), f"{path}/{k}")]
    if isinstance(rendered, list):
        if not isinstance(live, list) or len(live) != len(rendered):
            return [path]
        return [
            m
            for i, (r, v) in enumerate(zip(rendered, live, strict=True))
            for m in missing(r, v, f"{path}/{i}")
        ]
    return [] if _same(rendered, live) else [f"{path}: {rendered!r} != {live!r}"]


_ABSENT = object()


def _same(a, b) -> bool:
    return a == b or (b is not _ABSENT and str(a) == str(b))


@pytest.fixture(scope="module")
def projects(tier: Tier):
    """overlays/kind and overlays/team-b (two projects) applied server-side; removed afterwards."""
    applied = {}
    for overlay in PROJECTS:
        docs = render(overlay)
        tier.apply(in_tier(docs))
        applied[overlay] = docs
    yield applied
    for docs in applied.values():
        tier.kubectl("delete", "-f", "-", "--wait=true", "--timeout=120s", "--ignore-not-found", input=yaml.safe_dump_all(in_tier(docs)), check=False)  # fmt: skip


def test_only_kserves_kinds_are_left_out_of_the_tier(projects):
    for docs in projects.values():
        left_out = {(d["apiVersion"].split("/")[0], d["kind"]) for d in docs} - {(d["apiVersion"].split("/")[0], d["kind"]) for d in in_tier(docs)}  # fmt: skip
        assert left_out <= NOT_IN_TIER
        assert all(group == "serving.kserve.io" for group, _ in left_out)


@pytest.mark.parametrize("overlay", sorted(PROJECTS))
def test_every_object_is_stored_as_rendered(tier: Tier, projects, overlay):
    for doc in in_tier(projects[overlay]):
        live = stored(tier, doc)
        body = {k: v for k, v in doc.items() if k != "status"}
        diff = missing(body, live)
        assert diff == [], (
            f"{doc['kind']}/{doc['metadata']['name']}: the API server dropped or changed {diff}"
        )


@pytest.mark.parametrize("overlay", sorted(PROJECTS))
def test_a_second_apply_changes_nothing(tier: Tier, projects, overlay):
    docs = in_tier(projects[overlay])
    before = {tuple(ref(d)): stored(tier, d)["metadata"]["resourceVersion"] for d in docs}
    tier.apply(docs)
    after = {tuple(ref(d)): stored(tier, d)["metadata"]["resourceVersion"] for d in docs}
    assert after == before


def test_gpu_cluster_overlay_is_admitted_by_the_server(tier: Tier):
    """Its namespace is the kind overlay's, so it is checked by a server-side dry run (schema,
    defaulting, admission) instead of being applied beside it."""
    docs = in_tier(render("overlays/gpu-cluster"))
    ns = [d for d in docs if d["kind"] == "Namespace"]
    rest = [d for d in docs if d["kind"] != "Namespace"]
    tier.apply(ns, "--dry-run=server", "--force-conflicts")
    if not tier.kubectl("get", "namespace", ns[0]["metadata"]["name"], check=False):
        pytest.skip(
            "namespaced dry run needs the namespace to exist (it does while the projects fixture runs)"
        )
    tier.apply(rest, "--dry-run=server", "--force-conflicts")


# --- Pod Security ---------------------------------------------------------------------------


@pytest.mark.parametrize("ns", sorted(PROJECTS.values()))
def test_project_namespaces_enforce_restricted(tier: Tier, projects, ns):
    labels = tier.get("namespace", ns)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def _pod(ns: str, spec: dict, name: str = "probe") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": spec}


@pytest.mark.parametrize("ns", sorted(PROJECTS.values()))
def test_a_pod_that_breaks_restricted_is_refused(tier: Tier, projects, ns):
    bad = _pod(
        ns, {"containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": True}}]}
    )
    with pytest.raises(KubectlError) as err:
        tier.apply([bad], "--dry-run=server")
    assert 'violates PodSecurity "restricted:latest"' in err.value.stderr
    assert "privileged" in err.value.stderr


def test_every_pod_template_fareflow_builds_is_admitted_under_restricted(tier: Tier, namespace: str):
    """Pod Security alone (a restricted namespace without the project's GPU quota of 0)."""
    from components.cluster import core, serving, training

    ns = namespace
    tier.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": n, "namespace": ns}} for n in (k8s.TRAINER_SERVICE_ACCOUNT, k8s.SERVING_SERVICE_ACCOUNT)])  # fmt: skip
    settings = core.ClusterSettings(namespace=ns)
    gpu = core.ClusterSettings(
        namespace=ns, train_gpus_per_pod=1, gpu_node_selector={"fareflow.io/pool": "gpu"}
    )
    templates = {}
    for label, s in (("cpu", settings), ("gpu", gpu)):
        job = training.train_job_object(
            s, f"probe-{label}", "s3://b/splits", "s3://b/models/x", training.TrainParams(), 2
        )
        for rtype, spec in job["spec"]["pytorchReplicaSpecs"].items():
            templates[f"pytorchjob-{label}-{rtype.lower()}"] = spec["template"]["spec"]
        # Horovod's MPIJob: both templates as fareflow builds them meet restricted; only the
        # operator's kubectl-delivery init container on the launcher does not (test_mpijob.py).
        mpi = training.train_job_object(
            s,
            f"probe-{label}",
            "s3://b/splits",
            "s3://b/models/x",
            training.TrainParams(),
            2,
            backend="horovod",
        )
        for rtype, spec in mpi["spec"]["mpiReplicaSpecs"].items():
            pod = dict(spec["template"]["spec"])
            pod.setdefault("serviceAccountName", "default")  # the operator's NAME-launcher
            templates[f"mpijob-{label}-{rtype.lower()}"] = pod
    isvc = serving.inference_service_object(settings, "probe", "s3://b/models/x/")
    predictor = {k: v for k, v in isvc["spec"]["predictor"].items() if k not in ("model", "minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "canaryTrafficPercent")}  # fmt: skip
    assert "securityContext" in predictor, "the predictor's pod-level settings are fareflow's"
    # The predictor pod as KServe makes it: fareflow's predictor spec, its model container, and
    # the storage initializer with the ClusterStorageContainer patch install-platform.sh applies.
    patch = yaml.safe_load(
        (REPO / "manifests" / "platform" / "kserve-storage-initializer-patch.yaml").read_text()
    )
    initializer = {"image": "kserve/storage-initializer:v0.21.0", "args": ["s3://b/models/x/", "/mnt/models"], **patch["spec"]["container"]}  # fmt: skip
    templates["predictor"] = {**predictor, "initContainers": [initializer], "containers": [{"name": "kserve-container", "image": settings.image("server"), **_model_container(isvc)}]}  # fmt: skip
    for name, spec in templates.items():
        tier.apply([_pod(ns, spec, name)], "--dry-run=server")


def _model_container(isvc: dict) -> dict:
    model = isvc["spec"]["predictor"]["model"]
    return {k: v for k, v in model.items() if k in ("securityContext", "resources", "env", "args")}


# --- RBAC -------------------------------------------------------------------------------------


def sa(ns: str, name: str) -> str:
    return f"{ns}:{name}"


@pytest.mark.parametrize("ns", sorted(PROJECTS.values()))
def test_pipeline_runner_can_drive_jobs_and_serving_in_its_project_only(tier: Tier, projects, ns):
    other = next(n for n in PROJECTS.values() if n != ns)
    runner = sa(ns, k8s.RUNNER_SERVICE_ACCOUNT)
    kfp_runner = "kubeflow:pipeline-runner"  # KFP standalone's pipeline pods
    for who in (runner, kfp_runner):
        for verb, resource in (
            ("create", "pytorchjobs.kubeflow.org"), ("delete", "pytorchjobs.kubeflow.org"), ("watch", "pytorchjobs.kubeflow.org"),
            ("create", "mpijobs.kubeflow.org"), ("create", "inferenceservices.serving.kserve.io"),
            ("patch", "inferenceservices.serving.kserve.io"), ("get", "pods/log"), ("list", "pods"),
            ("get", "deployments.apps"), ("get", "configmaps/fareflow-cluster"),
            ("delete", "mpijobs.kubeflow.org"), ("watch", "mpijobs.kubeflow.org"),
            ("list", "events"),  # the operators' events on a job: a Pod Security refusal ends the wait
            ("create", "jobs.batch"), ("watch", "jobs.batch"), ("delete", "jobs.batch"),  # tune workers
        ):  # fmt: skip
            assert tier.can_i(who, verb, resource, ns), f"{who} cannot {verb} {resource} in {ns}"
    for verb, resource, where in (
        ("create", "pytorchjobs.kubeflow.org", other), ("create", "jobs.batch", other),  # another project
        ("get", "secrets", ns), ("list", "secrets", ns), ("get", "secrets", "kubeflow"),
        ("create", "pods", ns), ("create", "pods/exec", ns), ("delete", "namespaces", None),
        ("create", "clusterroles.rbac.authorization.k8s.io", None), ("create", "rolebindings.rbac.authorization.k8s.io", ns),
        ("get", "configmaps/other", ns), ("patch", "nodes", None),
    ):  # fmt: skip
        assert not tier.can_i(runner, verb, resource, where), f"{runner} may {verb} {resource} in {where}"


@pytest.mark.parametrize("name", [k8s.TRAINER_SERVICE_ACCOUNT, k8s.SERVING_SERVICE_ACCOUNT])
def test_workload_service_accounts_have_no_api_access(tier: Tier, projects, name):
    ns = PROJECTS["overlays/kind"]
    for verb, resource in (("get", "secrets"), ("list", "pods"), ("create", "pods/exec"), ("get", "configmaps"),
                           ("create", "pytorchjobs.kubeflow.org"), ("get", "inferenceservices.serving.kserve.io"),
                           ("create", "jobs.batch")):  # fmt: skip
        assert not tier.can_i(sa(ns, name), verb, resource, ns), f"{name} may {verb} {resource}"


# --- ResourceQuota ----------------------------------------------------------------------------


def test_a_gpu_request_over_the_projects_quota_is_refused_with_the_quotas_message(tier: Tier, projects):
    from components.cluster import core, training

    ns = PROJECTS["overlays/kind"]
    quota = tier.get("resourcequota", "-n", ns, "fareflow-compute")["spec"]["hard"]
    limit = int(quota["requests.nvidia.com/gpu"])
    settings = core.ClusterSettings(namespace=ns, train_gpus_per_pod=limit + 1, gpu_node_selector={"fareflow.io/pool": "gpu"})  # fmt: skip
    job = training.train_job_object(
        settings, "over-quota", "s3://b/splits", "s3://b/models/x", training.TrainParams(), 1
    )
    spec = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    with pytest.raises(KubectlError) as err:
        tier.apply([_pod(ns, spec, "over-quota")], "--dry-run=server")
    assert "exceeded quota: fareflow-compute" in err.value.stderr
    assert "requests.nvidia.com/gpu" in err.value.stderr


def kind_with_components(tmp_path, components: list[str]) -> list[dict]:
    """overlays/kind plus optional ``components``, rendered as the tier applies them."""
    overlay = tmp_path / "with-components"
    overlay.mkdir()
    rel = lambda p: os.path.relpath(REPO / "manifests" / p, overlay)  # noqa: E731
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": [rel("overlays/kind")], "components": [rel(c) for c in components],
        })
    )  # fmt: skip
    out = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True
    ).stdout
    return in_tier([d for d in yaml.safe_load_all(out) if d])


def test_optional_mlflow_component_applies_and_its_pod_is_admitted(tier: Tier, projects, tmp_path):
    """overlays/kind + optuna-postgres + components/mlflow: applied server-side, the Deployment's
    pod (made by the real ReplicaSet controller) passes Pod Security "restricted" and the quota,
    and it takes both Secrets as files only (no secret in its environment)."""
    docs = kind_with_components(tmp_path, ["components/optuna-postgres", "components/mlflow"])
    assert {("Deployment", "fareflow-mlflow"), ("Service", "fareflow-mlflow")} <= {
        (d["kind"], d["metadata"]["name"]) for d in docs
    }
    ns = PROJECTS["overlays/kind"]
    selector = "app.kubernetes.io/name=fareflow-mlflow"

    def pod() -> str:
        found = tier.get("pods", "-n", ns, "-l", selector)["items"]
        return json.dumps(found[0]) if found else ""

    try:
        tier.apply(docs)
        created = json.loads(wait_for(pod, 60, "mlflow pod created"))
        assert created["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
        (c,) = created["spec"]["containers"]
        assert not [e for e in c.get("env", []) if "secretKeyRef" in (e.get("valueFrom") or {})]
        secrets = {v["secret"]["secretName"] for v in created["spec"]["volumes"] if "secret" in v}
        assert secrets == {"fareflow-postgres", "fareflow-s3"}
        events = tier.get("events", "-n", ns)["items"]
        assert not [e for e in events if "violates PodSecurity" in e.get("message", "")]
    finally:
        tier.kubectl("delete", "-n", ns, "deployment", "fareflow-mlflow", "--ignore-not-found", check=False)
        tier.kubectl(
            "delete", "-n", ns, "statefulset", "fareflow-postgres", "--ignore-not-found", check=False
        )
        tier.kubectl("delete", "-n", ns, "pvc", "--all", "--wait=false", check=False)


def test_optional_postgres_component_applies_and_its_pod_is_admitted(tier: Tier, projects, tmp_path):
    """overlays/kind + components/optuna-postgres: applied server-side beside the project, and
    the StatefulSet's pod (made by the real StatefulSet controller) passes Pod Security
    "restricted" and the quota (it then waits for a volume: the tier has no provisioner)."""
    docs = kind_with_components(tmp_path, ["components/optuna-postgres"])
    added = [
        d
        for d in docs
        if d["kind"] in ("StatefulSet", "Service") or d["metadata"]["name"] == "fareflow-postgres"
    ]
    assert {d["kind"] for d in added} >= {"StatefulSet", "Service", "Secret"}
    ns = PROJECTS["overlays/kind"]
    try:
        tier.apply(docs)
        pod = wait_for(lambda: tier.kubectl("-n", ns, "get", "pod", "fareflow-postgres-0", "-o", "json", check=False), 60, "postgres pod created")  # fmt: skip
        assert json.loads(pod)["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
        events = tier.get("events", "-n", ns)["items"]
        assert not [e for e in events if "violates PodSecurity" in e.get("message", "")]
    finally:
        tier.kubectl(
            "delete", "-n", ns, "statefulset", "fareflow-postgres", "--ignore-not-found", check=False
        )
        tier.kubectl("delete", "-n", ns, "pvc", "--all", "--wait=false", check=False)
