"""The pipeline compiles to IR YAML that Kubeflow Pipelines accepts."""

from __future__ import annotations

from pathlib import Path

import yaml

from components.common.images import COMPONENT_IMAGE, TRAINER_IMAGE
from pipelines.compile import compile_pipeline, main
from pipelines.taxi_fare import PIPELINE_NAME


def _pipeline_spec(text: str) -> dict:
    """The pipeline spec: the first YAML document (the second holds Kubernetes settings)."""
    return next(yaml.safe_load_all(text))


def test_compiled_pipeline_uses_project_image_without_kfp_install(tmp_path):
    path = compile_pipeline(str(tmp_path / "p.yaml"))
    spec = _pipeline_spec(Path(path).read_text())
    assert spec["pipelineInfo"]["name"] == PIPELINE_NAME
    executors = spec["deploymentSpec"]["executors"]
    assert executors, "no executors compiled"
    for name, executor in executors.items():
        container = executor["container"]
        # Cluster form: tuning trains in its task or drives its Job (trainer image); every other
        # task drives the cluster or the data from the component image (training runs in the
        # PyTorchJob's pods).
        assert container["image"] == (TRAINER_IMAGE if name == "exec-tune-job" else COMPONENT_IMAGE), name
        assert not container["image"].endswith(":latest")
        # install_kfp_package=False: no pip install of kfp at run time (cluster needs no network)
        assert "pip install" not in " ".join(container.get("command", [])), name
    assert "source" in spec["root"]["inputDefinitions"]["parameters"]


def test_compile_cli_writes_file(tmp_path, capsys):
    out = tmp_path / "sub" / "pipeline.yaml"
    assert main(["--output", str(out)]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out


def _task_names(spec: dict) -> set[str]:
    names = set(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        names |= set(comp.get("dag", {}).get("tasks", {}))
    return names


def _loops(spec: dict) -> dict[str, dict]:
    """The ParallelFor tasks (``parameterIterator``) by name, wherever they are in the DAG."""
    return {
        name: t
        for c in [spec["root"]] + list(spec["components"].values())
        for name, t in c.get("dag", {}).get("tasks", {}).items()
        if "parameterIterator" in t
    }


def test_cluster_compile_fans_quality_out_per_partition(tmp_path):
    spec = _pipeline_spec(
        Path(compile_pipeline(str(tmp_path / "fan.yaml"), quality_fan_out=True)).read_text()
    )
    names = _task_names(spec)
    assert {"quality-plan", "quality-partition", "quality-merge", "sample"} <= names
    assert "quality" not in names
    (loop,) = [
        t
        for t in _loops(spec).values()
        if "quality-plan" in t["parameterIterator"]["items"]["inputParameter"]
    ]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--quality-plan-Output"


def test_cluster_compile_fans_ingest_out_over_file_groups(tmp_path):
    """plan -> ParallelFor(one task per file group) -> merge, whose raw artifact quality reads
    and whose summary is the pipeline's ingest output; ingest_tasks (default 4) is the plan's."""
    spec = _pipeline_spec(Path(compile_pipeline(str(tmp_path / "fan.yaml"))).read_text())
    names = _task_names(spec)
    assert {"ingest-plan", "ingest-part", "ingest-merge"} <= names and "ingest" not in names
    ((loop_name, loop),) = [
        (n, t)
        for n, t in _loops(spec).items()
        if "ingest-plan" in t["parameterIterator"]["items"]["inputParameter"]
    ]
    assert loop["dependentTasks"] == ["ingest-plan"]
    loop_dag = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    part_inputs = loop_dag["ingest-part"]["inputs"]["parameters"]
    assert part_inputs["group"] == {"componentInputParameter": loop["parameterIterator"]["itemInput"]}
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["ingest-plan"]["inputs"]["parameters"]["tasks"] == {
        "componentInputParameter": "ingest_tasks"
    }
    assert spec["root"]["inputDefinitions"]["parameters"]["ingest_tasks"]["defaultValue"] == 4
    merge_in = tasks["ingest-merge"]["inputs"]["artifacts"]["parts"]["taskOutputArtifact"]
    assert merge_in == {
        "producerTask": loop_name,
        "outputArtifactKey": "pipelinechannel--ingest-part-part",
    }
    quality_in = tasks["quality-plan"]["inputs"]["artifacts"]["raw"]["taskOutputArtifact"]
    assert quality_in == {"producerTask": "ingest-merge", "outputArtifactKey": "raw"}
    assert spec["root"]["outputDefinitions"]["parameters"]["ingest"]
    assert "ingest-merge" in str(spec["root"]["dag"]["outputs"]["parameters"]["ingest"])


def test_local_form_runs_quality_and_ingest_in_one_task(tmp_path):
    spec = _pipeline_spec(
        Path(compile_pipeline(str(tmp_path / "one.yaml"), quality_fan_out=False, cluster=False)).read_text()
    )
    names = _task_names(spec)
    assert {"ingest", "quality", "sample"} <= names
    assert not names & {"quality-partition", "ingest-plan", "ingest-part", "ingest-merge"}
    assert not _loops(spec)
    assert (
        "ingest_tasks" in spec["root"]["inputDefinitions"]["parameters"]
    )  # one parameter list for both forms


def test_ingest_takes_s3_settings_from_an_optional_secret(tmp_path):
    from pipelines.taxi_fare import S3_ENV_KEYS, S3_SECRET

    docs = list(yaml.safe_load_all(Path(compile_pipeline(str(tmp_path / "p.yaml"))).read_text()))
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    ingest = {k: v for k, v in platform.items() if "ingest" in k}
    assert set(ingest) == {
        "exec-ingest-plan",
        "exec-ingest-part",
        "exec-ingest-merge",
    }  # all read or write S3
    for executor in ingest.values():
        envs = {kv["envVar"] for e in executor["secretAsEnv"] for kv in e["keyToEnv"]}
        assert envs == set(S3_ENV_KEYS)
        assert all(e["secretName"] == S3_SECRET and e.get("optional") for e in executor["secretAsEnv"])


def test_cluster_form_trains_as_a_pytorchjob_then_deploys(tmp_path):
    spec = _pipeline_spec(Path(compile_pipeline(str(tmp_path / "c.yaml"))).read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert {"train-job", "deploy"} <= set(tasks) and "train" not in tasks
    assert sorted(tasks["train-job"]["dependentTasks"]) == ["sample", "tune-job"]
    hp = tasks["train-job"]["inputs"]["parameters"]["learning_rate"]["taskOutputParameter"]
    assert hp == {"producerTask": "tune-job", "outputParameterKey": "learning_rate"}
    assert tasks["deploy"]["dependentTasks"] == ["train-job"]
    model_in = tasks["deploy"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
    assert model_in == {"producerTask": "train-job", "outputArtifactKey": "model"}
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["model_name"]["defaultValue"] == "taxi-fare"
    assert {"train_workers", "epochs", "namespace", "timeout_s", "tune_trials"} <= set(params)
    assert params["tune_trials"]["defaultValue"] == 0  # tuning is opt-in in the cluster
    # canary rollouts are opt-in: the pipeline's canary_percent (default 0) is deploy's input
    assert params["canary_percent"]["defaultValue"] == 0
    canary_in = tasks["deploy"]["inputs"]["parameters"]["canary_percent"]
    assert canary_in == {"componentInputParameter": "canary_percent"}


def test_tune_workers_reach_the_tune_task_and_the_dsn_only_from_the_secret(tmp_path):
    """tune_workers (default 1: tuning in the task) is the cluster tune task's workers input
    (N > 1: a Job of N pods) and the local tune task's; the study database's user, password and
    name come from the fareflow-postgres Secret (optional), never as a value in the spec."""
    from pipelines.taxi_fare import POSTGRES_ENV, POSTGRES_SECRET

    text = Path(compile_pipeline(str(tmp_path / "c.yaml"))).read_text()
    docs = list(yaml.safe_load_all(text))
    spec = docs[0]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["tune_workers"]["defaultValue"] == 1
    task = spec["root"]["dag"]["tasks"]["tune-job"]
    assert task["inputs"]["parameters"]["workers"] == {"componentInputParameter": "tune_workers"}
    assert task["inputs"]["parameters"]["namespace"] == {"componentInputParameter": "namespace"}
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    (secret,) = platform["exec-tune-job"]["secretAsEnv"]
    assert secret["secretName"] == POSTGRES_SECRET and secret.get("optional")
    assert {(kv["secretKey"], kv["envVar"]) for kv in secret["keyToEnv"]} == set(POSTGRES_ENV.items())
    assert set(POSTGRES_ENV.values()) == {"PGUSER", "PGPASSWORD", "PGDATABASE"}
    assert "postgresql://" not in text and "REPLACE_ME" not in text
    local = _pipeline_spec(Path(compile_pipeline(str(tmp_path / "l.yaml"), cluster=False)).read_text())
    assert local["root"]["dag"]["tasks"]["tune"]["inputs"]["parameters"]["workers"] == {
        "componentInputParameter": "tune_workers"
    }


def test_train_backend_is_a_pipeline_parameter_the_cluster_train_task_takes(tmp_path):
    """train_backend (default ddp) reaches the train-job task's backend input: ddp -> PyTorchJob,
    horovod -> MPIJob (components.cluster.training.train_job_object)."""
    spec = _pipeline_spec(Path(compile_pipeline(str(tmp_path / "c.yaml"))).read_text())
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["train_backend"] == {"defaultValue": "ddp", "isOptional": True, "parameterType": "STRING"}
    task = spec["root"]["dag"]["tasks"]["train-job"]
    assert task["inputs"]["parameters"]["backend"] == {"componentInputParameter": "train_backend"}
    component = spec["components"][task["componentRef"]["name"]]
    assert component["inputDefinitions"]["parameters"]["backend"]["defaultValue"] == "ddp"


def test_local_form_passes_train_backend_to_the_train_task(tmp_path):
    spec = _pipeline_spec(Path(compile_pipeline(str(tmp_path / "l.yaml"), cluster=False)).read_text())
    assert spec["root"]["inputDefinitions"]["parameters"]["train_backend"]["defaultValue"] == "ddp"
    inputs = spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    assert inputs["backend"] == {"componentInputParameter": "train_backend"}


def test_local_form_trains_in_the_task_on_the_trainer_image(tmp_path):
    spec = _pipeline_spec(Path(compile_pipeline(str(tmp_path / "l.yaml"), cluster=False)).read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert "train" in tasks and "deploy" not in tasks and "train-job" not in tasks
    executor = spec["deploymentSpec"]["executors"][
        tasks["train"]["componentRef"]["name"].replace("comp-", "exec-")
    ]
    assert executor["container"]["image"] == TRAINER_IMAGE


def test_train_job_and_deploy_take_s3_settings_from_the_secret(tmp_path):
    from pipelines.taxi_fare import S3_ENV_KEYS, S3_SECRET

    docs = list(yaml.safe_load_all(Path(compile_pipeline(str(tmp_path / "p.yaml"))).read_text()))
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    # deploy: a canary rollout reads the candidate's and the serving model's model.json from S3
    for name in ("exec-train-job", "exec-deploy"):
        envs = {kv["envVar"] for e in platform[name]["secretAsEnv"] for kv in e["keyToEnv"]}
        assert envs == set(S3_ENV_KEYS), name
        assert all(e["secretName"] == S3_SECRET for e in platform[name]["secretAsEnv"]), name


def test_readme_lists_every_pipeline_parameter(tmp_path):
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    paragraph = readme[readme.index("Pipeline parameters (`--param key=value`)") :].split("Compile-time")[0]
    from components.cluster.core import BACKENDS

    # Backticked words that are values, not parameters: the namespace and train_backend's choices.
    listed = set(re.findall(r"`([a-z_]+)`", paragraph)) - {"fareflow", *BACKENDS}
    spec = _pipeline_spec(Path(compile_pipeline(str(tmp_path / "p.yaml"))).read_text())
    assert listed == set(spec["root"]["inputDefinitions"]["parameters"])


def test_compile_to_an_unwritable_place_is_one_line_before_compiling(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--output", str(blocker / "p.yaml")]) == 2
    assert (
        capsys.readouterr().err
        == f"fareflow compile: error: --output {blocker / 'p.yaml'}: {blocker} is not a directory\n"
    )


def test_code_digest_is_in_every_local_task_environment(tmp_path):
    """kfp.local keys its cache on the task's environment: the digest of the installed source
    there means an edit to the code re-runs the steps (the cluster form carries none)."""
    from kfp import compiler
    from kfp.local.cache import LocalCache

    from pipelines.taxi_fare import CODE_DIGEST_ENV, build_pipeline

    def executors(digest: str) -> dict:
        path = tmp_path / f"{digest or 'none'}.yaml"
        compiler.Compiler().compile(build_pipeline(code_digest=digest), str(path))
        return _pipeline_spec(path.read_text())["deploymentSpec"]["executors"]

    a, b = executors("aaa"), executors("bbb")
    assert set(a) == {"exec-ingest", "exec-quality", "exec-sample", "exec-tune", "exec-train"}
    cache = LocalCache(str(tmp_path / "cache"))
    for name, executor in a.items():
        env = {e["name"]: e["value"] for e in executor["container"]["env"]}
        assert env[CODE_DIGEST_ENV] == "aaa", name
        other = {e["name"]: e["value"] for e in b[name]["container"]["env"]}
        keys = [cache.compute_key(name, "img", ["cmd"], {"x": 1}, env_vars=e) for e in (env, other)]
        assert keys[0] != keys[1], name
    cluster = _pipeline_spec(Path(compile_pipeline(str(tmp_path / "c.yaml"))).read_text())
    for executor in cluster["deploymentSpec"]["executors"].values():
        assert CODE_DIGEST_ENV not in str(executor["container"].get("env", []))


def test_the_pipelines_defaults_are_the_steps_config_defaults(tmp_path):
    """One set of defaults: the compiled pipeline's training and sampling parameters default to
    what TrainConfig and SampleConfig (the steps' CLIs) default to."""
    from components.sample.config import SampleConfig
    from components.train.config import TrainConfig

    params = _pipeline_spec(Path(compile_pipeline(str(tmp_path / "c.yaml"))).read_text())["root"][
        "inputDefinitions"
    ]["parameters"]
    train, sample = TrainConfig("s", "o"), SampleConfig("i", "p", "o")
    expected = {
        "epochs": train.epochs,
        "batch_size": train.batch_size,
        "learning_rate": train.learning_rate,
        "weight_decay": train.weight_decay,
        "dropout": train.dropout,
        "hidden": ",".join(map(str, train.hidden)),
        "train_backend": train.backend,
        "sample_rows": sample.rows,
    }
    assert {k: params[k]["defaultValue"] for k in expected} == expected
    assert [float(f) for f in params["fractions"]["defaultValue"].split(",")] == list(sample.fractions)


def test_compile_cli_turns_the_ingest_fan_out_off(tmp_path):
    from pipelines.compile import main

    out = tmp_path / "one-ingest.yaml"
    assert main(["--output", str(out), "--no-ingest-fan-out"]) == 0
    names = _task_names(_pipeline_spec(out.read_text()))
    assert "ingest" in names and not names & {"ingest-plan", "ingest-part", "ingest-merge"}
    assert "quality-partition" in names  # the other fan-out stays as chosen


def test_the_compiled_description_names_the_steps_it_runs(tmp_path):
    cluster = _pipeline_spec(Path(compile_pipeline(str(tmp_path / "c.yaml"))).read_text())
    local = _pipeline_spec(Path(compile_pipeline(str(tmp_path / "l.yaml"), cluster=False)).read_text())
    steps = "ingest -> quality -> sample -> tune -> train"
    assert steps in cluster["pipelineInfo"]["description"] and steps in local["pipelineInfo"]["description"]
    assert cluster["pipelineInfo"]["description"].endswith(
        "deploy (KServe InferenceService) and track (MLflow)."
    )
    assert {"deploy", "track"} <= _task_names(cluster)
    # track does not wait for deploy: a run whose model deploy refuses (a rolled-back canary
    # fails the deploy task) is still logged
    tracked = cluster["root"]["dag"]["tasks"]["track"]
    assert "deploy" not in tracked["dependentTasks"] and "train-job" in tracked["dependentTasks"]
    assert local["pipelineInfo"]["description"].endswith("train (in the task).")
    assert not {"deploy", "track"} & _task_names(local)
