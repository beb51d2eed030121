# Cluster path: kind cluster, platform install, end-to-end test, manifest checks.
# Included from the top-level Makefile. `images` and `kind-load` come from images/images.mk
# (kind-test calls them with IMAGE_TAG, KIND_CLUSTER and CONTAINER_ENGINE=docker).

# The project venv's python (the top-level Makefile's PYTHON is the interpreter that creates it).
CLUSTER_PYTHON ?= $(BIN)/python
KIND ?= kind
KUBECTL ?= kubectl
KIND_CLUSTER ?= fareflow
# IMAGE_TAG is images.mk's (the package version); 0.1.0 when images.mk is not included.
KIND_TEST_IMAGE_TAG = $(or $(IMAGE_TAG),0.1.0)
KEEP_CLUSTER ?= 0
DRY_RUN ?= 0
RUN_TIMEOUT ?= 3600
ISVC_NAME ?= taxi-fare
# KServe mode kind-test and platform-install use: Standard, or Knative (Knative Serving + Kourier first).
KSERVE_MODE ?= Standard
# How kind-test's pipeline run trains: ddp (PyTorchJob) or horovod (MPIJob; the project namespace
# then enforces Pod Security baseline, components/mpijob-baseline).
TRAIN_BACKEND ?= ddp
PIPELINE_PARAMS ?=
KIND_NODE_IMAGE ?= $(shell . manifests/versions.env && echo $$KIND_NODE_IMAGE)
# The driver runs from other directories' point of view: pass python as an absolute path.
KIND_TEST_PYTHON = $(if $(findstring /,$(CLUSTER_PYTHON)),$(abspath $(CLUSTER_PYTHON)),$(CLUSTER_PYTHON))

.PHONY: kind-up kind-down platform-install kind-test kind-test-dry kind-test-knative kind-test-horovod manifests-render manifests-check \
	manifests-policy

kind-up: ## create the kind cluster from manifests/kind/kind-config.yaml (KIND_CLUSTER)
	$(KIND) get clusters | grep -Fxq $(KIND_CLUSTER) || \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --image $(KIND_NODE_IMAGE) \
	    --config manifests/kind/kind-config.yaml --wait 5m

kind-down: ## delete the kind cluster (KIND_CLUSTER)
	$(KIND) delete cluster --name $(KIND_CLUSTER)

platform-install: ## install cert-manager, KFP, Training Operator, KServe (pinned; KSERVE_MODE) into the current context
	DRY_RUN=$(DRY_RUN) KSERVE_MODE=$(KSERVE_MODE) bash manifests/scripts/install-platform.sh

kind-test: install ## end to end on kind: cluster, platform, images, pipeline run, inference (KEEP_CLUSTER=1 keeps it)
	CLUSTER_NAME=$(KIND_CLUSTER) IMAGE_TAG=$(KIND_TEST_IMAGE_TAG) KEEP_CLUSTER=$(KEEP_CLUSTER) \
	  DRY_RUN=$(DRY_RUN) RUN_TIMEOUT=$(RUN_TIMEOUT) ISVC_NAME=$(ISVC_NAME) KSERVE_MODE=$(KSERVE_MODE) \
	  TRAIN_BACKEND=$(TRAIN_BACKEND) PIPELINE_PARAMS="$(PIPELINE_PARAMS)" PYTHON=$(KIND_TEST_PYTHON) MAKE="$(MAKE)" \
	  bash manifests/scripts/kind-test.sh

kind-test-dry: ## print every command kind-test would run, in order, with resolved versions and tags
	$(MAKE) --no-print-directory kind-test DRY_RUN=1

kind-test-knative: ## kind-test with KServe in Knative mode (Knative Serving + Kourier, scale to zero)
	$(MAKE) --no-print-directory kind-test KSERVE_MODE=Knative

kind-test-horovod: ## kind-test training with Horovod as an MPIJob (the project namespace enforces baseline)
	$(MAKE) --no-print-directory kind-test TRAIN_BACKEND=horovod

manifests-render: ## print the rendered kind overlay (OVERLAY=base|overlays/kind|overlays/gpu-cluster)
	$(KUBECTL) kustomize manifests/$(or $(OVERLAY),overlays/kind)

manifests-check: install ## render every overlay, schema-check objects, shellcheck scripts, dry-run order
	$(CLUSTER_PYTHON) -m pytest -q tests/manifests tests/components/common/test_k8s.py tests/pipelines/test_submit.py \
	  -m "not checkov"

manifests-policy: install checkov-venv ## checkov over the rendered manifests; fails on any check not skipped with a reason
	CHECKOV=$(abspath $(CHECKOV_VENV))/bin/checkov FAREFLOW_REQUIRE_CHECKOV=1 \
	  $(CLUSTER_PYTHON) -m pytest -q tests/manifests/test_policy.py -m checkov
