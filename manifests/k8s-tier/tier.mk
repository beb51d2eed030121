# k8s tier: a real control plane, kwok nodes and the real Training Operator as local processes,
# built from pinned Go modules (manifests/k8s-tier/versions.env). Included from the Makefile.
K8S_TIER_DIR ?= $(CURDIR)/.cache/k8s-tier
K8S_TEST_ARGS ?= -q -rs
# 1: a tier that is not up fails the tests instead of skipping them (what .ci/run sets).
K8S_TIER_REQUIRED ?= 0

.PHONY: k8s-build k8s-up k8s-down k8s-test

k8s-build: ## build the k8s tier's binaries from their pinned Go modules (cached in .cache/k8s-tier/bin)
	K8S_TIER_DIR=$(K8S_TIER_DIR) bash manifests/k8s-tier/build.sh

k8s-up: install k8s-build ## start etcd, kube-apiserver, controller-manager, scheduler, kwok nodes, Training Operator
	K8S_TIER_DIR=$(K8S_TIER_DIR) PYTHON=$(abspath $(BIN))/python bash manifests/k8s-tier/up.sh

k8s-down: ## stop exactly what k8s-up started (logs stay in .cache/k8s-tier/run/logs)
	K8S_TIER_DIR=$(K8S_TIER_DIR) bash manifests/k8s-tier/down.sh

k8s-test: install ## the tests marked k8s against the running tier (skipped with a reason when it is not up)
	K8S_TIER_KUBECONFIG=$(K8S_TIER_DIR)/run/admin.kubeconfig K8S_TIER_REQUIRED=$(K8S_TIER_REQUIRED) $(BIN)/pytest -m k8s tests/k8s $(K8S_TEST_ARGS)
