"""Every kustomization renders, and every rendered object passes its schema and the
project's pod-security and least-privilege rules."""

import base64
import os
import pathlib
import textwrap

import pytest
import yaml

from tests.manifests.k8s_schema import MANIFESTS, render, validate

KUSTOMIZATIONS = ["base", "overlays/kind", "overlays/gpu-cluster"]
COMPONENTS = ["components/gpu", "components/gpu-serving", "components/knative-serving"]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {k: render(MANIFESTS / k) for k in KUSTOMIZATIONS}


def with_components(tmp_path: pathlib.Path, components: list[str]) -> list[dict]:
    """Render base plus components through a throwaway kustomization."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(MANIFESTS / "base", tmp_path)],
                "components": [os.path.relpath(MANIFESTS / c, tmp_path) for c in components],
            }
        )
    )
    return render(tmp_path, outside_root=True)


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict], kind: str, name: str) -> dict:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def pod_containers(obj: dict) -> list[tuple[dict, dict]]:
    """(pod spec or None, container) for every container an object defines."""
    if obj["kind"] in {"StatefulSet", "Deployment", "Job", "DaemonSet"}:
        spec = obj["spec"]["template"]["spec"]
        return [(spec, c) for c in spec.get("initContainers", []) + spec["containers"]]
    if obj["kind"] == "ServingRuntime":
        return [(None, c) for c in obj["spec"]["containers"]]
    return []


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_object_validates(rendered, name):
    objs = rendered[name]
    assert len(objs) >= 15
    for obj in objs:
        validate(obj)


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_renders_on_base_and_validates(tmp_path, component):
    deps = ["components/gpu"] if component == "components/gpu-serving" else []
    for obj in with_components(tmp_path, [*deps, component]):
        validate(obj)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_everything_lives_in_the_project_namespace(rendered, name):
    for obj in rendered[name]:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "fareflow", obj["metadata"]
    assert not by_kind(rendered[name], "ClusterRole") and not by_kind(rendered[name], "ClusterRoleBinding")


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_pods_are_hardened_and_bounded(rendered, name):
    checked = 0
    for obj in rendered[name]:
        for pod, c in pod_containers(obj):
            where = f"{name}: {obj['kind']}/{obj['metadata']['name']}/{c['name']}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] >= 10000, where
            assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], where
            assert sc["readOnlyRootFilesystem"] is True, where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), where
            assert ":" in c["image"] and not c["image"].endswith(":latest"), where
            if pod is not None:
                assert pod["securityContext"]["runAsNonRoot"] is True, where
                assert pod.get("automountServiceAccountToken") is False, where
            checked += 1
    assert checked >= 2  # postgres and the model server


def test_namespace_has_quota_limits_and_default_deny(rendered):
    objs = rendered["base"]
    assert by_kind(objs, "ResourceQuota") and by_kind(objs, "LimitRange")
    deny = one(objs, "NetworkPolicy", "default-deny-all")
    assert deny["spec"]["podSelector"] == {} and set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    names = {p["metadata"]["name"] for p in by_kind(objs, "NetworkPolicy")}
    assert {
        "allow-dns",
        "allow-same-namespace",
        "allow-kubeflow-pipelines",
        "allow-kserve-ingress-to-predictors",
        "allow-optuna-postgres",
    } <= names
    kfp = one(objs, "NetworkPolicy", "allow-kubeflow-pipelines")
    ports = {p["port"] for rule in kfp["spec"]["egress"] for p in rule["ports"]}
    assert {8888, 9000, 8080} <= ports


def test_pipeline_runner_rbac_is_namespaced_and_minimal(rendered):
    objs = rendered["base"]
    role = one(objs, "Role", "fareflow-pipeline-runner")
    granted = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                granted[(group, res)] = set(rule["verbs"])
                assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
    for key in [
        ("kubeflow.org", "pytorchjobs"),
        ("kubeflow.org", "mpijobs"),
        ("serving.kserve.io", "inferenceservices"),
    ]:
        assert {"create", "get", "watch"} <= granted[key]
    assert not any(r == "secrets" for _, r in granted), "the runner must not read secrets"
    binding = one(objs, "RoleBinding", "fareflow-pipeline-runner")
    assert binding["roleRef"]["kind"] == "Role"
    subjects = {(s["namespace"], s["name"]) for s in binding["subjects"]}
    assert subjects == {("fareflow", "fareflow-pipeline-runner"), ("kubeflow", "pipeline-runner")}


def _secret_values(obj: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}


def test_base_secrets_are_templates_without_real_values(rendered):
    for name in ("fareflow-s3", "fareflow-postgres"):
        values = _secret_values(one(rendered["base"], "Secret", name))
        assert "REPLACE_ME" in values.values()
    for name in ("fareflow-s3", "fareflow-postgres"):
        assert "REPLACE_ME" in _secret_values(one(rendered["overlays/gpu-cluster"], "Secret", name)).values()
    kind_values = _secret_values(one(rendered["overlays/kind"], "Secret", "fareflow-s3"))
    assert kind_values == {"AWS_ACCESS_KEY_ID": "minio", "AWS_SECRET_ACCESS_KEY": "minio123"}


def test_postgres_for_optuna_reads_credentials_from_the_secret(rendered):
    objs = rendered["base"]
    sts = one(objs, "StatefulSet", "fareflow-postgres")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    spec = sts["spec"]["template"]["spec"]
    secret_vols = [v for v in spec["volumes"] if "secret" in v]
    assert secret_vols[0]["secret"]["secretName"] == "fareflow-postgres"
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["POSTGRES_PASSWORD_FILE"].startswith("/etc/fareflow-postgres/")
    svc = one(objs, "Service", "fareflow-postgres")
    assert svc["spec"]["ports"][0]["port"] == 5432


def test_gpu_cluster_schedules_training_on_the_gpu_pool(rendered):
    cfg = one(rendered["overlays/gpu-cluster"], "ConfigMap", "fareflow-cluster")["data"]
    assert cfg["TRAIN_GPUS_PER_POD"] == "1" and cfg["GPU_NODE_SELECTOR"] == "fareflow.io/pool=gpu"
    quota = one(rendered["overlays/gpu-cluster"], "ResourceQuota", "fareflow-compute")
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "8"
    kind_cfg = one(rendered["overlays/kind"], "ConfigMap", "fareflow-cluster")["data"]
    assert kind_cfg["TRAIN_GPUS_PER_POD"] == "0"


def test_gpu_serving_component_puts_the_runtime_on_the_gpu_pool(tmp_path):
    objs = with_components(tmp_path, ["components/gpu", "components/gpu-serving"])
    runtime = one(objs, "ServingRuntime", "fareflow-server")["spec"]
    assert runtime["nodeSelector"] == {"fareflow.io/pool": "gpu"}
    assert runtime["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert runtime["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_knative_component_enables_scale_to_zero(tmp_path):
    objs = with_components(tmp_path, ["components/knative-serving"])
    cfg = one(objs, "ConfigMap", "fareflow-cluster")["data"]
    assert cfg["SERVING_DEPLOYMENT_MODE"] == "Knative" and cfg["SERVING_MIN_REPLICAS"] == "0"
    assert one(objs, "NetworkPolicy", "allow-knative-to-predictors")


def test_kind_overlay_uses_the_tag_the_images_are_built_with(rendered):
    from components.common.images import VERSION

    runtime = one(rendered["overlays/kind"], "ServingRuntime", "fareflow-server")
    assert runtime["spec"]["containers"][0]["image"] == f"ghcr.io/fareflow/server:{VERSION}"
    versions = (MANIFESTS / "versions.env").read_text()
    pg = one(rendered["overlays/kind"], "StatefulSet", "fareflow-postgres")["spec"]["template"]["spec"]
    assert f"POSTGRES_IMAGE:-{pg['containers'][0]['image']}}}" in versions


def test_kind_cluster_has_cpu_pool_and_tainted_gpu_like_pool():
    cfg = yaml.safe_load((MANIFESTS / "kind" / "kind-config.yaml").read_text())
    roles = [n["role"] for n in cfg["nodes"]]
    assert roles.count("control-plane") == 1
    cpu = [n for n in cfg["nodes"] if n.get("labels", {}).get("fareflow.io/pool") == "cpu"]
    gpu = [n for n in cfg["nodes"] if n.get("labels", {}).get("fareflow.io/pool") == "gpu"]
    assert len(cpu) >= 1 and len(gpu) == 1
    patch = yaml.safe_load(gpu[0]["kubeadmConfigPatches"][0])
    assert patch["kind"] == "JoinConfiguration"
    assert patch["nodeRegistration"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    ]
    for node in cpu:
        assert "kubeadmConfigPatches" not in node


def test_validation_rejects_bad_objects(rendered):
    """The checks can fail: an unknown field and a wrong type are caught for each family."""
    sts = yaml.safe_load(yaml.safe_dump(one(rendered["base"], "StatefulSet", "fareflow-postgres")))
    sts["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(AssertionError, match="imagePullPolicyy"):
        validate(sts)
    runtime = yaml.safe_load(yaml.safe_dump(one(rendered["base"], "ServingRuntime", "fareflow-server")))
    runtime["spec"]["protocolVersion"] = "v2"  # the field is protocolVersions
    with pytest.raises(AssertionError, match="protocolVersion"):
        validate(runtime)
    quota = yaml.safe_load(
        textwrap.dedent("""
        apiVersion: v1
        kind: ResourceQuota
        metadata: {name: q, namespace: fareflow}
        spec: {hard: {pods: [1]}}
    """)
    )
    with pytest.raises(AssertionError):
        validate(quota)
