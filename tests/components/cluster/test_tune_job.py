"""The cluster's tune step with tune_workers > 1 (components.cluster.tuning): the Job object
(workers' argv from the tune config spec, the DSN only from the Secret), the Job's wait
(Complete / Failed with pod logs / timeout) against in-memory API fakes, and the whole
``run_tune_job`` on a real PostgreSQL study the "Job" (played by two local worker processes)
fills."""

import pytest

from components.cluster import core, tuning
from components.common.configspec import from_args
from components.common.errors import UserError
from components.tune.__main__ import build_parser
from components.tune.config import TuneConfig
from tests.components.cluster.test_core import EventsCoreV1
from tests.k8s_fakes import FakeCustomObjects

SETTINGS = core.ClusterSettings(optuna_storage_host="fareflow-postgres", aws_endpoint_url="http://s3:9000")
BASE = {"learning_rate": 0.002, "batch_size": 512, "hidden": "64,32", "weight_decay": 1e-4, "dropout": 0.1}


class FakeJobs(FakeCustomObjects):
    """FakeCustomObjects whose ``status_script`` also plays the Job controller's statuses."""

    def get_namespaced_custom_object(self, group, version, ns, plural, name):
        obj = super().get_namespaced_custom_object(group, version, ns, plural, name)
        if plural == "jobs" and self.status_script:
            obj = {**obj, "status": self.status_script.pop(0)}
            self.store[(group, version, ns, plural, name)]["status"] = obj["status"]
        return obj


def FakeCoreV1(**kw):  # noqa: N802 - the pods' logs and the events on the Job
    return EventsCoreV1(**kw)


def cond(type_, **kw):
    return {"conditions": [{"type": type_, "status": "True", **kw}]}


def config(**kw) -> TuneConfig:
    c = tuning.tune_config("s3://mlpipeline/splits", 12, 3, 7, BASE, storage=tuning.TUNE_STORAGE)
    from dataclasses import replace

    return replace(c, study_name=tuning.tune_job_name("s3://mlpipeline/splits", c), **kw)


def test_settings_read_the_study_database_from_the_config_map():
    s = core.ClusterSettings.from_config_map(
        {"OPTUNA_STORAGE_HOST": "fareflow-postgres", "OPTUNA_STORAGE_PORT": "5433"}, "team-b"
    )
    assert (s.optuna_host(), s.optuna_storage_port) == ("fareflow-postgres.team-b", 5433)
    assert core.ClusterSettings(optuna_storage_host="db.example.org").optuna_host() == "db.example.org"
    with pytest.raises(UserError, match="no OPTUNA_STORAGE_HOST: tune_workers > 1 needs .*optuna-postgres"):
        core.ClusterSettings().optuna_host()


def test_the_job_runs_one_worker_per_pod_on_the_shared_study():
    c = config()
    obj = tuning.tune_job_object(SETTINGS, c, workers=3, timeout_s=900)
    assert obj["kind"] == "Job" and obj["metadata"]["name"] == c.study_name
    assert obj["spec"]["parallelism"] == obj["spec"]["completions"] == 3
    assert obj["spec"]["activeDeadlineSeconds"] == 900
    (pod_container,) = obj["spec"]["template"]["spec"]["containers"]
    assert pod_container["image"] == SETTINGS.image("trainer")
    # each pod's argv parses back to the task's config, as one worker on a bare postgresql://
    parsed = from_args(TuneConfig, build_parser().parse_args(pod_container["args"]))
    assert parsed.study_name == c.study_name and parsed.total_trials == 12 and parsed.workers == 1
    assert (parsed.epochs, parsed.seed, parsed.storage, parsed.device) == (3, 7, "postgresql://", "cpu")
    env = {e["name"]: e for e in pod_container["env"]}
    assert env["PGHOST"]["value"] == "fareflow-postgres.fareflow" and env["PGPORT"]["value"] == "5432"
    for var, key in (
        ("PGUSER", "POSTGRES_USER"),
        ("PGPASSWORD", "POSTGRES_PASSWORD"),
        ("PGDATABASE", "POSTGRES_DB"),
    ):
        assert env[var]["valueFrom"] == {"secretKeyRef": {"name": "fareflow-postgres", "key": key}}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://s3:9000"
    assert pod_container["envFrom"] == [{"secretRef": {"name": core.S3_SECRET, "optional": True}}]
    with pytest.raises(UserError, match="a tune Job is for 2 or more workers"):
        tuning.tune_job_object(SETTINGS, c, workers=1)


def test_job_and_study_names_are_stable_and_follow_the_inputs():
    a, b = config(), config()
    assert a.study_name == b.study_name and a.study_name.startswith("taxi-fare-tune-")
    other = tuning.tune_config("s3://mlpipeline/splits", 13, 3, 7, BASE)
    assert tuning.tune_job_name("s3://mlpipeline/splits", other) != a.study_name
    # where the study lives and how many workers fill it do not change which study it is
    assert tuning.tune_job_name("s3://mlpipeline/splits", config(workers=4)) == a.study_name


def test_use_study_database_needs_the_secrets_variables():
    env = {"PGUSER": "optuna", "PGPASSWORD": "x", "PGDATABASE": "optuna"}
    tuning.use_study_database(SETTINGS, env)
    assert env["PGHOST"] == "fareflow-postgres.fareflow" and env["PGPORT"] == "5432"
    with pytest.raises(UserError, match="PGPASSWORD not set: .*Secret fareflow-postgres"):
        tuning.use_study_database(SETTINGS, {"PGUSER": "optuna", "PGDATABASE": "optuna"})


def _job() -> dict:
    return tuning.tune_job_object(SETTINGS, config(), workers=2)


def test_run_job_creates_the_job_and_returns_when_complete():
    api = FakeJobs()
    api.status_script = [{}, cond("Complete")]
    done = tuning.run_job(_job(), timeout=60, api=api, core_api=FakeCoreV1(), poll=0)
    assert done["kind"] == "Job" and api.calls == ["create"]
    ((group, version, _ns, plural, _name),) = api.store  # created through the batch/v1 jobs path
    assert (group, version, plural) == ("batch", "v1", "jobs")
    # a second run finds the completed Job and creates nothing
    again = tuning.run_job(_job(), timeout=60, api=api, core_api=FakeCoreV1(), poll=0)
    assert again["status"]["conditions"][0]["type"] == "Complete" and api.calls == ["create"]


def test_a_failed_job_raises_with_its_reason_and_the_pods_logs():
    api = FakeJobs()
    api.status_script = [cond("Failed", reason="PodFailurePolicy", message="Container tune exited with 2")]
    logs = FakeCoreV1(pod_logs={"w-0": "fareflow tune: error: --splits s3://x: no _SUCCESS"})
    with pytest.raises(UserError) as err:
        tuning.run_job(_job(), timeout=60, api=api, core_api=logs, poll=0)
    assert "Failed: PodFailurePolicy Container tune exited with 2" in str(err.value)
    assert "no _SUCCESS" in str(err.value)


def test_a_job_that_never_completes_times_out():
    api = FakeJobs()
    api.status_script = [{}]
    ticks = iter(range(0, 10_000, 30))
    with pytest.raises(UserError, match=r"Job fareflow/taxi-fare-tune-\w+: no Complete condition after 60s"):
        tuning.run_job(
            _job(),
            timeout=60,
            api=api,
            core_api=FakeCoreV1(),
            poll=0,
            sleep=lambda _s: None,
            clock=lambda: next(ticks),
        )


def test_pods_refused_by_pod_security_end_the_wait_at_once():
    obj = _job()
    name = obj["metadata"]["name"]
    api = FakeJobs()
    api.status_script = [{}] * 5
    events = EventsCoreV1(
        events=[
            {
                "kind": "Job", "name": name, "type": "Warning",
                "message": f'Error creating: pods "{name}-x" is forbidden: violates PodSecurity '
                '"restricted:latest": runAsNonRoot != true',
            }
        ]
    )  # fmt: skip
    with pytest.raises(UserError, match=r'enforces Pod Security "restricted:latest", which refuses pod'):
        tuning.run_job(obj, timeout=60, api=api, core_api=events, poll=0)


@pytest.fixture(scope="module")
def postgres_server():
    from tests import postgres

    postgres.require()
    server = postgres.PostgresServer.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_run_tune_job_on_postgresql_with_the_jobs_pods_played_by_local_processes(
    postgres_server, tmp_path, monkeypatch
):
    """The task creates the study and its starting point, the "Job" runs each pod's own argv
    (two ``python -m components.tune`` processes at once, the DSN from PG* variables only),
    and the task reads the best of the study they filled."""
    import os
    import subprocess
    import sys
    from dataclasses import replace
    from pathlib import Path

    from tests.components.train.conftest import trips, write_splits

    splits = write_splits(trips(1500, 0), tmp_path / "splits", 1, True)
    postgres_server.create_database("optuna")
    pg_env = {
        "PGHOST": postgres_server.host, "PGPORT": str(postgres_server.port), "PGUSER": postgres_server.user,
        "PGPASSWORD": postgres_server.password, "PGDATABASE": "optuna",
    }  # fmt: skip
    for var, value in pg_env.items():
        monkeypatch.setenv(var, value)
    c = tuning.tune_config(str(splits), 4, 2, 3, BASE, storage=tuning.TUNE_STORAGE)
    c = replace(c, study_name=tuning.tune_job_name(str(splits), c), max_rows=500)
    seen: list[dict] = []

    def play_job(obj, timeout, **_kw):
        (container,) = obj["spec"]["template"]["spec"]["containers"]
        assert not any(postgres_server.password in str(a) for a in container["args"])
        env = {
            **os.environ,
            **pg_env,
            "PYTHONPATH": str(Path(__file__).resolve().parents[3]),
            "OMP_NUM_THREADS": "1",
        }
        pods = [
            subprocess.Popen([sys.executable, *container["command"][1:], *container["args"]], env=env,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(obj["spec"]["parallelism"])
        ]  # fmt: skip
        for p in pods:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
        seen.append(obj)
        return {**obj, "status": cond("Complete")}

    monkeypatch.setattr(tuning, "run_job", play_job)
    result = tuning.run_tune_job(SETTINGS, c, workers=2, timeout=600, log=lambda _m: None)
    assert len(seen) == 1 and seen[0]["spec"]["completions"] == 2
    numbers = [t["number"] for t in result.trials]
    assert sorted(numbers) == list(range(len(numbers))) and 4 <= len(numbers) <= 5  # docs/tune.md
    assert result.trials[0]["params"] == BASE  # the task's starting point, not the train defaults
    assert result.default_value is not None and result.best_value <= result.default_value
    # run again (a retried task): the study is full, no Job is created, the same answer
    again = tuning.run_tune_job(SETTINGS, c, workers=2, timeout=600, log=lambda _m: None)
    assert len(seen) == 1 and again.best_params == result.best_params


def test_the_wait_reads_kubernetes_1_32s_interim_job_conditions():
    """v1.32's Job controller adds SuccessCriteriaMet before Complete and FailureTarget before
    Failed (same reason and message): the wait returns on Complete only, and FailureTarget ends it
    at once, reported as the Failed it becomes."""
    api = FakeJobs()
    met = {"conditions": [{"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"}]}
    done = {"conditions": [*met["conditions"], {"type": "Complete", "status": "True"}]}
    api.status_script = [met, met, done]
    finished = tuning.run_job(_job(), timeout=60, api=api, core_api=FakeCoreV1(), poll=0)
    assert [c["type"] for c in finished["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert api.status_script == [], "polled until Complete, not returned at SuccessCriteriaMet"

    api = FakeJobs()
    target = cond(
        "FailureTarget", reason="PodFailurePolicy", message="Container tune for pod x failed with exit code 2"
    )
    api.status_script = [{}, target]
    with pytest.raises(UserError) as err:
        tuning.run_job(_job(), timeout=60, api=api, core_api=FakeCoreV1(), poll=0)
    assert " Failed: PodFailurePolicy Container tune for pod x failed with exit code 2" in str(err.value)


def test_a_job_that_is_failing_or_failed_is_replaced_on_the_next_run():
    for failed in ("Failed", "FailureTarget"):
        api = FakeJobs()
        obj = _job()
        key = ("batch", "v1", "fareflow", "jobs", obj["metadata"]["name"])
        api.store[key] = {**obj, "metadata": {**obj["metadata"], "uid": "old"}}
        api.status_script = [cond(failed), cond("Complete")]  # the old Job's, then the new one's
        done = tuning.run_job(obj, timeout=60, api=api, core_api=FakeCoreV1(), poll=0)
        assert api.calls == ["create"], failed  # deleted (gone from the store), then created again
        assert "uid" not in done["metadata"] and done["status"]["conditions"][0]["type"] == "Complete"
