"""The cluster tune step's batch/v1 Job (``tune_workers`` > 1) against the real control plane:
the Job ``tuning.tune_job_object`` builds, in a project rendered from ``overlays/kind`` with
``components/optuna-postgres`` (its Secret and ConfigMap keys as the manifests make them; Pod
Security "restricted"), created by fareflow's own ``run_job`` **as the project's
``fareflow-pipeline-runner`` ServiceAccount** (a TokenRequest token, so its Role is what the
code gets); the Job controller makes N pods, the scheduler places them on the kwok CPU nodes,
and their database credentials are ``secretKeyRef``s only. kwok ends the pods
(``kwok.fareflow.io/exit-code``, put on the pod template here: production objects carry no
such annotation): exit 0 everywhere → Complete → ``run_job`` returns; a worker's exit 2 (a user
error) → the podFailurePolicy's FailJob → ``run_job`` raises at once with the controller's
reason, and the next run replaces the failed Job."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from components.cluster import core, tuning
from components.common import k8s, k8s_api
from components.common.errors import UserError

from .conftest import Tier, project_namespace, wait_for

pytestmark = pytest.mark.k8s

SPLITS = "s3://mlpipeline/v2/artifacts/splits"
BASE = {"learning_rate": 0.002, "batch_size": 512, "hidden": "64,32", "weight_decay": 1e-4, "dropout": 0.1}
WORKERS = 3


@pytest.fixture
def tune_project(tier: Tier, tmp_path: Path) -> Iterator[str]:
    """A project as a user of tune_workers > 1 sets it up: overlays/kind + components/optuna-postgres."""
    yield from project_namespace(tier, tmp_path, "t-tune", ["optuna-postgres"], runner_may="jobs.batch")


def tune_job(settings: core.ClusterSettings, workers: int = WORKERS) -> dict:
    config = tuning.tune_config(SPLITS, 12, 2, 0, BASE, storage=tuning.TUNE_STORAGE)
    config = replace(config, study_name=tuning.tune_job_name(SPLITS, config))
    return tuning.tune_job_object(settings, config, workers, timeout_s=600)


def play_workers(obj: dict, exit_code: int, run_time: str = "1s") -> dict:
    """Have kwok end every worker pod with ``exit_code`` after ``run_time`` (test-only: the
    annotation goes on the built dict's pod template)."""
    meta = obj["spec"]["template"].setdefault("metadata", {})
    meta.setdefault("annotations", {}).update(
        {"kwok.fareflow.io/exit-code": str(exit_code), "kwok.fareflow.io/run-time": run_time}
    )
    return obj


def job_pods(tier: Tier, ns: str, name: str) -> list[dict]:
    return tier.get("pods", "-n", ns, "-l", f"{tuning.JOB_POD_LABEL}={name}")["items"]


def secret_values(tier: Tier, ns: str) -> dict[str, str]:
    data = tier.get("secret", "-n", ns, tuning.POSTGRES_SECRET)["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def test_the_tune_job_is_admitted_and_its_pods_placed_on_kwok_nodes_with_the_secret_by_reference(
    tier: Tier, tune_project: str, as_runner
):
    ns = tune_project
    assert (
        tier.get("namespace", ns)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    )
    runner = as_runner(ns)
    # The runner may drive Jobs but never read the Secret its pods take the password from.
    assert tier.can_i(runner, "create", "jobs.batch", ns) and tier.can_i(runner, "delete", "jobs.batch", ns)
    assert not tier.can_i(runner, "get", "secrets", ns) and not tier.can_i(runner, "list", "secrets", ns)
    trainer = f"{ns}:{k8s.TRAINER_SERVICE_ACCOUNT}"
    assert not tier.can_i(trainer, "create", "jobs.batch", ns) and not tier.can_i(
        trainer, "get", "secrets", ns
    )

    settings = core.load_settings(ns)  # as the runner: its ConfigMap, with the component's keys
    assert settings.optuna_host() == f"fareflow-postgres.{ns}"
    obj = tune_job(settings)  # no kwok annotation: the workers keep running
    name = obj["metadata"]["name"]
    created = k8s_api.apply(obj)  # as the runner: admitted by RBAC, PSA and the Job validation
    assert created["spec"]["parallelism"] == created["spec"]["completions"] == WORKERS
    assert created["spec"]["podFailurePolicy"] == obj["spec"]["podFailurePolicy"], "stored as built"

    def placed() -> list[dict] | None:
        pods = job_pods(tier, ns, name)
        running = [p for p in pods if p["status"].get("phase") == "Running" and p["spec"].get("nodeName")]
        return running if len(running) == WORKERS else None

    pods = wait_for(placed, 60, f"{WORKERS} running tune pods")
    assert {p["spec"]["nodeName"] for p in pods} <= {"kwok-cpu-0", "kwok-cpu-1"}, "the CPU pool only"
    password = secret_values(tier, ns)["POSTGRES_PASSWORD"]
    assert password and set(secret_values(tier, ns)) >= {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
    for pod in pods:
        spec = pod["spec"]
        assert spec["serviceAccountName"] == k8s.TRAINER_SERVICE_ACCOUNT
        assert spec["automountServiceAccountToken"] is False and spec["restartPolicy"] == "Never"
        (c,) = spec["containers"]
        env = {e["name"]: e for e in c["env"]}
        assert env["PGHOST"]["value"] == f"fareflow-postgres.{ns}" and env["PGPORT"]["value"] == "5432"
        for var, key in (("PGUSER", "POSTGRES_USER"), ("PGPASSWORD", "POSTGRES_PASSWORD"), ("PGDATABASE", "POSTGRES_DB")):  # fmt: skip
            assert env[var] == {
                "name": var,
                "valueFrom": {"secretKeyRef": {"name": tuning.POSTGRES_SECRET, "key": key}},
            }
        assert c["args"][c["args"].index("--storage") + 1] == "postgresql://"
        assert password not in json.dumps(pod), "the password is in the pod's spec"
    job = tier.get("job", "-n", ns, name)
    assert job["status"].get("active") == WORKERS
    assert password not in json.dumps(job)


def test_run_job_waits_the_tune_job_through_to_complete_as_the_pipeline_runner(
    tier: Tier, tune_project: str, as_runner
):
    ns = tune_project
    as_runner(ns)
    obj = play_workers(tune_job(core.load_settings(ns)), exit_code=0)
    name = obj["metadata"]["name"]
    start = time.monotonic()
    done = tuning.run_job(obj, timeout=120, poll=0.5)
    elapsed = time.monotonic() - start
    assert k8s_api.condition(done, "Complete") and done["status"]["succeeded"] == WORKERS
    # v1.32's controller: the interim SuccessCriteriaMet first, Complete once the pods are done
    types = [c["type"] for c in done["status"]["conditions"] if c["status"] == "True"]
    assert types == ["SuccessCriteriaMet", "Complete"], types
    assert elapsed < 60, f"took {elapsed:.0f}s"
    assert {p["status"]["phase"] for p in job_pods(tier, ns, name)} == {"Succeeded"}
    again = tuning.run_job(obj, timeout=5, poll=0.5)
    assert again["metadata"]["uid"] == done["metadata"]["uid"], "a completed Job is reused"


def test_a_worker_exiting_2_fails_the_job_at_once_then_the_next_run_replaces_it(
    tier: Tier, tune_project: str, as_runner
):
    ns = tune_project
    as_runner(ns)
    settings = core.load_settings(ns)
    failing = play_workers(tune_job(settings), exit_code=k8s.USER_ERROR_EXIT)
    name = failing["metadata"]["name"]
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        tuning.run_job(failing, timeout=300, poll=0.5)
    elapsed = time.monotonic() - start
    first, *rest = str(err.value).splitlines()
    # The controller's podFailurePolicy message (FailJob rule 0), not a timeout or backoffLimit.
    assert first.startswith(
        f"Job {ns}/{name} Failed: PodFailurePolicy Container tune for pod {ns}/{name}-"
    ), first
    assert "failed with exit code 2 matching FailJob rule at index 0" in first, first
    assert rest, "then what the pods' logs say (kwok serves none: why, in a line)"
    # generous for a loaded CI machine: the exact no-retry checks are the reason above and no
    # replacement pods below; a retried Job would add its backoff (10 s, 20 s, 40 s, ...) on top
    assert elapsed < 120, f"took {elapsed:.0f}s: exit 2 must not be retried"
    job = wait_for(
        lambda: (j := tier.get("job", "-n", ns, name)) and k8s_api.condition(j, "Failed") and j,
        60,
        "the Job's Failed condition",
    )
    assert k8s_api.condition(job, "Failed")["reason"] == "PodFailurePolicy"
    assert len(job_pods(tier, ns, name)) <= WORKERS, "no replacement pods (backoffLimit untouched)"
    failed_uid = job["metadata"]["uid"]

    fixed = play_workers(tune_job(settings), exit_code=0)
    assert fixed["metadata"]["name"] == name  # the same inputs: the same Job (a retried task)
    done = tuning.run_job(fixed, timeout=180, poll=0.5)
    assert done["metadata"]["uid"] != failed_uid and k8s_api.condition(done, "Complete")
