"""components/mlflow: the MLflow tracking server on the project's PostgreSQL, rendered with
kustomize on base (with components/optuna-postgres, which it needs) and checked object by
object: schema, pod hardening, and that its pieces agree with each other and with the
image and the pipeline's tracking step."""

from __future__ import annotations

import fnmatch
import re
import tomllib

import pytest

from tests.manifests.k8s_schema import MANIFESTS, validate
from tests.manifests.test_render import one, pod_containers, with_components

REPO = MANIFESTS.parent
COMPONENTS = ["components/optuna-postgres", "components/mlflow"]


@pytest.fixture(scope="module")
def objs(tmp_path_factory) -> list[dict]:
    return with_components(tmp_path_factory.mktemp("mlflow"), COMPONENTS)


def _deployment(objs):
    return one(objs, "Deployment", "fareflow-mlflow")


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def _secret_mount(pod: dict, container: dict, secret_name: str) -> tuple[dict, dict]:
    """The one volume holding Secret ``secret_name`` and the container's mount of it."""
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == secret_name]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    return volume, mount


def _entrypoint() -> str:
    return (REPO / "images" / "mlflow" / "mlflow_server.py").read_text()


def test_every_object_validates_and_lives_in_the_project_namespace(objs):
    for obj in objs:
        validate(obj)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "fareflow", obj["metadata"]
    assert one(objs, "Service", "fareflow-mlflow") and one(objs, "NetworkPolicy", "allow-mlflow")


def test_the_server_pod_is_hardened_and_bounded(objs):
    deployment = _deployment(objs)
    ((pod, c),) = pod_containers(deployment)
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] >= 10000
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["readOnlyRootFilesystem"] is True
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])
    # a read-only root: the one writable path is an emptyDir at /tmp, where HOME points
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]] and _env(c)["HOME"]["value"] == "/tmp"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"


def test_the_image_is_ours_pinned_to_the_project_version(objs):
    ((_, c),) = pod_containers(_deployment(objs))
    config = one(objs, "ConfigMap", "fareflow-cluster")["data"]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    # the same registry and tag as every other fareflow image (make images / kind-load)
    assert c["image"] == f"{config['IMAGE_REGISTRY']}/mlflow:{version}"
    assert (REPO / "images" / "mlflow" / "Dockerfile").is_file()


def test_the_backend_store_is_the_optuna_components_postgres(objs):
    """Credentials as files from the Secret components/optuna-postgres makes, the host its
    Service; the entrypoint reads exactly the keys that Secret has."""
    ((pod, c),) = pod_containers(_deployment(objs))
    env = _env(c)
    secret = one(objs, "Secret", "fareflow-postgres")
    postgres = one(objs, "Service", "fareflow-postgres")
    assert env["POSTGRES_HOST"]["value"] == postgres["metadata"]["name"]
    assert env["POSTGRES_PORT"]["value"] == str(postgres["spec"]["ports"][0]["port"])
    _, mount = _secret_mount(pod, c, secret["metadata"]["name"])
    assert mount["readOnly"] is True and mount["mountPath"] == env["POSTGRES_SECRET_DIR"]["value"]
    used = set(re.findall(r'secret\(secrets, "([A-Z_]+)"\)', _entrypoint()))
    assert used == {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} <= set(secret["data"])
    # no password in the pod spec: only the mounted files
    assert not [e for e in c["env"] if "PASSWORD" in e["name"]]


def test_artifacts_go_to_the_project_object_store(objs):
    """The endpoint from the ConfigMap; the keys as files from the fareflow-s3 Secret (never
    secretKeyRef env, checkov CKV_K8S_35), at the directory the entrypoint reads, named as
    the files it reads (it puts them in the server's environment itself)."""
    ((pod, c),) = pod_containers(_deployment(objs))
    env = _env(c)
    assert env["MLFLOW_ARTIFACTS_DESTINATION"]["value"].startswith("s3://")
    ref = env["MLFLOW_S3_ENDPOINT_URL"]["valueFrom"]["configMapKeyRef"]
    assert (ref["name"], ref["key"]) == ("fareflow-cluster", "AWS_ENDPOINT_URL")
    s3 = one(objs, "Secret", "fareflow-s3")
    volume, mount = _secret_mount(pod, c, "fareflow-s3")
    assert mount["readOnly"] is True and mount["mountPath"] == env["S3_SECRET_DIR"]["value"]
    (keys,) = re.findall(r"^S3_KEYS = \(([^)]*)\)", _entrypoint(), re.MULTILINE)
    keys = set(re.findall(r'"([A-Z_]+)"', keys))
    assert keys == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(s3["data"])
    assert {(i["key"], i["path"]) for i in volume["secret"]["items"]} == {(k, k) for k in keys}
    # no Secret reaches the container through its environment
    assert not [e for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert not [e for e in c.get("envFrom", []) if "secretRef" in e]


def test_ports_agree_and_the_pipeline_can_reach_the_server(objs):
    """ConfigMap -> Service -> container port -> NetworkPolicy, and the Host header the
    tracking step sends is one the server answers (MLflow 3 refuses unknown hosts)."""
    config = one(objs, "ConfigMap", "fareflow-cluster")["data"]
    service = one(objs, "Service", "fareflow-mlflow")
    ((_, c),) = pod_containers(_deployment(objs))
    (port,) = service["spec"]["ports"]
    assert config["MLFLOW_TRACKING_HOST"] == service["metadata"]["name"]
    assert config["MLFLOW_TRACKING_PORT"] == str(port["port"])
    (container_port,) = c["ports"]
    assert port["targetPort"] == container_port["name"] and container_port["containerPort"] == port["port"]
    policy = one(objs, "NetworkPolicy", "allow-mlflow")["spec"]
    assert policy["podSelector"]["matchLabels"] == service["spec"]["selector"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port["port"]}]
    sources = [s.get("namespaceSelector", {}).get("matchLabels", {}) for s in rule["from"]]
    assert {"kubernetes.io/metadata.name": "kubeflow"} in sources  # KFP's pipeline pods
    allowed = _env(c)["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    host = f"{config['MLFLOW_TRACKING_HOST']}.{config['NAMESPACE']}.svc:{config['MLFLOW_TRACKING_PORT']}"
    for header in (host, f"{config['MLFLOW_TRACKING_HOST']}:5000", "localhost:5000"):
        assert any(fnmatch.fnmatch(header, a) if "*" in a else header == a for a in allowed), header
    assert "*" not in allowed


def test_base_and_overlays_do_not_deploy_it(tmp_path):
    objs = with_components(tmp_path, ["components/optuna-postgres"])
    assert not [o for o in objs if "mlflow" in o["metadata"]["name"]]
    assert "MLFLOW_TRACKING_HOST" not in one(objs, "ConfigMap", "fareflow-cluster")["data"]


def test_the_server_image_runs_the_mlflow_the_client_logs_with():
    """images/mlflow pins full mlflow at the version of the project's mlflow-skinny (when
    pyproject.toml pins it), so the server reads what the client writes."""
    pins = dict(
        line.split("==", 1)
        for line in (REPO / "images" / "mlflow" / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert set(pins) == {"mlflow", "psycopg[binary]", "boto3"}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [
        r for group in project.get("optional-dependencies", {}).values() for r in group
    ]
    skinny = [r.split("==", 1)[1] for r in declared if r.startswith("mlflow-skinny==")]
    if not skinny:
        pytest.skip("pyproject.toml does not pin mlflow-skinny yet")
    assert pins["mlflow"] == skinny[0]
    boto3 = [r.split("==", 1)[1] for r in declared if r.startswith("boto3==")]
    assert pins["boto3"] == boto3[0]
