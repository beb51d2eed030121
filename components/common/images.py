"""Container image names, shared by the kfp components, the Kubernetes builders,
``make images`` and the manifests.

Compile-time settings (environment): ``FAREFLOW_IMAGE_REGISTRY`` (default
``ghcr.io/fareflow``) and ``FAREFLOW_IMAGE_TAG`` (default: the package version).
Tags are never ``latest``: kind and KServe need a fixed tag to use a loaded image.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("fareflow")
except PackageNotFoundError:  # running from a source tree that is not installed
    VERSION = "0.1.0"

REGISTRY = os.environ.get("FAREFLOW_IMAGE_REGISTRY", "ghcr.io/fareflow").rstrip("/")
TAG = os.environ.get("FAREFLOW_IMAGE_TAG", VERSION)
if TAG == "latest":
    raise ValueError("FAREFLOW_IMAGE_TAG must not be 'latest' (kind/KServe would try to pull it)")

IMAGE_NAMES = ("component", "trainer", "server", "mlflow")


def image(name: str) -> str:
    """Full reference of one of the project's images, e.g. ghcr.io/fareflow/component:0.1.0."""
    if name not in IMAGE_NAMES:
        raise ValueError(f"unknown image {name!r}; expected one of {IMAGE_NAMES}")
    return f"{REGISTRY}/{name}:{TAG}"


COMPONENT_IMAGE = image("component")
TRAINER_IMAGE = image("trainer")
SERVER_IMAGE = image("server")
MLFLOW_IMAGE = image("mlflow")  # images/mlflow: the tracking server components/mlflow deploys
