#!/usr/bin/env bash
# Install the cluster platform fareflow runs on, with pinned versions (manifests/versions.env):
# cert-manager, Kubeflow Pipelines standalone, the Training Operator (PyTorchJob, MPIJob v1)
# and KServe in Standard (raw Deployment) mode, or with KSERVE_MODE=Knative, Knative Serving
# with Kourier first and KServe in Knative mode. Waits on every CRD being Established and on
# the controllers being ready. Idempotent: everything is `apply`, so running it twice is harmless.
# The order and the upstream files each step follows: docs/kind-test.md.
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
METRICS_SERVER_URL="https://github.com/kubernetes-sigs/metrics-server/releases/download/${METRICS_SERVER_VERSION}/components.yaml"
KNATIVE_SERVING_URL="https://github.com/knative/serving/releases/download/knative-v${KNATIVE_SERVING_VERSION}"
KOURIER_URL="https://github.com/knative/net-kourier/releases/download/knative-v${KOURIER_VERSION}/kourier.yaml"
# Every controller kserve.yaml deploys (config/overlays/all: KServe, LocalModel, LLMISvc). The
# LLMISvc controller serves the webhooks (failurePolicy: Fail) that admit the
# LLMInferenceServiceConfigs in kserve-cluster-resources.yaml, so all of them come up first.
KSERVE_DEPLOYMENTS=(kserve-controller-manager kserve-localmodel-controller-manager llmisvc-controller-manager)

case "${KSERVE_MODE}" in
  Standard | Knative) ;;
  *) die "KSERVE_MODE=${KSERVE_MODE}: expected Standard or Knative" ;;
esac

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

# Add FLAG to the operator's arguments if it is not there yet (a second run changes nothing).
add_operator_flag() {
  local flag="$1" args
  if [[ "${DRY_RUN}" == "1" ]]; then
    show kubectl -n kubeflow patch deployment training-operator --type=json \
      -p "[{\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args/-\",\"value\":\"${flag}\"}]"
    return 0
  fi
  args="$(kubectl -n kubeflow get deployment training-operator -o jsonpath='{.spec.template.spec.containers[0].args}')"
  if [[ "${args}" == *"${flag}"* ]]; then
    log "training-operator already has ${flag}"
  elif [[ -z "${args}" ]]; then
    run kubectl -n kubeflow patch deployment training-operator --type=json \
      -p "[{\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args\",\"value\":[\"${flag}\"]}]"
  else
    run kubectl -n kubeflow patch deployment training-operator --type=json \
      -p "[{\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args/-\",\"value\":\"${flag}\"}]"
  fi
}

# Pinned images for what the operator injects: the PyTorchJob init container (alpine, loaded
# into kind) and the v1 MPIJob launcher's kubectl-delivery init container (the operator's default
# is that image's :latest tag; MPI_KUBECTL_DELIVERY_IMAGE pins the one built with this release).
set_operator_images() {
  add_operator_flag "--pytorch-init-container-image=${ALPINE_IMAGE}"
  add_operator_flag "--mpi-kubectl-delivery-image=${MPI_KUBECTL_DELIVERY_IMAGE}"
}

# The operator's PyTorchJob init container, from a template with a security context that Pod
# Security "restricted" admits (manifests/platform/pytorch-init-container.yaml): mounted where
# the operator looks by default (--pytorch-init-container-template-file, /etc/config/initContainer.yaml).
# A strategic-merge patch keyed by name, so a second run changes nothing.
set_pytorch_init_template() {
  local template="${SCRIPT_DIR}/../platform/pytorch-init-container.yaml"
  show kubectl -n kubeflow create configmap training-operator-init-container \
    --from-file=initContainer.yaml="${template}" --dry-run=client -o yaml "|" \
    kubectl apply --server-side --force-conflicts -f -
  if [[ "${DRY_RUN}" != "1" ]]; then
    kubectl -n kubeflow create configmap training-operator-init-container \
      --from-file=initContainer.yaml="${template}" --dry-run=client -o yaml |
      kubectl apply --server-side --force-conflicts -f -
  fi
  run kubectl -n kubeflow patch deployment training-operator --type=strategic -p \
    '{"spec":{"template":{"spec":{"volumes":[{"name":"pytorch-init-container","configMap":{"name":"training-operator-init-container"}}],"containers":[{"name":"training-operator","volumeMounts":[{"name":"pytorch-init-container","mountPath":"/etc/config","readOnly":true}]}]}}}}'
}

install_training_operator() {
  step "install Training Operator ${TRAINING_OPERATOR_VERSION}"
  # Server-side: the CRDs are too large for the last-applied annotation.
  run kubectl apply --server-side --force-conflicts -k "${TRAINING_OPERATOR_REPO}?ref=${TRAINING_OPERATOR_VERSION}"
  wait_crds pytorchjobs.kubeflow.org mpijobs.kubeflow.org
  set_operator_images
  set_pytorch_init_template
  run kubectl -n kubeflow rollout status deployment/training-operator --timeout="${ROLLOUT_TIMEOUT}"
}

# The Knative feature flags install_knative turns on (config-features).
KNATIVE_FEATURES='{"kubernetes.podspec-securitycontext":"enabled","kubernetes.podspec-nodeselector":"enabled","kubernetes.podspec-tolerations":"enabled"}'

# Knative Serving (CRDs, core, Kourier as the networking layer), before KServe: KServe's
# controller looks for the Knative Service CRD when it starts.
install_knative() {
  step "install Knative Serving ${KNATIVE_SERVING_VERSION} with Kourier ${KOURIER_VERSION}"
  run kubectl apply --server-side --force-conflicts -f "${KNATIVE_SERVING_URL}/serving-crds.yaml"
  wait_crds services.serving.knative.dev configurations.serving.knative.dev revisions.serving.knative.dev \
    routes.serving.knative.dev podautoscalers.autoscaling.internal.knative.dev \
    ingresses.networking.internal.knative.dev
  run kubectl apply --server-side --force-conflicts -f "${KNATIVE_SERVING_URL}/serving-core.yaml"
  run kubectl apply --server-side --force-conflicts -f "${KOURIER_URL}"
  rollout_all knative-serving activator autoscaler controller webhook net-kourier-controller
  rollout_all kourier-system 3scale-kourier-gateway
  # Knative's webhook validates its ConfigMaps: patched once it serves.
  retry 10 6 kubectl -n knative-serving patch configmap config-network --type=merge \
    -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
  # A domain Kourier's external gateway serves (Knative's default svc.cluster.local is not
  # exposed on the ingress; KServe's own Kourier template sets example.com the same way).
  run kubectl -n knative-serving patch configmap config-domain --type=merge -p '{"data":{"example.com":""}}'
  # The pod fields fareflow's predictors set, which Knative refuses while their feature flags
  # are off (the default; knative.dev/serving pkg/apis/serving/fieldmask.go): the pod
  # securityContext (non-root, fsGroup, seccomp) always, nodeSelector and tolerations on GPU
  # node pools. KServe's Knative mode would otherwise fail to create the predictor's Service.
  run kubectl -n knative-serving patch configmap config-features --type=merge \
    -p "{\"data\":${KNATIVE_FEATURES}}"
}

# Standard mode without an ingress controller: no Ingress objects (clients reach the
# predictor Service directly, or through a gateway the cluster owner adds). Knative mode
# through Kourier: no Istio VirtualService (as KServe's own Kourier e2e job configures it).
patch_kserve_config() {
  local ingress key
  run kubectl -n kserve patch configmap inferenceservice-config --type=merge \
    -p "{\"data\":{\"deploy\":\"{\\\"defaultDeploymentMode\\\":\\\"${KSERVE_MODE}\\\"}\"}}"
  key="disableIngressCreation"
  [[ "${KSERVE_MODE}" == "Knative" ]] && key="disableIstioVirtualHost"
  if [[ "${DRY_RUN}" == "1" ]]; then
    show kubectl -n kserve patch configmap inferenceservice-config --type=merge \
      -p "{\"data\":{\"ingress\":\"<current ingress config with ${key}=true>\"}}"
    return 0
  fi
  ingress="$(kubectl -n kserve get configmap inferenceservice-config -o jsonpath='{.data.ingress}')"
  ingress="$(printf '%s' "${ingress}" | KEY="${key}" python3 -c \
    'import json,os,sys; d=json.load(sys.stdin); d[os.environ["KEY"]]=True; print(json.dumps(json.dumps(d)))')"
  run kubectl -n kserve patch configmap inferenceservice-config --type=merge \
    -p "{\"data\":{\"ingress\":${ingress}}}"
}

# Since v0.17 kserve.yaml carries no Namespace (hack/release/generate-install.sh drops it) but
# holds a ClusterStorageContainer beside its CRD, so: namespace, then the CRDs (the release's
# kserve-crds.yaml) and wait, then kserve.yaml, then every controller, then the runtimes.
install_kserve() {
  step "install KServe ${KSERVE_VERSION} (${KSERVE_MODE} mode)"
  ensure_namespace kserve
  run kubectl apply --server-side --force-conflicts -f "${KSERVE_URL}/kserve-crds.yaml"
  wait_crds inferenceservices.serving.kserve.io servingruntimes.serving.kserve.io \
    clusterservingruntimes.serving.kserve.io clusterstoragecontainers.serving.kserve.io
  run kubectl apply --server-side --force-conflicts -f "${KSERVE_URL}/kserve.yaml"
  # kserve.yaml's own CRDs: the LLMISvc kinds kserve-cluster-resources.yaml instantiates.
  wait_crds llminferenceserviceconfigs.serving.kserve.io llminferenceservices.serving.kserve.io
  rollout_all kserve "${KSERVE_DEPLOYMENTS[@]}"
  # The webhooks may need a moment after the rollout before their endpoints answer.
  retry 10 6 kubectl apply --server-side --force-conflicts -f "${KSERVE_URL}/kserve-cluster-resources.yaml"
  # A restricted security context for the storage initializer (Pod Security in the projects).
  run kubectl patch clusterstoragecontainer default --type=merge \
    --patch-file "${SCRIPT_DIR}/../platform/kserve-storage-initializer-patch.yaml"
  patch_kserve_config
}

wait_platform() {
  step "wait for the platform to be ready"
  run kubectl -n kubeflow wait --for=condition=Available deployment --all --timeout="${KFP_TIMEOUT:-900s}"
}

# metrics-server: the CPU metrics KServe's HPA (Standard mode) scales on. A kind kubelet's serving
# certificate is self-signed, hence --kubelet-insecure-tls (added once; a second run changes nothing).
install_metrics_server() {
  step "install metrics-server ${METRICS_SERVER_VERSION}"
  run kubectl apply --server-side --force-conflicts -f "${METRICS_SERVER_URL}"
  local flag="--kubelet-insecure-tls" args
  if [[ "${DRY_RUN}" == "1" ]]; then
    args=""
  else
    args="$(kubectl -n kube-system get deployment metrics-server -o jsonpath='{.spec.template.spec.containers[0].args}')"
  fi
  if [[ "${args}" != *"${flag}"* ]]; then
    run kubectl -n kube-system patch deployment metrics-server --type=json \
      -p "[{\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args/-\",\"value\":\"${flag}\"}]"
  fi
  run kubectl -n kube-system rollout status deployment/metrics-server --timeout="${ROLLOUT_TIMEOUT}"
}

main() {
  install_cert_manager
  install_metrics_server
  install_kfp
  install_training_operator
  if [[ "${KSERVE_MODE}" == "Knative" ]]; then
    install_knative
  fi
  install_kserve
  wait_platform
  log "platform installed: KFP ${KFP_VERSION}, Training Operator ${TRAINING_OPERATOR_VERSION}, cert-manager ${CERT_MANAGER_VERSION}, KServe ${KSERVE_VERSION} (${KSERVE_MODE})"
}

main "$@"
