# Container images and the container tier. Included from the top-level Makefile.
# Targets: images, kind-load, container-test, lint-images (+ podman-setup, base-image).

IMAGE_REGISTRY ?= ghcr.io/fareflow
# Tag: the package version from pyproject.toml (never latest; same as components/common/images.py).
IMAGE_TAG ?= $(shell python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
IMAGE_NAMES ?= component trainer server mlflow
CONTAINER_ENGINE ?= podman
# Base for podman builds: a locally made stand-in for python:3.11-slim-bookworm (no pulls on CI).
LOCAL_BASE_IMAGE ?= localhost/fareflow-base/python:3.11-slim-bookworm
# Empty = the Dockerfiles' pinned python:3.11-slim-bookworm (docker/kind machines).
BASE_IMAGE ?= $(if $(filter podman,$(CONTAINER_ENGINE)),$(LOCAL_BASE_IMAGE),)
TORCH_VARIANT ?= cpu
KIND_CLUSTER ?= fareflow
# Included from the top-level Makefile, use its venv (BIN) and make sure it is installed.
IMAGES_PYTHON ?= $(if $(BIN),$(BIN)/python,$(if $(wildcard .venv/bin/python),.venv/bin/python,python3))
CONTAINER_TEST_DEPS ?= $(if $(BIN),$(BIN)/.installed)
CONTAINER_PYTEST_ARGS ?= -v
HADOLINT ?= $(if $(wildcard .venv/bin/hadolint),.venv/bin/hadolint,hadolint)
SHELLCHECK ?= $(if $(wildcard .venv/bin/shellcheck),.venv/bin/shellcheck,shellcheck)
DOCKERFILES ?= $(wildcard images/*/Dockerfile)

.PHONY: images podman-setup base-image kind-load container-test lint-images

podman-setup: ## install/configure podman for this machine (runc, cgroupfs, host network; idempotent)
	images/podman-setup.sh

base-image: ## make the local python:3.11-slim-bookworm stand-in (debootstrap + podman import; kept if present)
	BASE_IMAGE=$(LOCAL_BASE_IMAGE) images/make-base.sh

images: $(if $(filter $(LOCAL_BASE_IMAGE),$(BASE_IMAGE)),base-image) ## build the images (component, trainer, server, mlflow) as REGISTRY/NAME:VERSION, never latest
	CONTAINER_ENGINE=$(CONTAINER_ENGINE) IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_TAG=$(IMAGE_TAG) \
	  BASE_IMAGE=$(BASE_IMAGE) TORCH_VARIANT=$(TORCH_VARIANT) images/build.sh $(IMAGE_NAMES)

kind-load: ## load the built images into the kind cluster (KIND_CLUSTER)
	@set -e; for name in $(IMAGE_NAMES); do \
	  ref=$(IMAGE_REGISTRY)/$$name:$(IMAGE_TAG); \
	  if [ "$(CONTAINER_ENGINE)" = docker ]; then \
	    kind load docker-image "$$ref" --name $(KIND_CLUSTER); \
	  else \
	    archive=$$(mktemp /tmp/fareflow-image.XXXXXX.tar); \
	    $(CONTAINER_ENGINE) save --format docker-archive -o "$$archive" "$$ref"; \
	    kind load image-archive "$$archive" --name $(KIND_CLUSTER); rm -f "$$archive"; \
	  fi; \
	done

container-test: images $(CONTAINER_TEST_DEPS) ## container tier: run each image's entrypoint and the pipeline via kfp DockerRunner on podman
	FAREFLOW_CONTAINER_TESTS=1 FAREFLOW_IMAGE_REGISTRY=$(IMAGE_REGISTRY) FAREFLOW_IMAGE_TAG=$(IMAGE_TAG) \
	  FAREFLOW_IMAGE_NAMES="$(IMAGE_NAMES)" \
	  $(IMAGES_PYTHON) -m pytest -m container tests/container $(CONTAINER_PYTEST_ARGS)

lint-images: checkov-venv ## lint the Dockerfiles (hadolint, checkov in .venv-checkov) and images/**.sh (shellcheck)
	$(SHELLCHECK) $(wildcard images/*.sh images/*/*.sh)
	$(HADOLINT) --config images/hadolint.yaml $(DOCKERFILES)
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework dockerfile $(addprefix -f ,$(DOCKERFILES))
