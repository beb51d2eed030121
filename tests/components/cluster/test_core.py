"""Cluster-mode steps (components.cluster: core, models, training, serving) against in-memory API fakes and a moto S3."""

import json

import pytest
import yaml

from components.cluster import core, models, serving, training
from components.common import k8s_api
from components.common.errors import UserError
from tests.k8s_fakes import FakeAppsV1, FakeCoreV1, FakeCustomObjects, deployment
from tests.manifests import k8s_schema

SPLITS = "minio://mlpipeline/v2/artifacts/fareflow-taxi-fare/run-1/sample/123/splits"


def cond(type_, status="True", **kw):
    return {"conditions": [{"type": type_, "status": status, **kw}]}


def test_s3_uri_maps_kfp_object_store_uris():
    assert core.s3_uri(SPLITS) == "s3://mlpipeline/v2/artifacts/fareflow-taxi-fare/run-1/sample/123/splits"
    assert core.s3_uri("s3://bucket/key/") == "s3://bucket/key"
    for bad in ("/tmp/pipeline_root/x", "gs://b/k", "minio://bucket-only"):
        with pytest.raises(UserError, match="expected minio:// or s3://"):
            core.s3_uri(bad)


def test_settings_from_config_map_are_typed_and_checked():
    assert core.ClusterSettings.from_config_map(None, "fareflow") == core.ClusterSettings()
    s = core.ClusterSettings.from_config_map(
        {
            "IMAGE_REGISTRY": "registry.example/ff/",
            "IMAGE_TAG": "1.2.3",
            "TRAIN_GPUS_PER_POD": "2",
            "GPU_NODE_SELECTOR": "pool=gpu, zone=a",
            "SERVING_MIN_REPLICAS": "2",
            "AWS_ENDPOINT_URL": "http://seaweedfs.kubeflow:9000",
        },
        "fareflow",
    )
    assert s.image("trainer") == "registry.example/ff/trainer:1.2.3"
    assert s.train_gpus_per_pod == 2 and s.serving_min_replicas == 2
    assert s.gpu(2).node_selector == {"pool": "gpu", "zone": "a"} and s.gpu(0) is None
    with pytest.raises(
        UserError, match=r"fareflow/fareflow-cluster: TRAIN_GPUS_PER_POD='two': expected an integer"
    ):
        core.ClusterSettings.from_config_map({"TRAIN_GPUS_PER_POD": "two"}, "fareflow")
    with pytest.raises(UserError, match="GPU_NODE_SELECTOR"):
        core.ClusterSettings.from_config_map({"GPU_NODE_SELECTOR": "gpu"}, "fareflow")
    with pytest.raises(UserError, match="latest"):
        core.ClusterSettings.from_config_map({"IMAGE_TAG": "latest"}, "fareflow")


@pytest.mark.parametrize("key", ["IMAGE_TAG", "CUDA_IMAGE_TAG"])
@pytest.mark.parametrize("tag", ["", "  ", "latest", "1.0:x", "-bad"])
def test_image_tags_must_pin_an_image(key, tag):
    """An empty IMAGE_TAG would build `trainer:` -- an engine reads that as latest."""
    with pytest.raises(UserError, match=f"fareflow/fareflow-cluster: {key}=.*expected a pinned image tag"):
        core.ClusterSettings.from_config_map({key: tag}, "fareflow")
    field = {"IMAGE_TAG": "image_tag", "CUDA_IMAGE_TAG": "cuda_image_tag"}[key]
    if tag.strip():  # built directly too (an empty CUDA tag there means the default)
        with pytest.raises(UserError, match=key):
            core.ClusterSettings(**{field: tag})


def test_cuda_image_tag_defaults_to_the_tag_plus_cuda():
    assert core.ClusterSettings().image("trainer", cuda=True) == "ghcr.io/fareflow/trainer:0.1.0-cuda"
    s = core.ClusterSettings.from_config_map({"IMAGE_TAG": "2.0", "CUDA_IMAGE_TAG": "2.0-cu124"}, "ff")
    assert s.image("trainer", cuda=True).endswith(":2.0-cu124") and s.image("trainer").endswith(":2.0")


def test_serving_autoscaling_and_region_settings():
    s = core.ClusterSettings.from_config_map(
        {"SERVING_DEPLOYMENT_MODE": "Knative", "SERVING_MIN_REPLICAS": "0", "SERVING_SCALE_METRIC": "rps",
         "SERVING_SCALE_TARGET": "50", "AWS_DEFAULT_REGION": "eu-west-1"},
        "fareflow",
    )  # fmt: skip
    pred = serving.inference_service_object(s, "taxi-fare", "s3://b/m")["spec"]["predictor"]
    assert (pred["minReplicas"], pred["scaleMetric"], pred["scaleTarget"]) == (0, "rps", 50)
    job = training.train_job_object(s, "t", "s3://b/s", "s3://b/m", training.TrainParams(), workers=1)
    env = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"} in env
    knative = core.ClusterSettings(serving_deployment_mode="Knative", serving_min_replicas=0)
    pred = serving.inference_service_object(knative, "taxi-fare", "s3://b/m")["spec"]["predictor"]
    assert pred["scaleMetric"] == "concurrency"
    with pytest.raises(UserError, match="scale_metric 'cpu'"):
        serving.inference_service_object(
            core.ClusterSettings(serving_deployment_mode="Knative", serving_scale_metric="cpu"),
            "n",
            "s3://b/m",
        )


def test_settings_are_read_from_the_config_map():
    api = FakeCoreV1({("team", core.CONFIG_MAP): {"IMAGE_TAG": "9.9.9"}})
    assert core.load_settings("team", api=api).image("server").endswith(":9.9.9")
    assert core.load_settings("other", api=api) == core.ClusterSettings(namespace="other")


def test_train_job_args_parse_back_to_every_training_setting():
    """Each TrainParams field reaches the pods: the args, parsed by the train step's own spec,
    are exactly the config the params make (a dropped or misspelt flag fails here)."""
    from components.common.configspec import parse
    from components.train.config import TrainConfig

    params = training.TrainParams(epochs=5, batch_size=333, learning_rate=0.0123, hidden="64,8", seed=9,
                              weight_decay=0.05, dropout=0.25)  # fmt: skip
    assert all(getattr(params, f) != getattr(training.TrainParams(), f) for f in vars(params)), (
        "every field off its default"
    )
    job = training.train_job_object(core.ClusterSettings(), "t", "s3://b/s", "s3://b/m", params, workers=2)
    for spec in job["spec"]["pytorchReplicaSpecs"].values():
        (c,) = spec["template"]["spec"]["containers"]
        got = parse(TrainConfig, c["args"])
        assert got == params.config("s3://b/s", "s3://b/m", "cpu")
        assert (got.epochs, got.batch_size, got.learning_rate, got.hidden, got.seed, got.weight_decay, got.dropout) == (
            5, 333, 0.0123, (64, 8), 9, 0.05, 0.25,
        )  # fmt: skip


def test_train_job_object_runs_the_train_module_on_the_splits():
    settings = core.ClusterSettings(aws_endpoint_url="http://seaweedfs.kubeflow:9000")
    splits = core.s3_uri(SPLITS)
    name = core.job_name("taxi-fare-train", splits, "x")
    out = models.model_output_uri(splits, name)
    assert out == f"s3://mlpipeline/fareflow/models/{name}"
    job = training.train_job_object(settings, name, splits, out, training.TrainParams(epochs=3), workers=3)
    k8s_schema.validate(job)
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 2
    (c,) = specs["Master"]["template"]["spec"]["containers"]
    assert c["image"] == "ghcr.io/fareflow/trainer:0.1.0"
    assert c["command"] == ["torchrun", "--module", "components.train"]
    assert c["args"][:4] == ["--splits", splits, "--output", out]
    assert c["args"][c["args"].index("--epochs") + 1] == "3"
    assert c["envFrom"] == [{"secretRef": {"name": "fareflow-s3", "optional": True}}]
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://seaweedfs.kubeflow:9000"} in c["env"]
    assert c["args"][c["args"].index("--device") + 1] == "cpu"
    assert "nodeSelector" not in specs["Master"]["template"]["spec"]
    single = training.train_job_object(settings, name, splits, out, training.TrainParams(), workers=1)
    assert "Worker" not in single["spec"]["pytorchReplicaSpecs"]
    with pytest.raises(UserError, match="workers"):
        training.train_job_object(settings, name, splits, out, training.TrainParams(), workers=0)


def test_train_job_on_a_gpu_pool_gets_one_process_per_gpu():
    settings = core.ClusterSettings(train_gpus_per_pod=2)
    job = training.train_job_object(settings, "t", "s3://b/s", "s3://b/m", training.TrainParams(), workers=2)
    pod = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    assert job["spec"]["nprocPerNode"] == "2"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    (c,) = pod["containers"]
    # The CUDA build, and a CUDA request: a pod whose torch has no CUDA fails instead of using CPU.
    assert c["image"] == "ghcr.io/fareflow/trainer:0.1.0-cuda"
    assert c["args"][c["args"].index("--device") + 1] == "cuda"


def test_job_names_are_stable_dns_labels():
    a = core.job_name("taxi-fare-train", "s3://b/x", "--epochs", "8")
    assert a == core.job_name("taxi-fare-train", "s3://b/x", "--epochs", "8")
    assert a != core.job_name("taxi-fare-train", "s3://b/y", "--epochs", "8")
    assert len(a) <= 63 and a.startswith("taxi-fare-train-")


def test_inference_service_object_serves_the_model_artifact():
    settings = core.ClusterSettings(serving_min_replicas=2, serving_max_replicas=4)
    isvc = serving.inference_service_object(settings, "taxi-fare", "s3://mlpipeline/v2/artifacts/x/model")
    k8s_schema.validate(isvc)
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == "s3://mlpipeline/v2/artifacts/x/model/"
    assert (
        predictor["model"]["runtime"] == "fareflow-server"
        and predictor["serviceAccountName"] == "fareflow-serving"
    )
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 4)


def _job(name="t"):
    return training.train_job_object(
        core.ClusterSettings(), name, "s3://b/s", "s3://b/m", training.TrainParams(), 2
    )


# Creating, waiting through to Succeeded, reusing a succeeded job and replacing a failed one run
# against the real Training Operator in the k8s tier (tests/k8s/test_training_operator.py). The
# fake stays for what kwok cannot produce: the pods' log lines in the failure message.


def test_a_failed_job_raises_with_its_reason_and_pod_logs():
    api = FakeCustomObjects()
    api.status_script = [cond("Created"), cond("Failed", reason="PyTorchJobFailed", message="Master failed")]
    logs = EventsCoreV1(pod_logs={"t-master-0": "epoch 1\nfareflow train: error: splits: no _SUCCESS"})
    with pytest.raises(UserError) as err:
        training.run_train_job(_job(), timeout=60, api=api, core_api=logs, poll=0)
    text = str(err.value)
    assert "PyTorchJob fareflow/t Failed: PyTorchJobFailed Master failed" in text
    assert "t-master-0" in text and "no _SUCCESS" in text


def test_deploy_waits_until_ready_and_reports_the_endpoints():
    api = FakeCustomObjects()
    api.status_script = [cond("Ready", status="False"), {**cond("Ready"), "url": "http://taxi-fare.fareflow"}]
    apps = FakeAppsV1(
        {("fareflow", "taxi-fare-predictor"): deployment("taxi-fare-predictor", "s3://b/model/")}
    )
    isvc = serving.inference_service_object(core.ClusterSettings(), "taxi-fare", "s3://b/model")
    summary = serving.deploy(isvc, timeout=60, api=api, apps_api=apps, poll=0)
    assert summary["url"] == "http://taxi-fare.fareflow" and summary["storage_uri"] == "s3://b/model/"
    assert summary["v2_infer"] == "/v2/models/taxi-fare/infer"


def test_deploy_names_the_model_version_it_serves(tmp_path):
    (tmp_path / "model.json").write_text('{"format": "fareflow", "model_version": "3f1c0e9a2b7d"}')
    version = models.read_model_version(str(tmp_path))
    assert version == "3f1c0e9a2b7d"
    api = FakeCustomObjects()
    api.status_script = [{**cond("Ready"), "url": "http://taxi-fare.fareflow"}]
    apps = FakeAppsV1(
        {("fareflow", "taxi-fare-predictor"): deployment("taxi-fare-predictor", "s3://b/model/")}
    )
    isvc = serving.inference_service_object(
        core.ClusterSettings(), "taxi-fare", "s3://b/model", model_version=version
    )
    assert isvc["metadata"]["labels"][serving.MODEL_VERSION_LABEL] == "3f1c0e9a2b7d"
    assert serving.deploy(isvc, timeout=60, api=api, apps_api=apps, poll=0)["model_version"] == "3f1c0e9a2b7d"
    # a model from before versions existed: no label, and the summary says None
    (tmp_path / "model.json").write_text('{"format": "fareflow"}')
    assert models.read_model_version(str(tmp_path)) is None
    plain = serving.inference_service_object(core.ClusterSettings(), "taxi-fare", "s3://b/model")
    assert serving.MODEL_VERSION_LABEL not in plain["metadata"]["labels"]
    with pytest.raises(UserError, match=r"nope/model\.json: missing \(not a model directory\)"):
        models.read_model_version(str(tmp_path / "nope"))


def test_redeploy_returns_only_once_the_new_model_is_rolled_out():
    """A new model version patches the same object; the old one's Ready=True is not enough."""
    api = FakeCustomObjects()
    old = serving.inference_service_object(core.ClusterSettings(), "taxi-fare", "s3://b/model-1")
    k8s_api.apply(old, api=api)
    new = serving.inference_service_object(core.ClusterSettings(), "taxi-fare", "s3://b/model-2")
    api.status_script = [cond("Ready")] * 4
    apps = FakeAppsV1(
        script=[
            deployment("taxi-fare-predictor", "s3://b/model-1/", generation=1, observed=1),
            deployment(
                "taxi-fare-predictor", "s3://b/model-2/", generation=2, observed=2, updated=0, total=1
            ),
            deployment("taxi-fare-predictor", "s3://b/model-2/", generation=2, observed=2),
        ]
    )
    serving.deploy(new, timeout=60, api=api, apps_api=apps, poll=0)
    assert api.calls == ["create", "create", "patch"] and apps.reads == 3
    assert (
        api.store[("serving.kserve.io", "v1beta1", "fareflow", "inferenceservices", "taxi-fare")]["metadata"][
            "generation"
        ]
        == 2
    )


def test_copy_model_dir_from_s3(s3, tmp_path):
    bucket = s3.bucket("mlpipeline")
    meta = {"format": "fareflow", "metrics": {"test_rmse": 2.5, "note": "x"}}
    s3.put(bucket, "fareflow/models/j/model.json", json.dumps(meta).encode())
    s3.put(bucket, "fareflow/models/j/model.pt", b"weights")
    s3.put(bucket, "fareflow/models/j/report/index.html", b"<html/>")
    dest = tmp_path / "model"
    files = models.copy_model_dir("s3://mlpipeline/fareflow/models/j", str(dest))
    assert files == ["model.json", "model.pt", "report/index.html"]
    assert (dest / "model.pt").read_bytes() == b"weights"
    assert models.read_model_metrics(str(dest)) == {"test_rmse": 2.5, "note": "x"}
    with pytest.raises(UserError, match="no model.json"):
        models.copy_model_dir("s3://mlpipeline/fareflow/models/missing", str(tmp_path / "m2"))


def test_copy_model_dir_refuses_a_model_train_has_not_finished_writing(s3, tmp_path):
    bucket = s3.bucket("mlpipeline")
    # cut off after model.json, before _SUCCESS: the S3 write leaves _INCOMPLETE naming train
    s3.put(bucket, "fareflow/models/k/_INCOMPLETE", json.dumps({"step": "train"}).encode())
    s3.put(bucket, "fareflow/models/k/model.json", json.dumps({"format": "fareflow"}).encode())
    with pytest.raises(UserError, match="the train step has not finished writing it"):
        models.copy_model_dir("s3://mlpipeline/fareflow/models/k", str(tmp_path / "k"))
    assert not (tmp_path / "k").exists()
    # another step's output is refused too; a finished train output is copied with its marker
    s3.put(bucket, "fareflow/models/q/_SUCCESS", json.dumps({"step": "quality"}).encode())
    s3.put(bucket, "fareflow/models/q/model.json", b"{}")
    with pytest.raises(UserError, match="expected the output of the train step"):
        models.copy_model_dir("s3://mlpipeline/fareflow/models/q", str(tmp_path / "q"))
    s3.put(bucket, "fareflow/models/k/_SUCCESS", json.dumps({"step": "train", "format": "fareflow"}).encode())
    s3.client.delete_object(Bucket="mlpipeline", Key="fareflow/models/k/_INCOMPLETE")
    files = models.copy_model_dir("s3://mlpipeline/fareflow/models/k", str(tmp_path / "k"))
    assert files == ["_SUCCESS", "model.json"]


def test_rendered_objects_print_as_plain_yaml():
    text = yaml.safe_dump([_job(), serving.inference_service_object(core.ClusterSettings(), "n", "s3://b/m")])
    assert "&id" not in text


def test_train_max_restarts_from_the_config_map_makes_the_job_elastic():
    settings = core.ClusterSettings.from_config_map({"TRAIN_MAX_RESTARTS": "3"}, "fareflow")
    assert settings.train_max_restarts == 3
    job = training.train_job_object(
        settings,
        "t",
        "s3://b/s",
        "s3://b/m",
        training.TrainParams(),
        2,
        max_restarts=settings.train_max_restarts,
    )
    assert job["spec"]["elasticPolicy"]["maxRestarts"] == 3
    assert core.ClusterSettings.from_config_map({}, "fareflow").train_max_restarts == 0
    with pytest.raises(UserError, match="TRAIN_MAX_RESTARTS"):
        core.ClusterSettings.from_config_map({"TRAIN_MAX_RESTARTS": "-1"}, "fareflow")


# --- Horovod: the MPIJob path -----------------------------------------------------------------


def test_horovod_trains_as_an_mpijob_writing_the_same_model_directory():
    from components.common.configspec import parse
    from components.train.config import TrainConfig

    settings = core.ClusterSettings(aws_endpoint_url="http://seaweedfs.kubeflow:9000", aws_region="us-east-1")
    splits = core.s3_uri(SPLITS)
    params = training.TrainParams(epochs=3)
    ddp_name = training.train_job_name(splits, params, 2)
    name = training.train_job_name(splits, params, 2, "horovod")
    assert name != ddp_name and name == training.train_job_name(splits, params, 2, "horovod")
    out = models.model_output_uri(splits, name)
    assert out == f"s3://mlpipeline/fareflow/models/{name}"  # the PyTorchJob's scheme
    job = training.train_job_object(settings, name, splits, out, params, workers=2, backend="horovod")
    k8s_schema.validate(job)
    assert job["kind"] == "MPIJob" and job["metadata"]["namespace"] == "fareflow"
    specs = job["spec"]["mpiReplicaSpecs"]
    assert specs["Worker"]["replicas"] == 2 and job["spec"]["slotsPerWorker"] == 1
    (launcher,) = specs["Launcher"]["template"]["spec"]["containers"]
    assert launcher["image"] == "ghcr.io/fareflow/trainer:0.1.0"
    args = launcher["args"]
    assert args[:3] == ["mpirun", "-np", "2"]
    train_args = args[args.index("components.train") + 1 :]
    got = parse(TrainConfig, train_args)
    assert got == params.config(splits, out, "cpu", "horovod")
    assert (got.splits_uri, got.output_uri, got.backend, got.device, got.epochs) == (
        splits,
        out,
        "horovod",
        "cpu",
        3,
    )
    (worker,) = specs["Worker"]["template"]["spec"]["containers"]
    assert worker["envFrom"] == [{"secretRef": {"name": "fareflow-s3", "optional": True}}]
    env = {e["name"]: e["value"] for e in worker["env"]}
    assert (
        env["AWS_ENDPOINT_URL"] == "http://seaweedfs.kubeflow:9000"
        and env["AWS_DEFAULT_REGION"] == "us-east-1"
    )
    assert "envFrom" not in launcher
    assert specs["Worker"]["template"]["spec"]["serviceAccountName"] == "fareflow-trainer"
    # The DDP job of the same inputs is a PyTorchJob whose ranks get --backend ddp.
    ddp = training.train_job_object(settings, ddp_name, splits, out, params, workers=2)
    assert ddp["kind"] == "PyTorchJob"
    master_args = ddp["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"]
    assert parse(TrainConfig, master_args).backend == "ddp"


def test_horovod_on_the_gpu_pool_runs_one_rank_per_gpu_on_cuda_workers():
    settings = core.ClusterSettings(train_gpus_per_pod=2, gpu_node_selector={"fareflow.io/pool": "gpu"})
    job = training.train_job_object(
        settings, "h", "s3://b/s", "s3://b/m", training.TrainParams(), 3, backend="horovod"
    )
    specs = job["spec"]["mpiReplicaSpecs"]
    assert job["spec"]["slotsPerWorker"] == 2
    (launcher,) = specs["Launcher"]["template"]["spec"]["containers"]
    assert launcher["args"][:3] == ["mpirun", "-np", "6"]
    assert launcher["args"][launcher["args"].index("--device") + 1] == "cuda"
    worker = specs["Worker"]["template"]["spec"]
    assert worker["nodeSelector"] == {"fareflow.io/pool": "gpu"}
    assert worker["containers"][0]["image"] == "ghcr.io/fareflow/trainer:0.1.0-cuda"
    assert worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "nodeSelector" not in specs["Launcher"]["template"]["spec"]


def test_unknown_backends_and_elastic_horovod_are_user_errors():
    settings = core.ClusterSettings()
    with pytest.raises(UserError, match=r"train_backend 'mpi': expected one of ddp, horovod"):
        training.train_job_object(
            settings, "t", "s3://b/s", "s3://b/m", training.TrainParams(), 2, backend="mpi"
        )
    with pytest.raises(UserError, match="train_backend 'tf'"):
        training.train_job_name("s3://b/s", training.TrainParams(), 2, "tf")
    with pytest.raises(UserError, match="TRAIN_MAX_RESTARTS=2: elastic training is a PyTorchJob feature"):
        training.train_job_object(
            settings, "t", "s3://b/s", "s3://b/m", training.TrainParams(), 2, 2, backend="horovod"
        )


class EventsCoreV1(FakeCoreV1):
    """FakeCoreV1 with the job's events (list_namespaced_event honours the field selector
    PodSecurityWatch sends: involvedObject.kind/name and type) and per-selector pod logs."""

    def __init__(self, events=(), pod_logs=None, pods_by_selector=None):
        super().__init__(pod_logs=pod_logs)
        self.events = list(events)
        self.pods_by_selector = pods_by_selector
        self.selectors: list[str] = []

    def list_namespaced_event(self, namespace, field_selector=None):
        from types import SimpleNamespace

        wanted = dict(kv.split("=", 1) for kv in (field_selector or "").split(",") if kv)
        fields = {"involvedObject.kind": "kind", "involvedObject.name": "name", "type": "type"}
        items = [e for e in self.events if all(e[fields[k]] == v for k, v in wanted.items())]
        return SimpleNamespace(
            items=[
                SimpleNamespace(
                    message=e["message"], type=e["type"],
                    involved_object=SimpleNamespace(kind=e["kind"], name=e["name"], uid=e.get("uid")),
                )
                for e in items
            ]
        )  # fmt: skip

    def list_namespaced_pod(self, namespace, label_selector=None):
        self.selectors.append(label_selector)
        if self.pods_by_selector is not None:
            from types import SimpleNamespace

            names = self.pods_by_selector.get(label_selector, [])
            return SimpleNamespace(
                items=[SimpleNamespace(metadata=SimpleNamespace(name=n), status=SimpleNamespace(conditions=[])) for n in names]
            )  # fmt: skip
        return super().list_namespaced_pod(namespace, label_selector)


# Training Operator v1.9.2's event when Pod Security refuses an MPIJob's launcher (message as
# the tier records it: tests/k8s/test_mpijob.py).
PSA_EVENT = (
    'launcher pod created failed: pods "h-launcher" is forbidden: violates PodSecurity "restricted:latest": '
    'allowPrivilegeEscalation != false (container "kubectl-delivery" must set '
    "securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "
    '"kubectl-delivery" must set securityContext.capabilities.drop=["ALL"])'
)


def _mpijob(name="h"):
    return training.train_job_object(
        core.ClusterSettings(), name, "s3://b/s", "s3://b/m", training.TrainParams(), 2, backend="horovod"
    )


def test_a_pod_security_refusal_ends_the_wait_with_the_namespace_and_the_fix():
    api = FakeCustomObjects()
    api.status_script = [cond("Created")] * 3
    events = EventsCoreV1(
        [
            {"kind": "MPIJob", "name": "h", "type": "Normal", "message": "MPIJob h is created."},
            {"kind": "MPIJob", "name": "h", "type": "Warning", "message": PSA_EVENT},
        ],
        pod_logs={},
    )
    with pytest.raises(UserError) as err:
        training.run_train_job(_mpijob(), timeout=3600, api=api, core_api=events, poll=0)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        'MPIJob fareflow/h: namespace fareflow enforces Pod Security "restricted:latest", which refuses pod h-launcher'
    )
    assert 'container "kubectl-delivery" must set securityContext.allowPrivilegeEscalation=false' in message
    assert "manifests/components/mpijob-baseline" in message
    assert (
        "kubectl label namespace fareflow pod-security.kubernetes.io/enforce=baseline --overwrite" in message
    )
    assert len(api.status_script) == 2, "ended on the first poll"


def test_other_jobs_events_and_a_replaced_jobs_old_events_do_not_end_the_wait():
    api = FakeCustomObjects()
    k8s_api.apply(_mpijob(), api=api)
    key = ("kubeflow.org", "v1", "fareflow", "mpijobs", "h")
    api.store[key]["metadata"]["uid"] = "uid-new"
    api.status_script = [cond("Created"), cond("Running"), cond("Succeeded")]
    events = EventsCoreV1(
        [
            {"kind": "MPIJob", "name": "other", "type": "Warning", "message": PSA_EVENT},
            {"kind": "PyTorchJob", "name": "h", "type": "Warning", "message": PSA_EVENT},
            {"kind": "MPIJob", "name": "h", "type": "Warning", "message": PSA_EVENT, "uid": "uid-old"},
            {
                "kind": "MPIJob",
                "name": "h",
                "type": "Warning",
                "message": "launcher pod created failed: quota",
            },
        ]
    )
    done = training.run_train_job(_mpijob(), timeout=60, api=api, core_api=events, poll=0)
    assert k8s_api.condition(done, "Succeeded")


def test_a_failed_mpijob_reports_the_launchers_logs():
    """mpirun gathers every rank's output in the launcher; the workers' own logs are empty."""
    api = FakeCustomObjects()
    api.status_script = [cond("Failed", reason="MPIJobFailed", message="MPIJob fareflow/h has failed")]
    launcher_selector = f"{training.JOB_NAME_LABEL}=h,{training.REPLICA_TYPE_LABEL}=launcher"
    logs = EventsCoreV1(
        pod_logs={"h-launcher": "[1,1]<stderr>:fareflow train: error: splits: no _SUCCESS", "h-worker-0": ""},
        pods_by_selector={launcher_selector: ["h-launcher"]},
    )
    with pytest.raises(UserError) as err:
        training.run_train_job(_mpijob(), timeout=60, api=api, core_api=logs, poll=0)
    first, *rest = str(err.value).splitlines()
    assert first == "MPIJob fareflow/h Failed: MPIJobFailed MPIJob fareflow/h has failed"
    assert "--- h-launcher (last 40 lines)" in rest and "h-worker-0" not in str(err.value)
    assert "no _SUCCESS" in rest[-1]
    assert logs.selectors[-1] == launcher_selector
