"""The InferenceService as a plain dict: ``serving.kserve.io/v1beta1`` using the
``fareflow-server`` ServingRuntime from ``manifests/base`` (open inference protocol v2, and v1),
Standard (raw Deployment + HPA) or Knative deployment mode, min/max replicas, an optional
canary beside the stable predictor; and the predictor's Service name.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ..errors import UserError
from .pods import (
    DEFAULT_NAMESPACE,
    GpuScheduling,
    Resources,
    check_name,
    container_security_context,
    metadata,
    pod_security_context,
    scratch_volumes,
)

# An InferenceService's label naming the model its predictor serves (model.json's model_version).
MODEL_VERSION_LABEL = "fareflow.io/model-version"
SERVING_SERVICE_ACCOUNT = "fareflow-serving"
SERVING_RUNTIME = "fareflow-server"
MODEL_FORMAT = "fareflow"
DEPLOYMENT_MODES = ("Standard", "RawDeployment", "Knative", "Serverless")
KNATIVE_MODES = ("Knative", "Serverless")
PROTOCOLS = ("v1", "v2")
# KServe v0.21's validator (pkg/apis/serving/v1beta1/inference_service_validation.go): the HPA
# class takes cpu or memory, Knative's KPA only concurrency or rps. First = the default.
HPA_METRICS = ("cpu", "memory")
KPA_METRICS = ("concurrency", "rps")
DEFAULT_SCALE_TARGETS = {"cpu": 70, "concurrency": 10, "rps": 100}


@dataclass(frozen=True)
class Canary:
    """A candidate model served beside the stable one (KServe's ``spec.canary``, Standard mode):
    its own Deployment ``ISVC-NAME-predictor`` with a fixed number of replicas, sharing
    ``traffic_percent`` of the requests (KServe v0.20.0+
    ``pkg/controller/v1beta1/inferenceservice/components/predictor.go``,
    ``reconcileCanaryDeployments``; validated by ``inference_service_validation.go``
    ``validateCanarySpecs``)."""

    name: str
    storage_uri: str
    traffic_percent: int

    def __post_init__(self) -> None:
        check_name(self.name)
        if not 0 <= self.traffic_percent <= 100:
            raise UserError(f"canary traffic_percent={self.traffic_percent}: expected an integer in [0, 100]")
        _check_storage_uri(self.storage_uri)


def predictor_service(isvc: str, predictor_name: str | None = None) -> str:
    """The predictor's Deployment and Service name (KServe ``constants.PredictorServiceName``)."""
    return f"{isvc}-{predictor_name}-predictor" if predictor_name else f"{isvc}-predictor"


def _check_storage_uri(storage_uri: str) -> None:
    if not storage_uri.startswith(("s3://", "pvc://", "gs://", "https://")):
        raise UserError(f"storage_uri {storage_uri!r}: expected s3://, pvc://, gs:// or https://")


def inference_service(
    name: str,
    storage_uri: str,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    runtime: str = SERVING_RUNTIME,
    model_format: str = MODEL_FORMAT,
    protocol: str = "v2",
    deployment_mode: str = "Standard",
    min_replicas: int = 1,
    max_replicas: int = 3,
    scale_metric: str | None = None,
    scale_target: int | None = None,
    resources: Resources = Resources("250m", "512Mi", "1", "1Gi"),  # noqa: B008 (a frozen dataclass)
    gpu: GpuScheduling | None = None,
    service_account: str = SERVING_SERVICE_ACCOUNT,
    labels: dict[str, str] | None = None,
    predictor_name: str | None = None,
    canary: Canary | None = None,
    request_logging: bool | None = None,
) -> dict:
    """An InferenceService for a model under ``storage_uri`` (s3://… or pvc://…).

    ``predictor_name`` names the stable predictor (its Deployment ``NAME-PREDICTOR-predictor``;
    a promoted canary keeps its name). ``canary``: a candidate model beside it (Standard mode).

    The URL's model name (``/v1/models/NAME:predict``, ``/v2/models/NAME/infer``) is ``name``:
    the ServingRuntime passes ``{{.Name}}`` to the server as its model name.

    ``scale_metric``: Standard (HPA) ``cpu`` (default) or ``memory``; Knative (KPA)
    ``concurrency`` (default) or ``rps``. ``scale_target`` defaults per metric (cpu 70 %,
    concurrency 10, rps 100); memory has no default and needs one. cpu and memory targets are a
    % of the container's request, 1-100.

    ``request_logging``: passed to the server as ``--request-logging=true|false`` (KServe appends
    a predictor's args to the ServingRuntime's, and the server's last flag wins); None leaves
    the server's default (on). Off drops the per-request log lines (KServe's Prometheus metrics
    stay) and lets the prediction routes take the server's fast lane (docs/serve.md).
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"protocol {protocol!r}: expected one of {PROTOCOLS}")
    if deployment_mode not in DEPLOYMENT_MODES:
        raise UserError(f"deployment_mode {deployment_mode!r}: expected one of {DEPLOYMENT_MODES}")
    knative = deployment_mode in KNATIVE_MODES
    metrics = KPA_METRICS if knative else HPA_METRICS
    scale_metric = scale_metric or metrics[0]
    if scale_metric not in metrics:
        raise UserError(
            f"scale_metric {scale_metric!r}: expected one of {metrics} in {deployment_mode} mode "
            f"({'Knative KPA' if knative else 'HPA'} autoscaling)"
        )
    scale_target = DEFAULT_SCALE_TARGETS.get(scale_metric) if scale_target is None else scale_target
    if scale_target is None:
        # KServe builds a memory HPA only from a scaleTarget; without one the HPA has no metric and
        # the API server defaults it to 80 % CPU, so "memory" would silently scale on CPU.
        raise UserError(
            f"scale_metric {scale_metric}: expected a scale_target (% of the memory request, 1-100; "
            "SERVING_SCALE_TARGET in the fareflow-cluster ConfigMap)"
        )
    # HPA targets are utilisation % of the request: KServe's webhook refuses a scaleTarget over 100
    # for every HPA metric (validateScalingHPACompExtension), memory included.
    percent = scale_metric in HPA_METRICS
    if not (1 <= scale_target <= (100 if percent else 10**9)):
        bound = f"[1, 100] (% of the {scale_metric} request)" if percent else ">= 1"
        raise UserError(f"scale_target={scale_target}: expected {bound} for scale_metric {scale_metric}")
    if min_replicas < (0 if knative else 1):
        raise UserError(
            f"min_replicas={min_replicas}: scale to zero needs the Knative mode; expected >= 1 in {deployment_mode}"
        )
    if max_replicas < max(min_replicas, 1):
        raise UserError(f"max_replicas={max_replicas}: expected >= min_replicas ({min_replicas}) and >= 1")
    _check_storage_uri(storage_uri)
    if predictor_name is not None:
        check_name(predictor_name)
    if canary is not None:
        if knative:
            raise UserError(
                f"canary: KServe serves a canary beside the stable model in Standard mode only, not {deployment_mode}"
            )
        if canary.name == predictor_name:
            raise UserError(f"canary name {canary.name!r}: expected a name other than the stable predictor's")
    # KServe names each predictor's Deployment and Service NAME[-PREDICTOR]-predictor and checks
    # no length; a Service name over 63 characters is refused only when KServe creates it, and the
    # InferenceService then never gets ready.
    for predictor in dict.fromkeys((predictor_name, canary.name if canary is not None else None)):
        service = predictor_service(name, predictor)
        if len(service) > 63:
            raise UserError(
                f"name {name!r}: its predictor Service {service!r} would be {len(service)} characters, "
                f"over Kubernetes' 63; expected a name of at most {63 - (len(service) - len(name))}"
            )
    annotations = {"serving.kserve.io/deploymentMode": deployment_mode}
    if not knative:
        annotations["serving.kserve.io/autoscalerClass"] = "hpa"
    gpus = gpu.gpus_per_pod if gpu else 0
    volumes, mounts = scratch_volumes()
    predictor: dict = {
        "serviceAccountName": service_account,
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "scaleMetric": scale_metric,
        **({"scaleTarget": scale_target} if scale_target is not None else {}),
        "securityContext": pod_security_context(),
        "model": {
            "modelFormat": {"name": model_format},
            "runtime": runtime,
            "protocolVersion": protocol,
            "storageUri": storage_uri,
            "resources": resources.to_dict(gpus),
            "securityContext": container_security_context(),
            "volumeMounts": mounts,
        },
        "volumes": volumes,
    }
    if request_logging is not None:
        predictor["model"]["args"] = [f"--request-logging={str(request_logging).lower()}"]
    if gpu is not None:
        predictor["nodeSelector"] = dict(gpu.node_selector)
        predictor["tolerations"] = gpu.tolerations()
    if predictor_name is not None:
        predictor["name"] = predictor_name
    spec: dict = {"predictor": predictor}
    if canary is not None:
        # KServe builds the canary's pods from the stable predictor with these fields merged in;
        # it refuses replica or autoscaling settings here (the canary's replicas are fixed).
        model = {**copy.deepcopy(predictor["model"]), "storageUri": canary.storage_uri}
        spec["canary"] = [
            {"predictor": {"name": canary.name, "model": model}, "trafficPercent": canary.traffic_percent}
        ]
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata(name, namespace, labels, annotations),
        "spec": spec,
    }
