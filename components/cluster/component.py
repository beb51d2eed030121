"""KFP components for cluster mode (logic in ``components.cluster.training``, ``tuning``, ``serving``; tests there)."""

# No "from __future__ import annotations": kfp reads the annotations as objects.

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.common.images import COMPONENT_IMAGE, TRAINER_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train_job(
    splits: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    namespace: str,
    workers: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    hidden: str,
    weight_decay: float,
    dropout: float,
    seed: int,
    timeout_s: int,
    backend: str = "ddp",
) -> dict:
    """Train on ``splits`` in ``namespace`` and copy the model directory the job writes into
    ``model``: ``backend`` "ddp" as a PyTorchJob of ``workers`` pods (torchrun), "horovod" as an
    MPIJob of ``workers`` worker pods and a launcher (mpirun; the namespace must enforce Pod
    Security baseline, see manifests/components/mpijob-baseline)."""
    from components.cluster import core, models, training
    from components.common.publish import publish_component

    core.check_backend(backend)
    settings = core.load_settings(namespace)
    splits_s3 = core.s3_uri(splits.uri)
    params = training.TrainParams(epochs, batch_size, learning_rate, hidden, seed, weight_decay, dropout)
    name = training.train_job_name(splits_s3, params, workers, backend)
    output_s3 = models.model_output_uri(splits_s3, name)
    max_restarts = settings.train_max_restarts or None
    if backend != "ddp" and max_restarts:
        print(
            f"TRAIN_MAX_RESTARTS={max_restarts} applies to PyTorchJobs only; the {backend} job is not elastic"
        )
        max_restarts = None
    obj = training.train_job_object(
        settings, name, splits_s3, output_s3, params, workers, max_restarts=max_restarts, backend=backend
    )
    print(
        f"{obj['kind']} {settings.namespace}/{name}: {workers} pod(s), {backend}, "
        f"image {settings.image('trainer', cuda=settings.train_gpus_per_pod > 0)}"
    )
    training.run_train_job(obj, timeout=timeout_s)
    files = models.copy_model_dir(output_s3, model.path)
    result = training.TrainJobResult(
        f"{settings.namespace}/{name}", files, models.read_model_metrics(model.path)
    )
    summary = publish_component(result, metrics=metrics, artifacts={"model": model})
    model.metadata.update(
        {
            "framework": "pytorch",
            "format": "fareflow",
            "job": name,
            "job_kind": obj["kind"],
            "backend": backend,
            "trained_at": output_s3,
        }
    )
    return summary


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def deploy(model: Input[Model], name: str, namespace: str, timeout_s: int, canary_percent: int = 0) -> dict:
    """Serve ``model`` as the KServe InferenceService ``name`` (v1 and v2 protocols) and wait
    until it is Ready. ``canary_percent`` > 0: roll it out as a canary of the model serving now
    (that share of the traffic), check it against that model, then promote or roll back; a
    roll-back fails the task (as ``fareflow deploy`` exits 3), so the run does not read as
    succeeded while the model it trained was refused; the model serving before keeps serving."""
    from components.cluster import core, models, serving

    settings = core.load_settings(namespace)
    if canary_percent:
        from components.cluster.canary import CanaryCheck

        check = CanaryCheck(traffic_percent=canary_percent)
        summary = serving.deploy_canary(settings, name, core.s3_uri(model.uri), check, timeout=timeout_s)
        line = f"InferenceService {settings.namespace}/{name}: {summary['decision']}: {summary['reason']}"
        if summary["action"] == "rolled back":
            raise RuntimeError(line)
        print(line)
        return summary
    version = models.read_model_version(model.path)  # the artifact, downloaded here
    obj = serving.inference_service_object(settings, name, core.s3_uri(model.uri), model_version=version)
    summary = serving.deploy(obj, timeout=timeout_s)
    print(
        f"InferenceService {summary['namespace']}/{summary['name']} ready at {summary['url']}, "
        f"model version {version or 'unversioned'}"
    )
    return summary


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def tune_job(
    splits: Input[Dataset],
    trials: int,
    epochs: int,
    seed: int,
    learning_rate: float,
    batch_size: int,
    hidden: str,
    weight_decay: float,
    dropout: float,
    namespace: str,
    workers: int,
    timeout_s: int,
    report: Output[HTML],
    summary_md: Output[Markdown],
    metrics: Output[Metrics],
) -> NamedTuple(
    "TuneOutputs",
    [
        ("learning_rate", float),
        ("batch_size", int),
        ("hidden", str),
        ("weight_decay", float),
        ("dropout", float),
        ("summary", dict),
    ],
):
    """The tune step in the cluster, with the outputs of ``components.tune.component.tune``.
    ``workers`` 1: in this task, an in-memory study (as locally). ``workers`` N > 1: a Kubernetes
    Job of N pods (``parallelism`` = ``completions`` = N) tuning one study in the PostgreSQL of
    manifests/components/optuna-postgres until it holds ``trials`` trials; this task creates the
    study, waits for the Job and reads the best trial. The database user, password and name
    reach this task and the pods from the ``fareflow-postgres`` Secret (environment only)."""
    from dataclasses import replace

    from components.cluster import core, tuning
    from components.tune import core as tune_core
    from components.tune.publish import base_params, publish_tune

    base = base_params(learning_rate, batch_size, hidden, weight_decay, dropout)
    if workers <= 1 or trials == 0:
        config = tune_core.TuneConfig(
            splits_uri=splits.path, trials=trials, epochs=epochs, seed=seed, base_params=base
        )
        result = tune_core.run(config)
    else:
        settings = core.load_settings(namespace)
        splits_s3 = core.s3_uri(splits.uri)
        config = tuning.tune_config(splits_s3, trials, epochs, seed, base, storage=tuning.TUNE_STORAGE)
        config = replace(config, study_name=tuning.tune_job_name(splits_s3, config))
        tuning.use_study_database(settings)
        result = tuning.run_tune_job(settings, config, workers, timeout=timeout_s)
    return publish_tune(result, report=report, summary_md=summary_md, metrics=metrics)
