#!/usr/bin/env bash
# Install the cluster platform fareflow runs on, with pinned versions (manifests/versions.env):
# cert-manager, Kubeflow Pipelines standalone, the Training Operator (PyTorchJob, MPIJob v1)
# and KServe in Standard (raw Deployment) mode. Waits on every CRD being Established and on
# the controllers being ready. Idempotent: everything is `apply`, so running it twice is harmless.
#
# Uses the current kubectl context. DRY_RUN=1 prints the commands instead of running them.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=manifests/scripts/lib.sh
source "${SCRIPT_DIR}/lib.sh"
# shellcheck source=manifests/versions.env
source "${SCRIPT_DIR}/../versions.env"

ROLLOUT_TIMEOUT="${ROLLOUT_TIMEOUT:-600s}"
KFP_REPO="github.com/kubeflow/pipelines/manifests/kustomize"
TRAINING_OPERATOR_REPO="github.com/kubeflow/training-operator.git/manifests/overlays/standalone"
CERT_MANAGER_URL="https://github.com/cert-manager/cert-manager/releases/download/${CERT_MANAGER_VERSION}/cert-manager.yaml"
KSERVE_URL="https://github.com/kserve/kserve/releases/download/${KSERVE_VERSION}"

require kubectl python3

install_cert_manager() {
  step "install cert-manager ${CERT_MANAGER_VERSION}"
  run kubectl apply --server-side --force-conflicts -f "${CERT_MANAGER_URL}"
  wait_crds certificates.cert-manager.io issuers.cert-manager.io clusterissuers.cert-manager.io
  local d
  for d in cert-manager cert-manager-cainjector cert-manager-webhook; do
    run kubectl -n cert-manager rollout status "deployment/${d}" --timeout="${ROLLOUT_TIMEOUT}"
  done
}

install_kfp() {
  step "install Kubeflow Pipelines ${KFP_VERSION}"
  run kubectl apply -k "${KFP_REPO}/cluster-scoped-resources?ref=${KFP_VERSION}"
  wait_crds applications.app.k8s.io
  run kubectl apply -k "${KFP_REPO}/env/platform-agnostic?ref=${KFP_VERSION}"
}

# Point the operator's PyTorchJob init container at the pinned alpine tag (loaded into kind),
# adding the flag only if it is not there yet.
set_pytorch_init_image() {
  local flag="--pytorch-init-container-image=${ALPINE_IMAGE}" args
  if [[ "${DRY_RUN}" == "1" ]]; then
    show kubectl -n kubeflow patch deployment training-operator --type=json \
      -p "[{\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args/-\",\"value\":\"${flag}\"}]"
    return 0
  fi
  args="$(kubectl -n kubeflow get deployment training-operator -o jsonpath='{.spec.template.spec.containers[0].args}')"
  if [[ "${args}" == *"${flag}"* ]]; then
    log "training-operator already uses ${ALPINE_IMAGE}"
  elif [[ -z "${args}" ]]; then
    run kubectl -n kubeflow patch deployment training-operator --type=json \
      -p "[{\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args\",\"value\":[\"${flag}\"]}]"
  else
    run kubectl -n kubeflow patch deployment training-operator --type=json \
      -p "[{\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args/-\",\"value\":\"${flag}\"}]"
  fi
}

install_training_operator() {
  step "install Training Operator ${TRAINING_OPERATOR_VERSION}"
  # Server-side: the CRDs are too large for the last-applied annotation.
  run kubectl apply --server-side --force-conflicts -k "${TRAINING_OPERATOR_REPO}?ref=${TRAINING_OPERATOR_VERSION}"
  wait_crds pytorchjobs.kubeflow.org mpijobs.kubeflow.org
  set_pytorch_init_image
  run kubectl -n kubeflow rollout status deployment/training-operator --timeout="${ROLLOUT_TIMEOUT}"
}

# Standard mode without an ingress controller: no Ingress objects (clients reach the
# predictor Service directly, or through a gateway the cluster owner adds).
patch_kserve_config() {
  local ingress
  run kubectl -n kserve patch configmap inferenceservice-config --type=merge \
    -p '{"data":{"deploy":"{\"defaultDeploymentMode\":\"Standard\"}"}}'
  if [[ "${DRY_RUN}" == "1" ]]; then
    show kubectl -n kserve patch configmap inferenceservice-config --type=merge \
      -p '{"data":{"ingress":"<current ingress config with disableIngressCreation=true>"}}'
    return 0
  fi
  ingress="$(kubectl -n kserve get configmap inferenceservice-config -o jsonpath='{.data.ingress}')"
  ingress="$(printf '%s' "${ingress}" | python3 -c \
    'import json,sys; d=json.load(sys.stdin); d["disableIngressCreation"]=True; print(json.dumps(json.dumps(d)))')"
  run kubectl -n kserve patch configmap inferenceservice-config --type=merge \
    -p "{\"data\":{\"ingress\":${ingress}}}"
}

install_kserve() {
  step "install KServe ${KSERVE_VERSION} (Standard mode)"
  run kubectl apply --server-side --force-conflicts -f "${KSERVE_URL}/kserve.yaml"
  wait_crds inferenceservices.serving.kserve.io servingruntimes.serving.kserve.io \
    clusterservingruntimes.serving.kserve.io
  run kubectl -n kserve rollout status deployment/kserve-controller-manager --timeout="${ROLLOUT_TIMEOUT}"
  # The cluster runtimes go through KServe's webhook, which may need a moment after rollout.
  retry 10 6 kubectl apply --server-side --force-conflicts -f "${KSERVE_URL}/kserve-cluster-resources.yaml"
  patch_kserve_config
}

wait_platform() {
  step "wait for the platform to be ready"
  run kubectl -n kubeflow wait --for=condition=Available deployment --all --timeout="${KFP_TIMEOUT:-900s}"
}

main() {
  install_cert_manager
  install_kfp
  install_training_operator
  install_kserve
  wait_platform
  log "platform installed: KFP ${KFP_VERSION}, Training Operator ${TRAINING_OPERATOR_VERSION}, cert-manager ${CERT_MANAGER_VERSION}, KServe ${KSERVE_VERSION}"
}

main "$@"
