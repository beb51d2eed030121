"""The deploy step: the KServe InferenceService serving a model directory, created or updated
and waited for until Ready, or rolled out as a canary beside the model served now
(``components.cluster.canary``). See docs/cluster.md.
"""

from __future__ import annotations

from components.cluster.core import ClusterSettings
from components.cluster.models import read_model_version
from components.common import k8s

MODEL_VERSION_LABEL = k8s.MODEL_VERSION_LABEL  # the InferenceService's model (model.json's model_version)


def check_deploy_request(name: str, canary_percent: int = 0) -> None:
    """Refuse, before a run, an InferenceService ``name`` or a ``canary_percent`` the deploy step
    would refuse only after training: ``name`` as a DNS label whose predictor Services fit (with
    a rollout's canary beside it when ``canary_percent`` > 0), ``canary_percent`` 0 or 1-100.
    What the project's ConfigMap decides (the deployment mode, autoscaling) is checked by deploy."""
    from components.cluster import canary as rollout
    from components.common.errors import UserError

    if type(canary_percent) is not int:
        raise UserError(f"canary_percent {canary_percent!r}: expected an integer, 0 (off) or 1-100")
    candidate = None
    if canary_percent:
        rollout.CanaryCheck(traffic_percent=canary_percent)
        uri = "s3://check/candidate/"
        candidate = k8s.Canary(rollout.canary_name(uri), uri, canary_percent)
    k8s.inference_service(name, "s3://check/stable/", canary=candidate)


def inference_service_object(
    settings: ClusterSettings,
    name: str,
    model_s3: str,
    predictor_name: str | None = None,
    canary: k8s.Canary | None = None,
    model_version: str | None = None,
) -> dict:
    """The InferenceService serving the model directory at ``model_s3`` (as a prefix ending in
    ``/``, so KServe's download cannot pick up a sibling key such as ``model-old/...``), with an
    optional candidate beside it (``canary``)."""
    if canary is not None:
        canary = k8s.Canary(canary.name, canary.storage_uri.rstrip("/") + "/", canary.traffic_percent)
    return k8s.inference_service(
        name,
        model_s3.rstrip("/") + "/",
        predictor_name=predictor_name,
        canary=canary,
        namespace=settings.namespace,
        deployment_mode=settings.serving_deployment_mode,
        min_replicas=settings.serving_min_replicas,
        max_replicas=settings.serving_max_replicas,
        scale_metric=settings.serving_scale_metric or None,
        scale_target=settings.serving_scale_target or None,
        gpu=settings.gpu(settings.serving_gpus),
        request_logging=settings.serving_request_logging,
        labels={
            "app.kubernetes.io/component": "serve",
            **({MODEL_VERSION_LABEL: model_version} if model_version else {}),
        },
    )


def deploy(obj: dict, timeout: float, *, api=None, apps_api=None, poll: float = 10.0) -> dict:
    """Create or update the InferenceService and wait until it is Ready and its predictor runs
    this ``storageUri`` (``k8s_api.wait``); return a summary."""
    from components.common import k8s_api

    k8s_api.apply(obj, api=api)
    ready = k8s_api.wait(
        obj["kind"],
        obj["metadata"]["name"],
        obj["metadata"]["namespace"],
        timeout,
        poll,
        api=api,
        apps_api=apps_api,
    )
    status = ready.get("status") or {}
    name = obj["metadata"]["name"]
    return {
        "name": name,
        "namespace": obj["metadata"]["namespace"],
        "url": status.get("url", ""),
        "storage_uri": obj["spec"]["predictor"]["model"]["storageUri"],
        "model_version": (obj["metadata"].get("labels") or {}).get(MODEL_VERSION_LABEL),
        "v1_predict": f"/v1/models/{name}:predict",
        "v2_infer": f"/v2/models/{name}/infer",
    }


def deploy_canary(
    settings: ClusterSettings,
    name: str,
    model_s3: str,
    check,
    timeout: float,
    *,
    api=None,
    apps_api=None,
    poll: float = 10.0,
    predictor_url=None,
) -> dict:
    """Roll ``model_s3`` out as a canary of the model ``name`` serves now, check it, promote or
    roll back (``components.cluster.canary``); the first model is deployed as ``deploy`` does.
    ``predictor_url(predictor_name)``: where a predictor answers (default: its Service's
    in-cluster URL, which the deploy task in the kubeflow namespace reaches)."""
    from components.cluster import canary as rollout

    def build(
        uri: str,
        predictor_name: str | None = None,
        canary: k8s.Canary | None = None,
        model_version: str | None = None,
    ) -> dict:
        return inference_service_object(
            settings, name, uri, predictor_name=predictor_name, canary=canary, model_version=model_version
        )

    return rollout.rollout(
        build,
        model_s3.rstrip("/") + "/",
        check,
        deploy=lambda obj: deploy(obj, timeout, api=api, apps_api=apps_api, poll=poll),
        predictor_url=predictor_url
        or (lambda pname: rollout.in_cluster_url(name, settings.namespace, pname)),
        model_name=name,
        api=api,
        poll=poll,
        version_of=read_model_version,
    )
