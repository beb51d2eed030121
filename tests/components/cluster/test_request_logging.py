"""The predictor's per-request logging, set by the ``SERVING_REQUEST_LOGGING`` ConfigMap key:
the InferenceService the deploy step builds appends ``--request-logging=true|false`` to the
ServingRuntime's args (KServe concatenates them, runtime first), and the server, given the
runtime's args followed by those, runs with what the ConfigMap said."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.cluster import core, serving
from components.common import k8s
from components.common.errors import UserError
from components.serve.__main__ import build_parser, normalize_flags

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "manifests" / "base" / "project"


def runtime_args(name: str) -> list[str]:
    """The fareflow ServingRuntime's container args, ``{{.Name}}`` substituted as KServe does."""
    runtime = yaml.safe_load((MANIFESTS / "serving-runtime.yaml").read_text())
    (container,) = runtime["spec"]["containers"]
    return [a.replace("{{.Name}}", name) for a in container["args"]]


def server_args(isvc: dict) -> list[str]:
    """What the predictor's server is started with: the runtime's args, then the model's."""
    model = isvc["spec"]["predictor"]["model"]
    return runtime_args(isvc["metadata"]["name"]) + model.get("args", [])


def settings(**data: str) -> core.ClusterSettings:
    return core.ClusterSettings.from_config_map(data, "fareflow")


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("true", True), (" TRUE ", True)])
def test_the_config_map_sets_the_servers_request_logging(value, expected):
    isvc = serving.inference_service_object(settings(SERVING_REQUEST_LOGGING=value), "taxi-fare", "s3://b/m")
    assert isvc["spec"]["predictor"]["model"]["args"] == [f"--request-logging={str(expected).lower()}"]
    parser = build_parser()
    parsed = parser.parse_args(normalize_flags(server_args(isvc), parser))
    assert parsed.request_logging is expected and parsed.model_name == "taxi-fare"


def test_the_shipped_config_map_and_an_absent_key_both_mean_off():
    shipped = yaml.safe_load((MANIFESTS / "cluster-config.yaml").read_text())["data"]
    assert shipped["SERVING_REQUEST_LOGGING"] == "false"
    assert settings(**shipped).serving_request_logging is False
    assert settings().serving_request_logging is False
    assert core.ClusterSettings().serving_request_logging is False


def test_a_canary_runs_with_the_same_logging_as_the_stable_model():
    canary = k8s.Canary("candidate", "s3://b/m2", 10)
    isvc = serving.inference_service_object(
        settings(SERVING_REQUEST_LOGGING="true"), "taxi-fare", "s3://b/m", canary=canary
    )
    (entry,) = isvc["spec"]["canary"]
    assert entry["predictor"]["model"]["args"] == ["--request-logging=true"]


def test_the_builder_leaves_the_servers_default_when_not_told():
    isvc = k8s.inference_service("taxi-fare", "s3://b/m/")
    assert "args" not in isvc["spec"]["predictor"]["model"]
    parser = build_parser()
    assert parser.parse_args(normalize_flags(server_args(isvc), parser)).request_logging is True


@pytest.mark.parametrize("value", ["yes", "0", ""])
def test_anything_but_true_or_false_is_refused_naming_the_key(value):
    with pytest.raises(UserError, match=r"SERVING_REQUEST_LOGGING='.*': expected true or false"):
        settings(SERVING_REQUEST_LOGGING=value)
