"""The tune Job builder (components.common.k8s.tune_job): N identical worker pods at once, the
restricted pod security of the other builders, resources, the database credentials only as
secretKeyRefs, a user error failing the Job at once; valid against the Kubernetes 1.32 schema."""

import yaml

from components.common import k8s
from tests.components.common.test_k8s import assert_hardened
from tests.manifests.k8s_schema import validate_builtin

IMAGE = "ghcr.io/fareflow/trainer:0.1.0"
SECRET_ENV = {"PGUSER": ("db", "POSTGRES_USER"), "PGPASSWORD": ("db", "POSTGRES_PASSWORD")}


def job(**kwargs) -> dict:
    kwargs.setdefault("workers", 3)
    kwargs.setdefault("secret_env", SECRET_ENV)
    return k8s.tune_job("tune-abc", IMAGE, ["--total-trials", "12", "--storage", "postgresql://"], **kwargs)


def test_n_workers_run_at_once_and_each_must_complete():
    obj = job(env={"PGHOST": "fareflow-postgres.fareflow"}, active_deadline_seconds=600)
    assert (obj["apiVersion"], obj["kind"]) == ("batch/v1", "Job")
    assert obj["metadata"]["namespace"] == "fareflow"
    spec = obj["spec"]
    assert spec["parallelism"] == spec["completions"] == 3
    assert spec["activeDeadlineSeconds"] == 600 and spec["backoffLimit"] == 3
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == k8s.TRAINER_SERVICE_ACCOUNT
    (c,) = pod["containers"]
    assert c["command"] == ["python", "-m", "components.tune"]
    assert c["args"] == ["--total-trials", "12", "--storage", "postgresql://"]
    validate_builtin(obj)  # strict schema: every field one the Job API has


def test_pods_are_hardened_with_requests_and_limits():
    pod = job()["spec"]["template"]["spec"]
    assert_hardened(pod)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    assert c["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["privileged"] is False
    res = k8s.Resources(cpu_request="1", memory_request="2Gi", cpu_limit="2", memory_limit="3Gi")
    (c,) = job(resources=res)["spec"]["template"]["spec"]["containers"]
    assert c["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "3Gi"},
    }


def test_credentials_come_only_from_the_secret():
    obj = job(env={"PGHOST": "db.fareflow", "PGPORT": "5432"}, env_from_secret="fareflow-s3")
    (c,) = obj["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["PGPASSWORD"] == {
        "name": "PGPASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "db", "key": "POSTGRES_PASSWORD"}},
    }
    assert "value" not in env["PGUSER"] and env["PGHOST"]["value"] == "db.fareflow"
    assert c["envFrom"] == [{"secretRef": {"name": "fareflow-s3", "optional": True}}]
    # nothing in the object holds a password: only the Secret's name and key
    assert "password" not in yaml.safe_dump(obj).lower().replace("postgres_password", "").replace(
        "pgpassword", ""
    )


def test_a_user_error_fails_the_job_and_a_disruption_is_not_counted():
    rules = job()["spec"]["podFailurePolicy"]["rules"]
    assert rules == [
        {"action": "FailJob", "onExitCodes": {"containerName": "tune", "operator": "In", "values": [2]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]


def test_bad_arguments_are_user_errors():
    import pytest

    from components.common.errors import UserError

    with pytest.raises(UserError, match="workers: expected an integer >= 1"):
        job(workers=0)
    with pytest.raises(UserError, match=r"env \['PGUSER'\]: set both"):
        job(env={"PGUSER": "x"})
    with pytest.raises(UserError, match="DNS-1123"):
        k8s.tune_job("Tune_Job", IMAGE, [])
