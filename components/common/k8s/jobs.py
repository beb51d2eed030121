"""The tune step's ``batch/v1`` Job as a plain dict: N identical pods (``parallelism`` =
``completions`` = N), each one Optuna worker (``python -m components.tune``) on one shared study
in PostgreSQL, whose credentials come from a Secret (``secretKeyRef`` env), never from the
object itself. A worker's user error (exit 2) fails the Job at once (its podFailurePolicy).
"""

from __future__ import annotations

from ..errors import UserError
from .pods import (
    DEFAULT_NAMESPACE,
    TRAINER_SERVICE_ACCOUNT,
    Resources,
    container_security_context,
    env_from,
    env_list,
    metadata,
    pod_template,
)

# A tune worker's exit status for a user error (components.common.errors: one line, exit 2):
# the same inputs fail the same way, so the Job fails at once instead of retrying.
USER_ERROR_EXIT = 2


def tune_job(
    name: str,
    image: str,
    args: list[str],
    *,
    namespace: str = DEFAULT_NAMESPACE,
    workers: int = 2,
    resources: Resources = Resources(),  # noqa: B008 (a frozen dataclass)
    env: dict[str, str] | None = None,
    env_from_secret: str | None = None,
    secret_env: dict[str, tuple[str, str]] | None = None,
    service_account: str = TRAINER_SERVICE_ACCOUNT,
    labels: dict[str, str] | None = None,
    backoff_limit: int = 3,
    active_deadline_seconds: int | None = None,
    ttl_seconds_after_finished: int = 3600,
    module: str = "components.tune",
) -> dict:
    """A ``batch/v1`` Job: ``workers`` pods at once (``parallelism`` = ``completions`` =
    ``workers``), each ``python -m MODULE ARGS``: one Optuna worker on the shared study, which
    exits 0 once the study holds its total, so every pod completes.

    ``secret_env``: ``{ENV_NAME: (secret, key)}``, each a ``secretKeyRef`` (the database user and
    password: in the pod's environment only, never in the object, the argv or a log).
    ``env_from_secret``: a Secret whose keys all become environment variables (S3 credentials,
    optional). Pods never restart in place (``restartPolicy: Never``); a failed pod is replaced up
    to ``backoff_limit`` times, except that a user error (exit 2) fails the Job at once and a pod
    lost to a disruption (preemption, eviction, node drain) is replaced without counting
    (``podFailurePolicy``). The replacement joins the same study: the trial its predecessor was
    running turns FAIL at its stale heartbeat and is run again."""
    if workers < 1:
        raise UserError(f"workers: expected an integer >= 1, got {workers}")
    if backoff_limit < 0:
        raise UserError(f"backoff_limit: expected an integer >= 0, got {backoff_limit}")
    secret_refs = [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for var, (secret, key) in (secret_env or {}).items()
    ]
    clash = sorted(set(secret_env or {}) & set(env or {}))
    if clash:
        raise UserError(f"env {clash}: set both as a value and from a Secret")
    container = {
        "name": "tune",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", module],
        "args": list(args),
        "env": env_list(env) + secret_refs,
        **env_from(env_from_secret),
        "resources": resources.to_dict(),
        "securityContext": container_security_context(),
    }
    template = pod_template(container, service_account=service_account, gpu=None, labels=labels)
    template["spec"]["restartPolicy"] = "Never"  # podFailurePolicy needs Never
    spec: dict = {
        "parallelism": workers,
        "completions": workers,
        "backoffLimit": backoff_limit,
        "ttlSecondsAfterFinished": ttl_seconds_after_finished,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": "tune", "operator": "In", "values": [USER_ERROR_EXIT]},
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]
        },
        "template": template,
    }
    if active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = int(active_deadline_seconds)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(name, namespace, labels),
        "spec": spec,
    }
