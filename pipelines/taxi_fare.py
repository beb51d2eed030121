"""The DC taxi fare pipeline: raw trip files -> ingest -> quality -> sample -> tune -> train (-> deploy).

One definition for both execution modes: ``fareflow run`` executes it on this
machine through ``kfp.local``; ``fareflow compile`` / ``fareflow submit`` turn it
into IR YAML for Kubeflow Pipelines. Components only; no logic lives here.

Training runs in the task locally (``torchrun`` processes on this machine when
``train_workers`` > 1); in the cluster it runs as a PyTorchJob (``train_backend`` ddp, the
default) or an MPIJob (horovod) and the model is then served as the KServe InferenceService
``model_name`` (a compile-time choice, ``cluster``).

The quality step runs one of two equivalent ways (identical clean rows and counts):
in one task with a process pool over the month partitions (the local default), or
fanned out one task per month partition with ``dsl.ParallelFor`` and merged with
``dsl.Collected`` (the cluster default, for large data). Ingest likewise: one task, or
(the cluster default) ``ingest_tasks`` tasks over groups of the source's month files, merged
into one data set (same rows per partition, quarantine and totals).
"""

# No "from __future__ import annotations": kfp reads the annotations as objects.
from typing import NamedTuple

from kfp import dsl, kubernetes

from components.cluster.component import deploy, train_job, tune_job
from components.ingest.component import ingest, ingest_merge, ingest_part, ingest_plan
from components.quality.component import quality, quality_merge, quality_partition, quality_plan
from components.sample.component import sample
from components.sample.config import SampleConfig
from components.train.component import train
from components.train.config import TrainConfig
from components.tune.component import tune
from pipelines.tracking_component import track

PIPELINE_NAME = "fareflow-taxi-fare"
# Kubernetes Secret whose keys become the ingest task's environment in the cluster, so an
# s3:// source is read with these credentials (keys optional: an https source needs none).
# It must exist in the namespace the pipeline pods run in (``kubeflow`` for KFP standalone).
S3_SECRET = "fareflow-s3"
S3_ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")
# The Optuna study database's Secret (manifests/components/optuna-postgres), as libpq's
# environment of the cluster tune task when tune_workers > 1; optional, so tune_workers 1 needs
# none. Like the S3 Secret it must exist in the namespace the pipeline pods run in.
POSTGRES_SECRET = "fareflow-postgres"
POSTGRES_ENV = {"POSTGRES_USER": "PGUSER", "POSTGRES_PASSWORD": "PGPASSWORD", "POSTGRES_DB": "PGDATABASE"}


DEFAULT_MODEL_NAME = "taxi-fare"  # the InferenceService (and URL model) name
# Set on every task when the pipeline is built with a ``code_digest`` (``fareflow run``): the
# task's environment is part of kfp.local's cache key, so an edit to the installed source
# (pipelines.code_version.source_digest) means no step is reused from before the edit.
CODE_DIGEST_ENV = "FAREFLOW_CODE_DIGEST"


class PipelineOutputs(NamedTuple):
    ingest: dict
    quality: dict
    sample: dict
    tune: dict
    train: dict


def _quality_step(raw, rules_yaml, seed, fan_out: bool):
    """The quality task whose outputs the rest of the pipeline reads (see module docstring)."""
    if not fan_out:
        return quality(raw=raw, rules_yaml=rules_yaml, seed=seed).set_display_name("quality")
    plan = quality_plan(raw=raw).set_display_name("quality: plan partitions")
    with dsl.ParallelFor(plan.output, name="month-partitions") as partition:
        part = quality_partition(raw=raw, partition=partition, rules_yaml=rules_yaml, seed=seed)
        part.set_display_name("quality: one partition")
    merged = quality_merge(parts=dsl.Collected(part.outputs["result"]), rules_yaml=rules_yaml)
    return merged.set_display_name("quality: merge")


def _ingest_step(source, tasks, fan_out: bool, s3_secret: str, code_digest: str):
    """The ingest task whose outputs (raw, quarantine, the summary) the rest of the pipeline reads:
    one task, or a plan, one task per file group (``dsl.ParallelFor``) and a merge."""
    if not fan_out:
        task = ingest(source=source).set_display_name("ingest")
        _s3_env(task, s3_secret)
        return _stamp(task, code_digest)
    plan = ingest_plan(source=source, tasks=tasks).set_display_name("ingest: plan file groups")
    with dsl.ParallelFor(plan.output, name="file-groups") as group:
        part = ingest_part(source=source, group=group).set_display_name("ingest: one file group")
    merged = ingest_merge(parts=dsl.Collected(part.outputs["part"])).set_display_name("ingest: merge")
    for task in (plan, part, merged):
        _s3_env(task, s3_secret)
        _stamp(task, code_digest)
    return merged


def _s3_env(task, s3_secret: str) -> None:
    if s3_secret:
        kubernetes.use_secret_as_env(
            task, secret_name=s3_secret, secret_key_to_env={k: k for k in S3_ENV_KEYS}, optional=True
        )


def _stamp(task, code_digest: str):
    if code_digest:
        task.set_env_variable(CODE_DIGEST_ENV, code_digest)
    return task


def _default(config_class, name: str):
    """A step config's default for one field: the pipeline's defaults are the steps' own, written
    once in their config specs (components/*/config.py)."""
    import dataclasses

    return next(f.default for f in dataclasses.fields(config_class) if f.name == name)


_SAMPLE = {name: _default(SampleConfig, name) for name in ("rows", "fractions")}
_TRAIN = {
    name: _default(TrainConfig, name)
    for name in ("epochs", "batch_size", "learning_rate", "hidden", "weight_decay", "dropout", "backend")
}


def build_pipeline(
    quality_fan_out: bool = False,
    s3_secret: str = S3_SECRET,
    cluster: bool = False,
    code_digest: str = "",
    ingest_fan_out: bool | None = None,
):
    """The pipeline, with the quality step in one task or fanned out per month partition, and
    ingest in one task or fanned out over groups of files (``ingest_fan_out``; None: as
    ``cluster``, so the cluster compile fans out and kfp.local runs one task).

    ``code_digest`` (``fareflow run``: the installed source's digest) is set as every task's
    ``FAREFLOW_CODE_DIGEST``, which keys the local cache on the code as well as the inputs.

    ``cluster``: train as a PyTorchJob and deploy the model to KServe (needs the cluster; the
    tasks read S3 settings from ``s3_secret``); otherwise train in the task (kfp.local).

    A compile-time setting: kfp.local 2.17 can neither loop over a task's output nor pick an
    artifact out of ``dsl.OneOf``, so the local run uses the one-task form and the cluster
    compile (``fareflow compile``/``submit``) uses the fan-out by default. ``s3_secret``
    ("" for none) names the Secret the ingest task takes its S3 settings from in the cluster
    (kfp.local ignores Kubernetes settings; locally the environment is used).
    """

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="DC taxi fare (fareflow): raw trip files -> ingest -> quality -> sample -> tune -> "
        + (
            "train (PyTorchJob or MPIJob) -> deploy (KServe InferenceService) and track (MLflow)."
            if cluster
            else "train (in the task)."
        ),
    )
    def taxi_fare_pipeline(
        source: str,
        rules_yaml: str = "",
        sample_rows: int = _SAMPLE["rows"],
        seed: int = 0,
        shards: int = 4,
        fractions: str = ",".join(str(f) for f in _SAMPLE["fractions"]),
        tune_trials: int = 0,
        tune_epochs: int = 3,
        tune_workers: int = 1,
        train_workers: int = 1,
        train_backend: str = _TRAIN["backend"],
        epochs: int = _TRAIN["epochs"],
        batch_size: int = _TRAIN["batch_size"],
        learning_rate: float = _TRAIN["learning_rate"],
        hidden: str = ",".join(str(h) for h in _TRAIN["hidden"]),
        weight_decay: float = _TRAIN["weight_decay"],
        dropout: float = _TRAIN["dropout"],
        namespace: str = "fareflow",
        model_name: str = DEFAULT_MODEL_NAME,
        timeout_s: int = 3600,
        ingest_tasks: int = 4,
        canary_percent: int = 0,
    ) -> PipelineOutputs:
        """Parameters:

        source: trip files — a local directory/glob, ``.zip``, ``s3://bucket/prefix`` or
            ``https://`` URL of taxi_YYYY_MM.txt files (in the cluster: reachable from the pods).
        rules_yaml: a quality rules file's text, merged over the default rules ("" = defaults).
        sample_rows: rows to sample (0 = automatic: where the standard error stops improving).
        seed: sampling/split seed. shards: Parquet files per split (one per training worker).
        fractions: train,validation,test fractions of the sample.
        tune_trials, tune_epochs: Optuna trials (0 = no tuning) of at most this many epochs;
            the best trial's settings replace the five below (which are trial 0).
        tune_workers: Optuna workers on one study: 1 tunes in the task; N > 1 locally runs N
            processes on a SQLite study, in the cluster a Kubernetes Job of N pods on the
            manifests' PostgreSQL (manifests/components/optuna-postgres; docs/tune.md).
        train_workers: training processes: torchrun processes locally; in the cluster,
            PyTorchJob replicas (one Master + Workers) or MPIJob workers (a rank per GPU, or one).
        train_backend: ``ddp`` (torch DDP; a PyTorchJob in the cluster) or ``horovod``
            (horovod.torch; an MPIJob, whose launcher needs a namespace enforcing Pod Security
            baseline: manifests/components/mpijob-baseline); locally, horovodrun (gloo)
            processes instead of torchrun.
        epochs, batch_size, learning_rate, hidden, weight_decay, dropout: the MLP's training
            settings (hidden: comma-separated layer sizes).
        namespace, model_name, timeout_s: cluster only — where the training job and the
            InferenceService run, the InferenceService name, and how long each may take.
        ingest_tasks: with the ingest fan-out (the cluster form): at most this many ingest
            tasks, each reading a run of the source's month files balanced by size (docs/scale.md);
            unused by the one-task form (kfp.local).
        canary_percent: cluster only — 0 serves the trained model at once; 1-100 rolls it out
            as a canary taking that share of the requests beside the model serving now, checks
            it and promotes it or rolls it back (a roll-back fails the deploy task; docs/cluster.md).
        """
        fan_out = cluster if ingest_fan_out is None else ingest_fan_out
        ingest_task = _ingest_step(source, ingest_tasks, fan_out, s3_secret, code_digest)
        quality_task = _stamp(
            _quality_step(ingest_task.outputs["raw"], rules_yaml, seed, quality_fan_out), code_digest
        )
        sample_task = sample(
            clean=quality_task.outputs["clean"],
            population_stats=quality_task.outputs["population_stats"],
            rows=sample_rows,
            seed=seed,
            shards=shards,
            fractions=fractions,
        ).set_display_name("sample")
        _stamp(sample_task, code_digest)
        splits = sample_task.outputs["splits"]
        tune_args = dict(
            splits=splits,
            trials=tune_trials,
            epochs=tune_epochs,
            seed=seed,
            learning_rate=learning_rate,
            batch_size=batch_size,
            hidden=hidden,
            weight_decay=weight_decay,
            dropout=dropout,
            workers=tune_workers,
        )
        if cluster:
            tune_task = tune_job(**tune_args, namespace=namespace, timeout_s=timeout_s)
            tune_task.set_display_name("tune (in the task, or a Job of tune_workers pods)")
            kubernetes.use_secret_as_env(
                tune_task, secret_name=POSTGRES_SECRET, secret_key_to_env=POSTGRES_ENV, optional=True
            )
        else:
            tune_task = tune(**tune_args).set_display_name("tune")
        _stamp(tune_task, code_digest)
        best = {
            name: tune_task.outputs[name]
            for name in ("learning_rate", "batch_size", "hidden", "weight_decay", "dropout")
        }
        if cluster:
            train_task = train_job(
                splits=splits,
                namespace=namespace,
                workers=train_workers,
                epochs=epochs,
                seed=seed,
                **best,
                timeout_s=timeout_s,
                backend=train_backend,
            ).set_display_name("train (PyTorchJob or MPIJob)")
            _s3_env(train_task, s3_secret)
            deploy_task = deploy(
                model=train_task.outputs["model"],
                name=model_name,
                namespace=namespace,
                timeout_s=timeout_s,
                canary_percent=canary_percent,
            ).set_display_name("deploy (KServe)")
            # a canary rollout (deploy's canary_percent) reads both models' model.json from S3
            _s3_env(deploy_task, s3_secret)
            # the run's parameters, summaries and model to the project's MLflow server, when the
            # platform ConfigMap names one (manifests/components/mlflow); else nothing is logged.
            # Beside deploy, not after it: a model deploy refuses (a rolled-back canary) is logged too.
            track(
                ingest=ingest_task.outputs["Output"],
                quality=quality_task.outputs["Output"],
                sample=sample_task.outputs["Output"],
                tune=tune_task.outputs["summary"],
                train=train_task.outputs["Output"],
                model=train_task.outputs["model"],
                source=source,
                parameters={
                    "seed": seed,
                    "epochs": epochs,
                    "tune_trials": tune_trials,
                    "tune_workers": tune_workers,
                    "train_workers": train_workers,
                    "train_backend": train_backend,
                    "model_name": model_name,
                    "canary_percent": canary_percent,
                },
                namespace=namespace,
                run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            ).set_display_name("track (MLflow)")
        else:
            train_task = train(
                splits=splits, epochs=epochs, workers=train_workers, seed=seed, **best, backend=train_backend
            ).set_display_name("train")
            _stamp(train_task, code_digest)
        return PipelineOutputs(
            ingest=ingest_task.outputs["Output"],
            quality=quality_task.outputs["Output"],
            sample=sample_task.outputs["Output"],
            tune=tune_task.outputs["summary"],
            train=train_task.outputs["Output"],
        )

    return taxi_fare_pipeline


taxi_fare_pipeline = build_pipeline(quality_fan_out=False)
