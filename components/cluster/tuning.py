"""The tune Job: N parallel Optuna workers as a ``batch/v1`` Job on the manifests' PostgreSQL
study database (tune_workers > 1), run from the tune task; the task creates the study, runs the
Job, waits and reads the study's result (``components.tune``). See docs/tune.md.
"""

from __future__ import annotations

from components.cluster.core import S3_SECRET, ClusterSettings, job_name, run_workload
from components.common import k8s
from components.common.errors import UserError

POSTGRES_SECRET = "fareflow-postgres"  # manifests/components/optuna-postgres
# libpq's environment, from the Secret's keys: the workers' --storage is a bare postgresql://
POSTGRES_SECRET_ENV = {
    "PGUSER": (POSTGRES_SECRET, "POSTGRES_USER"),
    "PGPASSWORD": (POSTGRES_SECRET, "POSTGRES_PASSWORD"),
    "PGDATABASE": (POSTGRES_SECRET, "POSTGRES_DB"),
}
JOB_POD_LABEL = "batch.kubernetes.io/job-name"  # the Job controller's pod label
TUNE_STORAGE = "postgresql://"  # everything from PG* variables: no DSN in the spec or argv


def tune_job_name(splits_s3: str, config) -> str:
    """The Job's (and the study's) name: the same inputs find the same Job and study again, so a
    retried task resumes the study instead of starting over."""
    from dataclasses import replace

    key = replace(config, splits_uri=splits_s3, storage="", study_name="", workers=1)
    return job_name("taxi-fare-tune", splits_s3, repr(key))


def tune_worker_args(config) -> list[str]:
    """Each Job pod's ``components.tune`` flags (one worker each, the shared study): from the
    tune config spec, so names and formats are the CLI's own."""
    from dataclasses import replace

    from components.common.configspec import to_argv

    return to_argv(replace(config, storage=TUNE_STORAGE, workers=1, device="cpu"))


def tune_job_object(settings: ClusterSettings, config, workers: int, timeout_s: int | None = None) -> dict:
    """The tune Job: ``workers`` pods of the trainer image, each ``python -m components.tune
    ... --storage postgresql:// --workers 1`` on ``config.study_name``; PGHOST/PGPORT from the
    settings, PGUSER/PGPASSWORD/PGDATABASE from the ``fareflow-postgres`` Secret, S3 settings as
    the training pods get them."""
    if workers < 2:
        raise UserError(f"tune_workers: a tune Job is for 2 or more workers, got {workers}")
    env = {"PGHOST": settings.optuna_host(), "PGPORT": str(settings.optuna_storage_port)}
    if settings.aws_endpoint_url:
        env["AWS_ENDPOINT_URL"] = settings.aws_endpoint_url
    if settings.aws_region:
        env["AWS_DEFAULT_REGION"] = settings.aws_region
    return k8s.tune_job(
        config.study_name,
        settings.image("trainer"),
        tune_worker_args(config),
        namespace=settings.namespace,
        workers=workers,
        env=env,
        env_from_secret=S3_SECRET,
        secret_env=POSTGRES_SECRET_ENV,
        labels={"app.kubernetes.io/component": "tune"},
        active_deadline_seconds=timeout_s,
    )


def tune_config(
    splits_uri: str,
    trials: int,
    epochs: int,
    seed: int,
    base_params: dict,
    *,
    storage: str = "",
    study_name: str = "",
):
    """The tune step's config as the pipeline's tune task runs it: until the study holds
    ``trials`` trials (so a rerun resumes), starting from ``base_params``."""
    from components.tune.config import DEFAULT_STUDY, TuneConfig

    return TuneConfig(
        splits_uri, total_trials=trials, epochs=epochs, seed=seed, base_params=dict(base_params),
        storage=storage, study_name=study_name or DEFAULT_STUDY,
    )  # fmt: skip


def use_study_database(settings: ClusterSettings, environ=None) -> None:
    """Point this process's libpq at the study database: PGHOST/PGPORT from the settings (the
    user, password and database are already in the environment, from the Secret)."""
    import os

    environ = os.environ if environ is None else environ
    missing = [var for var in POSTGRES_SECRET_ENV if not environ.get(var)]
    if missing:
        raise UserError(
            f"tune_workers > 1: {', '.join(missing)} not set: the tune task takes them from the Secret "
            f"{POSTGRES_SECRET} (keys POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB) in its own namespace"
        )
    environ["PGHOST"] = settings.optuna_host()
    environ["PGPORT"] = str(settings.optuna_storage_port)


def run_tune_job(
    settings: ClusterSettings,
    config,
    workers: int,
    timeout: float,
    *,
    api=None,
    core_api=None,
    poll: float = 10.0,
    unschedulable_grace: float = 300.0,
    log=print,
):
    """Tune on ``workers`` pods: create the study and its starting point here (the workers find
    them), run the Job (reusing one that completed, replacing one that failed), wait, and read
    the study's result (``components.tune.core.study_result``). ``config.storage`` must be the
    study database's URL as this process reaches it (``postgresql://`` with PG* variables)."""
    from components.tune import core as tune_core
    from components.tune.study import counted_trials, enqueue_base, open_study

    config.validate()
    study = open_study(config)
    enqueue_base(study, config)
    before = len(counted_trials(study))
    obj = tune_job_object(settings, config, workers, int(timeout))
    name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
    if before >= (config.total_trials or 0):
        log(f"study {name!r} already holds {before} finished trial(s); no Job needed")
    else:
        log(
            f"Job {ns}/{name}: {workers} tune workers, {config.total_trials} trials, image {settings.image('trainer')}"
        )
        run_job(obj, timeout, api=api, core_api=core_api, poll=poll, unschedulable_grace=unschedulable_grace)
    return tune_core.study_result(open_study(config), config, before=0)


def run_job(
    obj: dict,
    timeout: float,
    *,
    api=None,
    core_api=None,
    poll: float = 10.0,
    unschedulable_grace: float = 300.0,
    sleep=None,
    clock=None,
) -> dict:
    """Create a ``batch/v1`` Job (reusing one that completed, replacing one that failed) and
    wait until it is Complete (``k8s_api.wait``). Failed (its reason; from the controller's
    interim FailureTarget on, e.g. a worker's exit 2 under the podFailurePolicy), pods the
    scheduler cannot place for ``unschedulable_grace`` s, pods Pod Security refuses, or
    ``timeout``: ``UserError`` with the pods' last log lines."""
    return run_workload(
        obj, timeout, pods=f"{JOB_POD_LABEL}={obj['metadata']['name']}", api=api, core_api=core_api,
        poll=poll, unschedulable_grace=unschedulable_grace, sleep=sleep, clock=clock,
    )  # fmt: skip
