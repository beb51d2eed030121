"""Offline schema checks for Kubernetes objects.

- Built-in kinds: the strict JSON schemas shipped inside the ``kubernetes-validate`` package
  (no network), for ``K8S_VERSION``.
- PyTorchJob / MPIJob (``kubeflow.org/v1``): the ``kubeflow-training`` SDK's typed models —
  every field must be one the model declares (recursively, through the Kubernetes client's
  models for pod templates), required fields must be set, and each pod template must also
  pass the strict ``PodTemplateSpec`` schema.
- InferenceService / ServingRuntime (KServe): ``schemas/kserve-0.21.0.json``, a strict schema
  generated from the kserve 0.21.0 SDK models (the SDK itself cannot be installed beside this
  project's pins: it needs pandas<3), with Kubernetes types from kubernetes-validate.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import referencing

K8S_VERSION = "1.32"
REPO = pathlib.Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
KSERVE_SCHEMA = pathlib.Path(__file__).with_name("schemas") / "kserve-0.21.0.json"
TRAINING_KINDS = {"PyTorchJob": "KubeflowOrgV1PyTorchJob", "MPIJob": "KubeflowOrgV1MPIJob"}
KSERVE_KINDS = {"InferenceService", "ServingRuntime"}


def kubectl() -> str:
    path = shutil.which("kubectl")
    if not path:
        pytest.fail("kubectl (with its built-in kustomize) is required for the manifest tests: not on PATH")
    return path


def render(kustomize_dir: pathlib.Path | str, outside_root: bool = False) -> list[dict]:
    """``kubectl kustomize DIR`` as objects. ``outside_root``: DIR is a throwaway kustomization
    that refers to the repository's bases by absolute path."""
    import yaml

    cmd = [kubectl(), "kustomize", str(kustomize_dir)]
    if outside_root:
        cmd.append("--load-restrictor=LoadRestrictionsNone")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"kubectl kustomize {kustomize_dir} failed:\n{proc.stderr}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _definitions_dir() -> pathlib.Path:
    base = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    return base / f"v{K8S_VERSION}.0-local-strict"


def _registry() -> referencing.Registry:
    defs = json.loads((_definitions_dir() / "_definitions.json").read_text())
    return referencing.Registry().with_resource("_definitions.json", referencing.Resource.from_contents(defs))


def validate_builtin(obj: dict) -> None:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        raise AssertionError(
            f"{obj['kind']}/{obj['metadata'].get('name')}: {err.message} at {list(err.absolute_path)}"
        ) from None


def validate_pod_template(template: dict, where: str) -> None:
    schema = {"$ref": "_definitions.json#/$defs/io.k8s.api.core.v1.PodTemplateSpec"}
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    errors = sorted(validator.iter_errors(template), key=lambda e: list(e.absolute_path))
    if errors:
        raise AssertionError(f"{where}: {errors[0].message} at {list(errors[0].absolute_path)}")


def _model_class(name: str):
    from kubeflow.training import models as training_models
    from kubernetes.client import models as k8s_models

    for module in (training_models, k8s_models):
        if hasattr(module, name):
            return getattr(module, name)
    return None


def _check_typed(data, type_name: str, path: str) -> None:
    if m := re.fullmatch(r"list\[(.+)\]", type_name):
        assert isinstance(data, list), f"{path}: expected a list, got {type(data).__name__}"
        for i, item in enumerate(data):
            _check_typed(item, m.group(1), f"{path}[{i}]")
        return
    if m := re.fullmatch(r"dict\(str, (.+)\)", type_name):
        assert isinstance(data, dict), f"{path}: expected a mapping"
        for k, v in data.items():
            _check_typed(v, m.group(1), f"{path}.{k}")
        return
    scalars = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str}
    if type_name in scalars:
        ok = isinstance(data, scalars[type_name]) and not (type_name == "int" and isinstance(data, bool))
        assert ok, f"{path}: expected {type_name}, got {data!r}"
        return
    if type_name in ("object", "ResourceQuantity"):
        return
    cls = _model_class(type_name)
    assert cls is not None, f"{path}: no typed model {type_name}"
    assert isinstance(data, dict), f"{path}: expected an object ({type_name}), got {data!r}"
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key, value in data.items():
        assert key in by_json, f"{path}.{key}: not a field of {type_name} (fields: {sorted(by_json)})"
        _check_typed(value, cls.openapi_types[by_json[key]], f"{path}.{key}")


def validate_training_job(obj: dict) -> None:
    from kubeflow.training import ApiClient
    from kubeflow.training import models as training_models

    model_name = TRAINING_KINDS[obj["kind"]]
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    assert obj["apiVersion"] == "kubeflow.org/v1", f"{where}: apiVersion {obj['apiVersion']}"
    _check_typed(obj, model_name, where)

    # Required fields: the SDK models refuse None for them while deserializing.
    class _Resp:
        data = json.dumps(obj)

    client = ApiClient()
    try:
        client.deserialize(_Resp(), getattr(training_models, model_name))
    except ValueError as err:
        raise AssertionError(f"{where}: {err}") from None
    specs_key = "pytorchReplicaSpecs" if obj["kind"] == "PyTorchJob" else "mpiReplicaSpecs"
    for role, spec in obj["spec"][specs_key].items():
        validate_pod_template(spec["template"], f"{where} {role}")


def validate_kserve(obj: dict) -> None:
    schema_doc = json.loads(KSERVE_SCHEMA.read_text())
    root = schema_doc["kinds"][obj["kind"]]
    schema = {"$defs": schema_doc["$defs"], "$ref": f"#/$defs/{root}"}
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise AssertionError(
            f"{obj['kind']}/{obj['metadata']['name']}: {e.message} at {list(e.absolute_path)}"
        )
    expected = {
        "InferenceService": "serving.kserve.io/v1beta1",
        "ServingRuntime": "serving.kserve.io/v1alpha1",
    }
    assert obj["apiVersion"] == expected[obj["kind"]], f"{obj['kind']}: apiVersion {obj['apiVersion']}"


def validate(obj: dict) -> None:
    """Validate one object with the checker for its kind."""
    if obj["kind"] in TRAINING_KINDS:
        validate_training_job(obj)
    elif obj["kind"] in KSERVE_KINDS:
        validate_kserve(obj)
    else:
        validate_builtin(obj)
