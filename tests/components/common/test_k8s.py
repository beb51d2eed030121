"""Builders in components.common.k8s and the API wrapper in components.common.k8s_api."""

import pytest
import yaml

from components.common import k8s, k8s_api
from components.common.errors import UserError
from tests.k8s_fakes import FakeAppsV1, FakeCustomObjects, deployment

IMAGE = "ghcr.io/fareflow/trainer:0.1.0"


def pods(job: dict) -> dict[str, dict]:
    key = "pytorchReplicaSpecs" if job["kind"] == "PyTorchJob" else "mpiReplicaSpecs"
    return {role: spec["template"]["spec"] for role, spec in job["spec"][key].items()}


def assert_hardened(pod: dict, token: bool = False) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is token
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert set(c["resources"]["requests"]) >= {"cpu", "memory"}
        assert set(c["resources"]["limits"]) >= {"cpu", "memory"}
        assert {"/tmp", "/dev/shm"} <= {m["mountPath"] for m in c["volumeMounts"]}


def test_pytorch_job_has_master_and_workers_running_torchrun():
    job = k8s.pytorch_job("train", IMAGE, "components.train", ["--epochs", "2"], workers=3, nproc_per_node=1)
    assert job["apiVersion"] == "kubeflow.org/v1" and job["metadata"]["namespace"] == "fareflow"
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 3
    for pod in pods(job).values():
        (c,) = pod["containers"]
        assert c["name"] == "pytorch"
        assert c["command"] == ["torchrun", "--module", "components.train"] and c["args"] == ["--epochs", "2"]
        assert "nodeSelector" not in pod and "tolerations" not in pod
        assert "nvidia.com/gpu" not in c["resources"]["limits"]
        assert_hardened(pod)
    assert pods(job)["Master"] is not pods(job)["Worker"]
    assert "&id" not in yaml.safe_dump(job)


def test_gpu_scheduling_adds_selector_toleration_and_limit():
    gpu = k8s.GpuScheduling(gpus_per_pod=2)
    job = k8s.pytorch_job("train", IMAGE, "m", workers=1, nproc_per_node=2, gpu=gpu)
    for pod in pods(job).values():
        assert pod["nodeSelector"] == {"fareflow.io/pool": "gpu"}
        assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    mpi = k8s.mpi_job("hvd", IMAGE, "m", workers=2, gpu=gpu)
    assert "nodeSelector" not in pods(mpi)["Launcher"]  # the launcher needs no GPU
    assert pods(mpi)["Worker"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_mpi_job_launcher_waits_for_its_workers_then_runs_mpirun_over_all_slots():
    job = k8s.mpi_job("hvd", IMAGE, "components.train", ["--lr", "0.01"], workers=3, slots_per_worker=2)
    assert job["spec"]["slotsPerWorker"] == 2
    launcher = pods(job)["Launcher"]["containers"][0]
    assert launcher["name"] == "mpi"  # the operator adds its env and mounts to the first container
    assert launcher["command"][:2] == ["/bin/sh", "-c"]
    script = launcher["command"][2]
    assert script.startswith("set -e; /opt/kube/kubectl wait --for=condition=Ready --timeout=900s ")
    assert "pod/hvd-worker-0 pod/hvd-worker-1 pod/hvd-worker-2;" in script
    assert script.endswith('exec "$0" "$@"')
    # The args are the whole mpirun command line ($0 "$@" of the shell step).
    args = launcher["args"]
    assert args[:3] == ["mpirun", "-np", "6"]
    opts = args[3 : args.index("python")]
    assert opts == ["--bind-to", "none", "--map-by", "slot", "--mca", "pml", "ob1", "--mca", "btl", "^openib",
                    "--mca", "plm_rsh_no_tree_spawn", "1"]  # fmt: skip
    assert "--allow-run-as-root" not in args and "horovodrun" not in args
    assert args[args.index("python") :] == ["python", "-m", "components.train", "--lr", "0.01"]
    specs = job["spec"]["mpiReplicaSpecs"]
    assert specs["Worker"]["replicas"] == 3 and specs["Launcher"]["replicas"] == 1
    # A failed mpirun fails the job (no in-place reruns of a deterministic failure).
    assert specs["Launcher"]["restartPolicy"] == "Never"
    assert job["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"
    # The launcher runs as the operator's NAME-launcher ServiceAccount (pods/exec on the workers),
    # with its token; workers as the trainer ServiceAccount without one.
    assert "serviceAccountName" not in pods(job)["Launcher"]
    assert pods(job)["Worker"]["serviceAccountName"] == k8s.TRAINER_SERVICE_ACCOUNT
    assert_hardened(pods(job)["Launcher"], token=True)
    assert_hardened(pods(job)["Worker"])
    assert pods(job)["Launcher"]["securityContext"] == k8s.pod_security_context()


def test_mpi_job_workers_get_the_environment_and_secret_the_ranks_need():
    """The ranks run in the worker containers (orted through kubectl exec inherits their
    environment), so the S3 Secret and settings go there; the launcher gets neither."""
    env = {"AWS_ENDPOINT_URL": "http://seaweedfs.kubeflow:9000", "AWS_DEFAULT_REGION": "us-east-1"}
    job = k8s.mpi_job("hvd", IMAGE, "components.train", workers=2, env=env, env_from_secret="fareflow-s3",
                      labels={"app.kubernetes.io/component": "train"})  # fmt: skip
    (worker,) = pods(job)["Worker"]["containers"]
    (launcher,) = pods(job)["Launcher"]["containers"]
    assert worker["envFrom"] == [{"secretRef": {"name": "fareflow-s3", "optional": True}}]
    assert {e["name"]: e["value"] for e in worker["env"]} == {"HOME": "/tmp", "PYTHONUNBUFFERED": "1", **env}
    assert worker["command"] == ["sleep", "infinity"]
    assert "envFrom" not in launcher
    assert not {e["name"] for e in launcher["env"]} & set(env)
    for role in ("Launcher", "Worker"):
        meta = job["spec"]["mpiReplicaSpecs"][role]["template"]["metadata"]
        assert meta["labels"] == {
            "app.kubernetes.io/part-of": "fareflow",
            "app.kubernetes.io/component": "train",
        }
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "train"
    assert "&id" not in yaml.safe_dump(job)


def test_mpi_job_on_gpus_gets_one_slot_per_gpu_on_the_workers_only():
    job = k8s.mpi_job("hvd", IMAGE, "m", workers=2, slots_per_worker=2, gpu=k8s.GpuScheduling(2))
    assert job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["args"][:3] == [
        "mpirun", "-np", "4",
    ]  # fmt: skip
    launcher = pods(job)["Launcher"]
    assert "nvidia.com/gpu" not in launcher["containers"][0]["resources"]["limits"]
    assert "tolerations" not in launcher and "nodeSelector" not in launcher
    with pytest.raises(UserError, match="slots_per_worker=3 exceeds the 2 GPU"):
        k8s.mpi_job("hvd", IMAGE, "m", workers=2, slots_per_worker=3, gpu=k8s.GpuScheduling(2))


def test_mpi_launcher_script_waits_then_execs_its_args(tmp_path):
    """The launcher's shell step, run for real with stand-ins for kubectl and mpirun: mpirun gets
    exactly the container's args (one argv entry each, spaces kept) once the workers are Ready,
    and does not run when the wait fails (the launcher exits non-zero: the job fails)."""
    import subprocess

    calls = tmp_path / "calls"
    kubectl, mpirun = tmp_path / "kubectl", tmp_path / "mpirun"
    kubectl.write_text(f'#!/bin/sh\necho "$@" >>{calls}\nexit "${{KUBECTL_EXIT:-0}}"\n')
    mpirun.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
    kubectl.chmod(0o755)
    mpirun.chmod(0o755)
    job = k8s.mpi_job("hvd", IMAGE, "components.train", ["--splits", "s3://b/my splits"], workers=2)
    (c,) = pods(job)["Launcher"]["containers"]
    script = c["command"][2].replace(k8s.MPI_KUBECTL, str(kubectl))
    argv = [*c["command"][:2], script, str(mpirun), *c["args"][1:]]  # the stand-in as $0
    ok = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == c["args"][1:]
    assert (
        calls.read_text() == "wait --for=condition=Ready --timeout=900s pod/hvd-worker-0 pod/hvd-worker-1\n"
    )
    env = {"KUBECTL_EXIT": "1", "PATH": "/usr/bin:/bin"}
    failed = subprocess.run(argv, capture_output=True, text=True, timeout=10, env=env)
    assert failed.returncode == 1 and failed.stdout == ""


def test_inference_service_standard_mode_v2_with_autoscaling():
    isvc = k8s.inference_service("taxi-fare", "s3://mlpipeline/models/1", min_replicas=2, max_replicas=5)
    ann = isvc["metadata"]["annotations"]
    assert ann["serving.kserve.io/deploymentMode"] == "Standard"
    assert ann["serving.kserve.io/autoscalerClass"] == "hpa"
    pred = isvc["spec"]["predictor"]
    assert (pred["minReplicas"], pred["maxReplicas"]) == (2, 5)
    model = pred["model"]
    assert model["protocolVersion"] == "v2" and model["runtime"] == "fareflow-server"
    assert model["modelFormat"] == {"name": "fareflow"} and model["storageUri"] == "s3://mlpipeline/models/1"
    assert model["securityContext"]["readOnlyRootFilesystem"] is True
    assert pred["serviceAccountName"] == "fareflow-serving"


def test_autoscaling_metric_follows_the_deployment_mode():
    """KServe v0.21 validates scaleMetric per autoscaler: HPA (Standard) cpu/memory, KPA
    (Knative) concurrency/rps; a cpu InferenceService in Knative mode is refused by its webhook."""
    standard = k8s.inference_service("x", "s3://b/m")["spec"]["predictor"]
    assert (standard["scaleMetric"], standard["scaleTarget"]) == ("cpu", 70)
    kn = k8s.inference_service("x", "s3://b/m", deployment_mode="Knative", min_replicas=0)["spec"][
        "predictor"
    ]
    assert (kn["scaleMetric"], kn["scaleTarget"]) == ("concurrency", 10)
    rps = k8s.inference_service("x", "s3://b/m", deployment_mode="Knative", scale_metric="rps")
    assert rps["spec"]["predictor"]["scaleMetric"] == "rps"
    memory = k8s.inference_service("x", "s3://b/m", scale_metric="memory", scale_target=80)["spec"][
        "predictor"
    ]
    assert (memory["scaleMetric"], memory["scaleTarget"]) == ("memory", 80)
    # KServe's HPA reconciler adds a memory metric only with a scaleTarget (an HPA without metrics
    # is defaulted to 80 % CPU by the API server), and its webhook refuses any HPA target over 100.
    with pytest.raises(UserError, match="scale_metric memory: expected a scale_target"):
        k8s.inference_service("x", "s3://b/m", scale_metric="memory")
    with pytest.raises(UserError, match=r"scale_target=101: expected \[1, 100\] \(% of the memory request\)"):
        k8s.inference_service("x", "s3://b/m", scale_metric="memory", scale_target=101)
    big = k8s.inference_service(
        "x", "s3://b/m", deployment_mode="Knative", scale_metric="concurrency", scale_target=500
    )
    assert big["spec"]["predictor"]["scaleTarget"] == 500  # KPA targets are counts, not %
    with pytest.raises(
        UserError, match=r"scale_metric 'cpu': expected one of \('concurrency', 'rps'\) in Knative"
    ):
        k8s.inference_service("x", "s3://b/m", deployment_mode="Knative", scale_metric="cpu")
    with pytest.raises(UserError, match="scale_metric 'concurrency'.*Standard"):
        k8s.inference_service("x", "s3://b/m", scale_metric="concurrency")
    with pytest.raises(UserError, match=r"scale_target=150: expected \[1, 100\]"):
        k8s.inference_service("x", "s3://b/m", scale_target=150)
    with pytest.raises(UserError, match="scale_target=0: expected >= 1"):
        k8s.inference_service("x", "s3://b/m", deployment_mode="Knative", scale_metric="rps", scale_target=0)


def test_knative_mode_allows_scale_to_zero_but_standard_does_not():
    isvc = k8s.inference_service("x", "s3://b/m", deployment_mode="Knative", min_replicas=0)
    assert isvc["spec"]["predictor"]["minReplicas"] == 0
    assert "serving.kserve.io/autoscalerClass" not in isvc["metadata"]["annotations"]
    with pytest.raises(UserError, match="scale to zero needs the Knative mode"):
        k8s.inference_service("x", "s3://b/m", min_replicas=0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: k8s.pytorch_job("Bad_Name", IMAGE, "m"), "DNS-1123"),
        (lambda: k8s.pytorch_job("t", IMAGE, "m", workers=-1), "workers"),
        (lambda: k8s.pytorch_job("t", IMAGE, "m", nproc_per_node=4, gpu=k8s.GpuScheduling(2)), "exceeds"),
        (lambda: k8s.mpi_job("t", IMAGE, "m", workers=0), "workers"),
        (lambda: k8s.mpi_job("t", IMAGE, "m", slots_per_worker=0), "slots_per_worker"),
        (lambda: k8s.mpi_job("t", IMAGE, "m", workers_ready_timeout_s=0), "workers_ready_timeout_s"),
        (lambda: k8s.mpi_job("Bad_Name", IMAGE, "m"), "DNS-1123"),
        # KServe's IsvcNameFmt is [a-z]([-a-z0-9]*[a-z0-9])?: a leading digit is refused by its webhook
        (lambda: k8s.inference_service("1model", "s3://b/m"), "starts with a letter"),
        (lambda: k8s.pytorch_job("9train", IMAGE, "m"), "starts with a letter"),
        (lambda: k8s.GpuScheduling(gpus_per_pod=0), "gpus_per_pod"),
        (lambda: k8s.inference_service("x", "s3://b/m", protocol="v3"), "protocol"),
        (lambda: k8s.inference_service("x", "/local/path"), "storage_uri"),
        (lambda: k8s.inference_service("x", "s3://b/m", min_replicas=3, max_replicas=2), "max_replicas"),
    ],
)
def test_bad_settings_are_user_errors(call, message):
    with pytest.raises(UserError, match=message):
        call()


def test_dry_run_prints_yaml(capsys):
    assert (
        k8s.main(["pytorchjob", "--name", "t", "--workers", "2", "--gpus", "1", "--", "--epochs", "1"]) == 0
    )
    (doc,) = list(yaml.safe_load_all(capsys.readouterr().out))
    assert doc["kind"] == "PyTorchJob" and doc["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2
    assert doc["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"] == [
        "--epochs",
        "1",
    ]


@pytest.fixture
def api():
    return FakeCustomObjects()


def cond(type_, status="True", **kw):
    return {"conditions": [{"type": type_, "status": status, **kw}]}


def test_apply_creates_then_patches(api):
    job = k8s.pytorch_job("t", IMAGE, "m")
    k8s_api.apply(job, api=api)
    k8s_api.apply(job, api=api)
    assert api.calls == ["create", "create", "patch"]  # the second create answers 409
    assert ("kubeflow.org", "v1", "fareflow", "pytorchjobs", "t") in api.store


def test_get_and_delete_missing_objects(api):
    assert k8s_api.get("MPIJob", "nope", "fareflow", api=api) is None
    assert k8s_api.delete("MPIJob", "nope", "fareflow", api=api) is False
    k8s_api.apply(k8s.mpi_job("h", IMAGE, "m"), api=api)
    assert k8s_api.delete("MPIJob", "h", "fareflow", api=api) is True


def test_wait_returns_when_job_succeeds(api):
    k8s_api.apply(k8s.pytorch_job("t", IMAGE, "m"), api=api)
    api.status_script = [cond("Created"), cond("Running"), cond("Succeeded")]
    sleeps = []
    obj = k8s_api.wait("PyTorchJob", "t", "fareflow", poll=1, api=api, sleep=sleeps.append)
    assert k8s_api.condition(obj, "Succeeded") and len(sleeps) == 2


def test_wait_raises_when_job_fails(api):
    k8s_api.apply(k8s.pytorch_job("t", IMAGE, "m"), api=api)
    api.status_script = [cond("Failed", reason="BackoffLimitExceeded", message="master failed")]
    with pytest.raises(UserError, match="Failed: BackoffLimitExceeded master failed"):
        k8s_api.wait("PyTorchJob", "t", "fareflow", api=api, sleep=lambda s: None)


def test_wait_times_out_on_not_ready_inference_service(api):
    k8s_api.apply(k8s.inference_service("isvc", "s3://b/m"), api=api)
    api.status_script = [cond("Ready", status="False")] * 5
    now = iter(range(100))
    with pytest.raises(UserError, match="no Ready condition after 3s"):
        k8s_api.wait(
            "InferenceService",
            "isvc",
            "fareflow",
            timeout=3,
            api=api,
            sleep=lambda s: None,
            clock=lambda: next(now),
        )


def test_unknown_kind_is_a_user_error(api):
    with pytest.raises(UserError, match="kind 'Deployment'"):
        k8s_api.get("Deployment", "x", "fareflow", api=api)


def test_pytorch_job_fails_fast_on_errors_and_restarts_only_killed_replicas():
    job = k8s.pytorch_job("t", IMAGE, "m", workers=2)
    assert {spec["restartPolicy"] for spec in job["spec"]["pytorchReplicaSpecs"].values()} == {"ExitCode"}


ISVC_URI = "s3://b/models/v2/"


def isvc_ready(api, uri=ISVC_URI, mode="Standard"):
    k8s_api.apply(k8s.inference_service("isvc", uri, deployment_mode=mode), api=api)
    api.status_script = [cond("Ready")] * 500


def wait_isvc(api, apps=None, timeout=30):
    now = iter(range(1000))
    return k8s_api.wait(
        "InferenceService", "isvc", "fareflow", timeout=timeout, api=api, apps_api=apps,
        sleep=lambda s: None, clock=lambda: next(now),
    )  # fmt: skip


def test_generation_observed_compares_the_objects_own_counters():
    assert k8s_api.generation_observed({"metadata": {"generation": 3}, "status": {"observedGeneration": 3}})
    assert not k8s_api.generation_observed(
        {"metadata": {"generation": 3}, "status": {"observedGeneration": 2}}
    )
    assert not k8s_api.generation_observed({"metadata": {"generation": 1}, "status": {}})


def test_wait_on_a_redeploy_ignores_ready_until_the_predictor_runs_the_new_model(api):
    """Ready=True from the previous model (its Deployment still Available) is not the answer."""
    isvc_ready(api)
    old = deployment("isvc-predictor", "s3://b/models/v1/", generation=4, observed=4)
    not_seen = deployment("isvc-predictor", ISVC_URI, generation=5, observed=4)
    rolling = deployment("isvc-predictor", ISVC_URI, generation=5, observed=5, replicas=2, updated=1, total=3)
    done = deployment("isvc-predictor", ISVC_URI, generation=5, observed=5, replicas=2)
    apps = FakeAppsV1(script=[old, old, not_seen, rolling, done])
    obj = wait_isvc(api, apps)
    assert k8s_api.condition(obj, "Ready") and apps.reads == 5


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (deployment("isvc-predictor", "s3://b/models/v1/"), "does not run storageUri s3://b/models/v2/ yet"),
        (deployment("isvc-predictor", ISVC_URI, generation=2, observed=1), "observedGeneration < generation"),
        (deployment("isvc-predictor", ISVC_URI, replicas=2, updated=2, available=1), "1 available"),
        (deployment("isvc-predictor", ISVC_URI, replicas=1, updated=1, total=2), "1 old"),
    ],
)
def test_wait_times_out_naming_what_the_rollout_lacks(api, state, message):
    isvc_ready(api)
    with pytest.raises(UserError, match=f"Ready but not rolled out after 30s.*{message}"):
        wait_isvc(api, FakeAppsV1({("fareflow", "isvc-predictor"): state}))


def test_wait_in_knative_mode_checks_the_knative_service(api):
    isvc_ready(api, mode="Knative")
    key = ("serving.knative.dev", "v1", "fareflow", "services", "isvc-predictor")
    ksvc = {
        "metadata": {"name": "isvc-predictor", "generation": 2},
        "spec": {"template": {"metadata": {"annotations": {k8s_api.SOURCE_URI_ANNOTATION: ISVC_URI}}}},
        "status": {**cond("Ready"), "observedGeneration": 1},
    }
    api.store[key] = ksvc
    with pytest.raises(UserError, match="Knative Service fareflow/isvc-predictor: observedGeneration"):
        wait_isvc(api)
    ksvc["status"].update(observedGeneration=2, latestCreatedRevisionName="r2", latestReadyRevisionName="r1")
    with pytest.raises(UserError, match="revision r2 not ready"):
        wait_isvc(api)
    ksvc["status"]["latestReadyRevisionName"] = "r2"
    assert k8s_api.condition(wait_isvc(api), "Ready")


def test_dry_run_cli_prints_a_memory_scaled_inference_service(capsys):
    """``python -m components.common.k8s inferenceservice``: memory scaling needs --scale-target
    (the builder refuses memory without one), which reaches the predictor."""
    import yaml

    from components.common.k8s import cli

    assert (
        cli.main(["inferenceservice", "--name", "x", "--scale-metric", "memory", "--scale-target", "75"]) == 0
    )
    pred = yaml.safe_load(capsys.readouterr().out)["spec"]["predictor"]
    assert (pred["scaleMetric"], pred["scaleTarget"]) == ("memory", 75)
    with pytest.raises(UserError, match="scale_metric memory: expected a scale_target"):
        cli.main(["inferenceservice", "--name", "x", "--scale-metric", "memory"])


def test_predictor_service_names_fit_in_63_characters():
    """KServe names the predictor Service NAME[-PREDICTOR]-predictor without checking its length:
    the builder refuses a name whose Services would not fit (53 alone, 40 beside a canary named
    like the rollout's m-<10 hex>)."""
    assert k8s.inference_service("a" * 53, "s3://b/m")["metadata"]["name"] == "a" * 53
    with pytest.raises(
        UserError, match="would be 64 characters, over Kubernetes' 63; expected a name of at most 53"
    ):
        k8s.inference_service("a" * 54, "s3://b/m")
    canary = k8s.Canary("m-0123456789", "s3://b/new", 20)
    k8s.inference_service("a" * 40, "s3://b/m", canary=canary)
    with pytest.raises(UserError, match="at most 40"):
        k8s.inference_service("a" * 41, "s3://b/m", canary=canary)
