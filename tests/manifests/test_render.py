"""Every kustomization renders, and every rendered object passes its schema and the
project's pod-security and least-privilege rules."""

import base64
import os
import pathlib
import textwrap

import pytest
import yaml

from tests.manifests.k8s_schema import MANIFESTS, render, validate

KUSTOMIZATIONS = ["base", "overlays/kind", "overlays/gpu-cluster", "overlays/team-b"]
PROJECT_NAMESPACE = {"overlays/team-b": "team-b"}  # the others: fareflow
COMPONENTS = [
    "components/gpu",
    "components/gpu-serving",
    "components/knative-serving",
    "components/mpijob-baseline",
    "components/optuna-postgres",
    "components/mlflow",
]
# a component that needs another one beside it
COMPONENT_DEPS = {
    "components/gpu-serving": ["components/gpu"],
    "components/mlflow": ["components/optuna-postgres"],
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, list[dict]]:
    out = {k: render(MANIFESTS / k) for k in KUSTOMIZATIONS}
    out["optuna"] = with_components(tmp_path_factory.mktemp("optuna"), ["components/optuna-postgres"])
    out["mlflow"] = with_components(
        tmp_path_factory.mktemp("mlflow"), ["components/optuna-postgres", "components/mlflow"]
    )
    out["all components"] = with_components(tmp_path_factory.mktemp("all"), COMPONENTS)
    return out


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
    deps = COMPONENT_DEPS.get(component, [])
    for obj in with_components(tmp_path, [*deps, component]):
        validate(obj)


@pytest.mark.parametrize("name", [*KUSTOMIZATIONS, "optuna", "mlflow", "all components"])
def test_everything_lives_in_the_project_namespace(rendered, name):
    project = PROJECT_NAMESPACE.get(name, "fareflow")
    (ns,) = by_kind(rendered[name], "Namespace")
    assert ns["metadata"]["name"] == project
    for obj in rendered[name]:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == project, obj["metadata"]
    assert not by_kind(rendered[name], "ClusterRole") and not by_kind(rendered[name], "ClusterRoleBinding")


@pytest.mark.parametrize("name", [*KUSTOMIZATIONS, "optuna", "mlflow", "all components"])
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
    assert checked >= (2 if name == "optuna" else 1)  # the model server (and postgres)


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
    } <= names
    kfp = one(objs, "NetworkPolicy", "allow-kubeflow-pipelines")
    ports = {p["port"] for rule in kfp["spec"]["egress"] for p in rule["ports"]}
    assert {8888, 8333, 8080} <= ports


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
        ("batch", "jobs"),  # the tune step's parallel workers (tune_workers > 1)
    ]:
        assert {"create", "get", "watch", "delete"} <= granted[key]
    assert not any(r == "secrets" for _, r in granted), "the runner must not read secrets"
    binding = one(objs, "RoleBinding", "fareflow-pipeline-runner")
    assert binding["roleRef"]["kind"] == "Role"
    subjects = {(s["namespace"], s["name"]) for s in binding["subjects"]}
    assert subjects == {("fareflow", "fareflow-pipeline-runner"), ("kubeflow", "pipeline-runner")}


def _secret_values(obj: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}


def test_base_secrets_are_templates_without_real_values(rendered):
    for where in ("base", "overlays/gpu-cluster"):
        assert "REPLACE_ME" in _secret_values(one(rendered[where], "Secret", "fareflow-s3")).values()
    assert "REPLACE_ME" in _secret_values(one(rendered["optuna"], "Secret", "fareflow-postgres")).values()
    kind_values = _secret_values(one(rendered["overlays/kind"], "Secret", "fareflow-s3"))
    assert kind_values == {"AWS_ACCESS_KEY_ID": "minio", "AWS_SECRET_ACCESS_KEY": "minio123"}


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_postgres_is_off_the_critical_path(rendered, name):
    """Nothing uses PostgreSQL by default (the tune step keeps its study in memory): no base or
    overlay deploys it, so no install waits for it; components/optuna-postgres adds it."""
    objs = rendered[name]
    assert not [o for o in objs if "postgres" in o["metadata"]["name"]], name
    assert "OPTUNA_STORAGE_HOST" not in one(objs, "ConfigMap", "fareflow-cluster")["data"]


def test_postgres_for_optuna_reads_credentials_from_the_secret(rendered):
    objs = rendered["optuna"]
    assert one(objs, "ConfigMap", "fareflow-cluster")["data"]["OPTUNA_STORAGE_HOST"] == "fareflow-postgres"
    assert one(objs, "NetworkPolicy", "allow-optuna-postgres")
    versions = (MANIFESTS / "versions.env").read_text()
    pg = one(objs, "StatefulSet", "fareflow-postgres")["spec"]["template"]["spec"]
    assert f"POSTGRES_IMAGE:-{pg['containers'][0]['image']}}}" in versions
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
    from components.cluster.core import ClusterSettings
    from components.cluster.serving import inference_service_object

    objs = with_components(tmp_path, ["components/knative-serving"])
    cfg = one(objs, "ConfigMap", "fareflow-cluster")["data"]
    assert cfg["SERVING_DEPLOYMENT_MODE"] == "Knative" and cfg["SERVING_MIN_REPLICAS"] == "0"
    policy = one(objs, "NetworkPolicy", "allow-knative-to-predictors")
    # the activator's namespace and the ingress gateway's that install-platform.sh's Knative
    # mode installs (Kourier: kourier-system), which reaches the pods once the activator leaves
    admitted = policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"]
    install = (MANIFESTS / "scripts" / "install-platform.sh").read_text()
    assert "rollout_all kourier-system 3scale-kourier-gateway" in install
    assert {"knative-serving", "kourier-system"} <= set(admitted)
    # What the deploy step builds from these settings is what KServe's KPA validation accepts.
    settings = ClusterSettings.from_config_map(cfg, "fareflow")
    isvc = inference_service_object(settings, "taxi-fare", "s3://mlpipeline/m")
    validate(isvc)
    pred = isvc["spec"]["predictor"]
    assert (pred["minReplicas"], pred["scaleMetric"]) == (0, "concurrency")
    assert "serving.kserve.io/autoscalerClass" not in isvc["metadata"]["annotations"]
    # Knative Serving takes one container port: HTTP stays, gRPC goes.
    (port,) = one(objs, "ServingRuntime", "fareflow-server")["spec"]["containers"][0]["ports"]
    assert port["containerPort"] == 8080
    role = one(objs, "Role", "fareflow-pipeline-runner")
    assert {"apiGroups": ["serving.knative.dev"], "resources": ["services"], "verbs": ["get"]} in role[
        "rules"
    ]


PSA = "pod-security.kubernetes.io/"


def test_namespaces_enforce_restricted_without_the_mpijob_component(rendered):
    for name in KUSTOMIZATIONS:
        (ns,) = by_kind(rendered[name], "Namespace")
        labels = ns["metadata"]["labels"]
        assert {labels[PSA + m] for m in ("enforce", "warn", "audit")} == {"restricted"}, name


@pytest.mark.parametrize("base", ["base", "overlays/kind", "overlays/team-b"])
def test_mpijob_component_enforces_baseline_and_still_warns_and_audits_restricted(tmp_path, base):
    """The v1 MPIJob launcher's kubectl-delivery init container has no security context (the
    Training Operator injects it): a Horovod project enforces baseline. Only that label changes,
    on the project's Namespace whatever an overlay names it, and nothing else in the render."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(MANIFESTS / base, tmp_path)],
                "components": [os.path.relpath(MANIFESTS / "components/mpijob-baseline", tmp_path)],
            }
        )
    )
    objs = render(tmp_path, outside_root=True)
    for obj in objs:
        validate(obj)
    (ns,) = by_kind(objs, "Namespace")
    assert ns["metadata"]["name"] == PROJECT_NAMESPACE.get(base, "fareflow")
    labels = ns["metadata"]["labels"]
    assert labels[PSA + "enforce"] == "baseline"
    assert labels[PSA + "warn"] == labels[PSA + "audit"] == "restricted"
    assert labels[PSA + "enforce-version"] == "latest"
    assert labels["app.kubernetes.io/part-of"] == "kubeflow-profile"
    without = render(MANIFESTS / base)
    (plain_ns,) = by_kind(without, "Namespace")
    assert {**plain_ns["metadata"]["labels"], PSA + "enforce": "baseline"} == labels
    others = sorted(
        (o for o in objs if o["kind"] != "Namespace"), key=lambda o: (o["kind"], o["metadata"]["name"])
    )
    assert others == sorted((o for o in without if o["kind"] != "Namespace"), key=lambda o: (o["kind"], o["metadata"]["name"]))  # fmt: skip


def test_kind_overlay_uses_the_tag_the_images_are_built_with(rendered):
    from components.common.images import VERSION

    runtime = one(rendered["overlays/kind"], "ServingRuntime", "fareflow-server")
    assert runtime["spec"]["containers"][0]["image"] == f"ghcr.io/fareflow/server:{VERSION}"
    assert one(rendered["overlays/kind"], "ConfigMap", "fareflow-cluster")["data"]["IMAGE_TAG"] == VERSION


@pytest.mark.parametrize("name", [*KUSTOMIZATIONS, "all components"])
def test_runtime_resources_are_the_ones_fareflow_predictors_set(rendered, name):
    """KServe merges an InferenceService's container over the ServingRuntime's
    (MergeRuntimeContainers, a strategic merge), and every predictor fareflow builds sets cpu and
    memory requests and limits, so an overlay's patch of the runtime's cpu/memory changes nothing
    that fareflow deploys (the kind overlay had one). The runtime keeps the builder's defaults."""
    from components.common import k8s

    (container,) = one(rendered[name], "ServingRuntime", "fareflow-server")["spec"]["containers"]
    pred = k8s.inference_service("x", "s3://b/m")["spec"]["predictor"]["model"]["resources"]
    for kind in ("requests", "limits"):
        runtime = {k: v for k, v in container["resources"][kind].items() if k in ("cpu", "memory")}
        assert runtime == pred[kind], f"{name}: the runtime's {kind} differ from what the predictors set"


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
    sts = yaml.safe_load(yaml.safe_dump(one(rendered["optuna"], "StatefulSet", "fareflow-postgres")))
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


# --- object store, namespaces, ports, tags (issue 10) ---

SEAWEEDFS = "seaweedfs.kubeflow:9000"  # KFP 2.17: Service seaweedfs, port 9000 -> pods' 8333


def _strings(obj, path=""):
    """(path, value) for every string in an object, keys included as path parts."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _strings(v, f"{path}[{i}]")
    elif isinstance(obj, str):
        yield path, obj


@pytest.mark.parametrize("name", [*KUSTOMIZATIONS, "optuna", "mlflow", "all components"])
def test_no_minio_service_anywhere(rendered, name):
    """KFP 2.17 has no minio-service (kubeflow/pipelines#12613); its store is SeaweedFS."""
    for obj in rendered[name]:
        for path, value in _strings(obj):
            assert "minio-service" not in value, f"{obj['kind']}/{obj['metadata']['name']}{path}"


@pytest.mark.parametrize("name", ["base", "overlays/kind", "overlays/team-b"])
def test_in_cluster_object_store_is_kfps_seaweedfs(rendered, name):
    cfg = one(rendered[name], "ConfigMap", "fareflow-cluster")["data"]
    assert cfg["AWS_ENDPOINT_URL"] == f"http://{SEAWEEDFS}"
    secret = one(rendered[name], "Secret", "fareflow-s3")["metadata"]["annotations"]
    assert secret["serving.kserve.io/s3-endpoint"] == SEAWEEDFS
    egress = one(rendered[name], "NetworkPolicy", "allow-kubeflow-pipelines")["spec"]["egress"]
    to_store = [
        r for r in egress if r["to"][0].get("podSelector", {}).get("matchLabels") == {"app": "seaweedfs"}
    ]
    assert [p["port"] for r in to_store for p in r["ports"]] == [8333]  # the pod port NetworkPolicy sees
    assert not [r for r in egress if r["to"][0].get("podSelector", {}).get("matchLabels") == {"app": "minio"}]


@pytest.mark.parametrize("name", [*KUSTOMIZATIONS, "optuna", "mlflow", "all components"])
def test_project_namespace_is_admitted_by_kfps_seaweedfs_policy(rendered, name):
    """kubeflow/pipelines 2.17.0 third-party/seaweedfs/base/seaweedfs/seaweedfs-networkpolicy.yaml
    admits port 8333 from namespaces labelled app.kubernetes.io/part-of In [kubeflow-profile]
    (with the optional components too: their labels must not overwrite it)."""
    (ns,) = by_kind(rendered[name], "Namespace")
    assert ns["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubeflow-profile"
    # Everything inside it keeps the project label.
    for obj in rendered[name]:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "fareflow", obj["metadata"]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_object_store_settings_are_one_coherent_set(rendered, name):
    """The jobs' endpoint/region (ConfigMap) and KServe's storage initializer settings (Secret
    annotations) name the same store; no in-cluster endpoint beside a cloud one."""
    from urllib.parse import urlsplit

    cfg = one(rendered[name], "ConfigMap", "fareflow-cluster")["data"]
    ann = one(rendered[name], "Secret", "fareflow-s3")["metadata"]["annotations"]
    url = urlsplit(cfg["AWS_ENDPOINT_URL"])
    assert ann["serving.kserve.io/s3-endpoint"] == url.netloc, name
    assert ann["serving.kserve.io/s3-usehttps"] == ("1" if url.scheme == "https" else "0"), name
    assert ann["serving.kserve.io/s3-region"] == cfg["AWS_DEFAULT_REGION"], name


def test_gpu_cluster_object_store_is_the_clouds(rendered):
    cfg = one(rendered["overlays/gpu-cluster"], "ConfigMap", "fareflow-cluster")["data"]
    assert cfg["AWS_ENDPOINT_URL"].startswith("https://s3.") and cfg["AWS_ENDPOINT_URL"].endswith(
        ".amazonaws.com"
    )


def test_a_second_project_follows_its_namespace_everywhere(rendered):
    """overlays/team-b (namespace: team-b + base/follow-namespace) beside the default project:
    no value may still name fareflow's namespace."""
    team_b, default = rendered["overlays/team-b"], rendered["overlays/kind"]
    assert one(team_b, "ConfigMap", "fareflow-cluster")["data"]["NAMESPACE"] == "team-b"
    assert one(default, "ConfigMap", "fareflow-cluster")["data"]["NAMESPACE"] == "fareflow"
    subjects = {
        (s["namespace"], s["name"])
        for s in one(team_b, "RoleBinding", "fareflow-pipeline-runner")["subjects"]
    }
    assert subjects == {("team-b", "fareflow-pipeline-runner"), ("kubeflow", "pipeline-runner")}
    allowed = ("labels.app.kubernetes.io/part-of", ".supportedModelFormats[0].name")
    for obj in team_b:
        for path, value in _strings(obj):
            if path.endswith(allowed):
                continue
            assert value != "fareflow" and ".fareflow." not in value and ".fareflow:" not in value, (
                f"{obj['kind']}/{obj['metadata']['name']}{path}={value!r}"
            )
    # Both projects can live on one cluster: same object names, different namespaces.
    assert {(o["kind"], o["metadata"]["name"]) for o in team_b} == {
        (o["kind"], o["metadata"]["name"]) for o in default
    } - {("Namespace", "fareflow")} | {("Namespace", "team-b")}


def test_follow_namespace_is_needed(tmp_path):
    """Without base/follow-namespace, `namespace:` alone leaves NAMESPACE and the subject behind."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump({"namespace": "team-c", "resources": [os.path.relpath(MANIFESTS / "base", tmp_path)]})
    )
    objs = render(tmp_path, outside_root=True)
    assert one(objs, "ConfigMap", "fareflow-cluster")["data"]["NAMESPACE"] == "fareflow"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_serving_runtime_declares_http_and_v2_grpc_ports(rendered, name):
    """KServe v0.21 Standard mode: the first container port becomes the predictor Service's 80,
    further ones keep their number, names with grpc/h2c get appProtocol kubernetes.io/h2c."""
    (c,) = one(rendered[name], "ServingRuntime", "fareflow-server")["spec"]["containers"]
    assert [(p["name"], p["containerPort"]) for p in c["ports"]] == [("http1", 8080), ("h2c", 8081)]
    assert "--grpc_port=8081" in c["args"] and "--http_port=8080" in c["args"]
    ingress = one(rendered[name], "NetworkPolicy", "allow-kserve-ingress-to-predictors")["spec"]["ingress"]
    assert {8080, 8081} <= {p["port"] for r in ingress for p in r["ports"]}


def assert_pinned_settings(objs: list[dict]) -> None:
    """The ConfigMap's image tags pass the same guard the pipeline applies."""
    from components.cluster.core import ClusterSettings

    data = one(objs, "ConfigMap", "fareflow-cluster")["data"]
    assert data.get("IMAGE_TAG"), "IMAGE_TAG missing or empty"
    ClusterSettings.from_config_map(data, "fareflow")  # raises UserError on latest/empty tags


@pytest.mark.parametrize("name", [*KUSTOMIZATIONS, "optuna", "mlflow", "all components"])
def test_config_map_image_tags_are_pinned(rendered, name):
    assert_pinned_settings(rendered[name])


@pytest.mark.parametrize(
    ("key", "tag"), [("IMAGE_TAG", "latest"), ("IMAGE_TAG", ""), ("CUDA_IMAGE_TAG", "latest")]
)
def test_the_tag_guard_catches_an_overlay_that_unpins(tmp_path, key, tag):
    from components.common.errors import UserError

    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(MANIFESTS / "overlays/kind", tmp_path)],
                "patches": [
                    {
                        "target": {"kind": "ConfigMap", "name": "fareflow-cluster"},
                        "patch": yaml.safe_dump([{"op": "replace", "path": f"/data/{key}", "value": tag}]),
                    }
                ],
            }
        )
    )
    with pytest.raises((UserError, AssertionError), match=key):
        assert_pinned_settings(render(tmp_path, outside_root=True))
