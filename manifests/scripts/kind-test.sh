#!/usr/bin/env bash
# End-to-end test of the cluster path on a throwaway kind cluster:
#   create the cluster -> install the platform -> build and load the images -> apply
#   overlays/kind -> generate a small data set, upload it to KFP's object store and create the
#   fareflow-s3 Secret the pipeline's ingest reads -> compile and submit the pipeline with
#   kfp.Client (port-forward to the KFP API) -> wait for the run to succeed -> send v1 and v2
#   inference requests to the InferenceService and check the answers -> (on failure) collect
#   logs -> delete the cluster.
#
# Settings (environment): CLUSTER_NAME, KEEP_CLUSTER=1 (keep the cluster), DRY_RUN=1 (print
# every command instead of running it), IMAGE_TAG, RUN_TIMEOUT (seconds), ISVC_NAME,
# NAMESPACE, TRAIN_WORKERS, PIPELINE_PARAMS ("key=value ..."; source, model_name,
# train_workers and namespace default to the data uploaded here and the settings above),
# DATA_ROWS, DATA_MONTHS, DATA_URI, ARTIFACT_DIR, KFP_LOCAL_PORT, MODEL_LOCAL_PORT,
# MINIO_LOCAL_PORT, PYTHON, MAKE. Versions come from manifests/versions.env.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${SCRIPT_DIR}/../.." && pwd)"
# shellcheck source=manifests/scripts/lib.sh
source "${SCRIPT_DIR}/lib.sh"
# shellcheck source=manifests/versions.env
source "${SCRIPT_DIR}/../versions.env"

CLUSTER_NAME="${CLUSTER_NAME:-fareflow}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
IMAGE_TAG="${IMAGE_TAG:-0.1.0}"
RUN_TIMEOUT="${RUN_TIMEOUT:-3600}"
ISVC_NAME="${ISVC_NAME:-taxi-fare}"
TRAIN_WORKERS="${TRAIN_WORKERS:-2}"
NAMESPACE="${NAMESPACE:-fareflow}"
PIPELINE_PARAMS="${PIPELINE_PARAMS:-}"
ARTIFACT_DIR="${ARTIFACT_DIR:-${TMPDIR:-/tmp}/fareflow-kind-test}"
KFP_LOCAL_PORT="${KFP_LOCAL_PORT:-8888}"
MODEL_LOCAL_PORT="${MODEL_LOCAL_PORT:-8081}"
MINIO_LOCAL_PORT="${MINIO_LOCAL_PORT:-9000}"
# The data set the pipeline ingests: generated here, uploaded to KFP's object store (MinIO, or
# SeaweedFS behind the same minio-service) in the bucket KFP itself uses.
DATA_ROWS="${DATA_ROWS:-50000}"
DATA_MONTHS="${DATA_MONTHS:-2015-01:2015-03}"
DATA_URI="${DATA_URI:-s3://mlpipeline/fareflow-kind-test/raw/}"
DATA_DIR="${ARTIFACT_DIR}/data"
# KFP standalone's object store credentials (keys accesskey/secretkey) and the Secret the
# compiled pipeline injects into the ingest task (pipelines.taxi_fare.S3_SECRET); KFP
# standalone runs pipeline pods in kubeflow, so that is where it must exist.
MINIO_SECRET="mlpipeline-minio-artifact"
S3_SECRET="fareflow-s3"
S3_ENDPOINT_IN_CLUSTER="http://minio-service.kubeflow:9000"
S3_REGION="us-east-1"
REDACTED="<redacted>"
PYTHON="${PYTHON:-python3}"
MAKE="${MAKE:-make}"
KIND_CONFIG="${REPO_ROOT}/manifests/kind/kind-config.yaml"
OVERLAY="${REPO_ROOT}/manifests/overlays/kind"
KFP_HOST="http://127.0.0.1:${KFP_LOCAL_PORT}"

require kind kubectl docker curl "${PYTHON}" "${MAKE}"

collect_logs() {
  step "collect logs into ${ARTIFACT_DIR}" || true
  run mkdir -p "${ARTIFACT_DIR}"
  if [[ "${DRY_RUN}" == "1" ]]; then
    show kubectl get all,events,inferenceservices,pytorchjobs,mpijobs -A -o wide ">" "${ARTIFACT_DIR}/resources.txt"
    show kubectl -n "${NAMESPACE}" describe pods ">" "${ARTIFACT_DIR}/${NAMESPACE}-pods.txt"
    show kubectl -n kubeflow describe pods ">" "${ARTIFACT_DIR}/kubeflow-pods.txt"
    show kind export logs "${ARTIFACT_DIR}/kind" --name "${CLUSTER_NAME}"
    return 0
  fi
  kubectl get all,events,inferenceservices,pytorchjobs,mpijobs -A -o wide >"${ARTIFACT_DIR}/resources.txt" 2>&1 || true
  local ns pod
  for ns in "${NAMESPACE}" kubeflow kserve cert-manager; do
    kubectl -n "${ns}" describe pods >"${ARTIFACT_DIR}/${ns}-pods.txt" 2>&1 || true
    for pod in $(kubectl -n "${ns}" get pods -o name 2>/dev/null); do
      kubectl -n "${ns}" logs "${pod}" --all-containers --prefix --tail=2000 \
        >"${ARTIFACT_DIR}/${ns}-${pod#pod/}.log" 2>&1 || true
    done
  done
  kind export logs "${ARTIFACT_DIR}/kind" --name "${CLUSTER_NAME}" >/dev/null 2>&1 || true
}

on_exit() {
  local rc=$?
  set +e
  stop_bg
  if [[ ${rc} -ne 0 ]]; then
    log "kind-test failed (exit ${rc})"
    collect_logs
  fi
  if [[ "${KEEP_CLUSTER}" == "1" ]]; then
    log "KEEP_CLUSTER=1: keeping kind cluster ${CLUSTER_NAME}"
  else
    step "delete the kind cluster" || true
    run kind delete cluster --name "${CLUSTER_NAME}"
  fi
  exit "${rc}"
}
trap on_exit EXIT

check_overlay_tag() {
  # overlays/kind pins the server image tag; it must be the tag that is built and loaded.
  if ! grep -Eq "newTag: \"?${IMAGE_TAG}\"?$" "${OVERLAY}/kustomization.yaml"; then
    die "IMAGE_TAG=${IMAGE_TAG} differs from the tag in ${OVERLAY}/kustomization.yaml"
  fi
}

create_cluster() {
  step "create kind cluster ${CLUSTER_NAME} (${KIND_NODE_IMAGE})"
  if [[ "${DRY_RUN}" != "1" ]] && kind get clusters 2>/dev/null | grep -Fxq "${CLUSTER_NAME}"; then
    log "kind cluster ${CLUSTER_NAME} exists; reusing it"
  else
    run kind create cluster --name "${CLUSTER_NAME}" --image "${KIND_NODE_IMAGE}" \
      --config "${KIND_CONFIG}" --wait 5m
  fi
  run kubectl config use-context "kind-${CLUSTER_NAME}"
}

install_platform() {
  step "install the platform"
  # The install script prints its own commands in a dry run.
  DRY_RUN="${DRY_RUN}" bash "${SCRIPT_DIR}/install-platform.sh"
}

load_images() {
  step "build and load images (tag ${IMAGE_TAG})"
  # images/images.mk: kind reads images from Docker, so build them with Docker here.
  run "${MAKE}" -C "${REPO_ROOT}" images "IMAGE_TAG=${IMAGE_TAG}" CONTAINER_ENGINE=docker
  run "${MAKE}" -C "${REPO_ROOT}" kind-load "IMAGE_TAG=${IMAGE_TAG}" CONTAINER_ENGINE=docker "KIND_CLUSTER=${CLUSTER_NAME}"
  # Third-party images the cluster runs: the operator's init container and PostgreSQL.
  local img
  for img in "${ALPINE_IMAGE}" "${POSTGRES_IMAGE}"; do
    run docker pull "${img}"
    run kind load docker-image "${img}" --name "${CLUSTER_NAME}"
  done
}

apply_overlay() {
  step "apply overlays/kind"
  run kubectl apply -k "${OVERLAY}"
  run kubectl -n "${NAMESPACE}" rollout status statefulset/fareflow-postgres --timeout=300s
}

# Set variable $1 to key $2 of KFP's object store Secret, decoded. The value is never
# printed (a placeholder in a dry run).
read_minio_credential() {
  local value
  show kubectl -n kubeflow get secret "${MINIO_SECRET}" -o "jsonpath={.data.$2}" "|" base64 -d
  if [[ "${DRY_RUN}" == "1" ]]; then
    value="${REDACTED}"
  else
    value="$(kubectl -n kubeflow get secret "${MINIO_SECRET}" -o "jsonpath={.data.$2}" | base64 -d)"
  fi
  [[ -n "${value}" ]] || die "kubeflow/${MINIO_SECRET} has no key $2"
  printf -v "$1" '%s' "${value}"
}

upload_data() {
  step "generate and upload the data set to ${DATA_URI}"
  run rm -rf "${DATA_DIR}"
  run "${PYTHON}" -m components.generate --out "${DATA_DIR}" --rows "${DATA_ROWS}" --months "${DATA_MONTHS}"
  local access_key="" secret_key=""
  read_minio_credential access_key accesskey
  read_minio_credential secret_key secretkey
  run_bg kubectl -n kubeflow port-forward svc/minio-service "${MINIO_LOCAL_PORT}:9000"
  # Credentials travel in the environment only; retry while the port-forward (and KFP's
  # object store init job) come up.
  (
    export AWS_ACCESS_KEY_ID="${access_key}" AWS_SECRET_ACCESS_KEY="${secret_key}" \
      AWS_ENDPOINT_URL="http://127.0.0.1:${MINIO_LOCAL_PORT}" AWS_DEFAULT_REGION="${S3_REGION}"
    retry 30 2 "${PYTHON}" "${SCRIPT_DIR}/upload_data.py" --src "${DATA_DIR}" --dest "${DATA_URI}" --delete
  )
  stop_bg

  # The Secret the pipeline's S3 steps read, in kubeflow (KFP standalone runs pipeline pods
  # there), and the same keys in the project namespace for the PyTorchJob pods and KServe's
  # storage initializer (with its S3 annotations). Created or updated (apply); the values go
  # to kubectl on stdin as an env file, so they appear neither here nor in any process's
  # arguments.
  apply_s3_secret kubeflow "${access_key}" "${secret_key}"
  apply_s3_secret "${NAMESPACE}" "${access_key}" "${secret_key}" \
    "serving.kserve.io/s3-endpoint=${S3_ENDPOINT_IN_CLUSTER#http://}" \
    "serving.kserve.io/s3-usehttps=0" "serving.kserve.io/s3-region=${S3_REGION}"
}

# apply_s3_secret NAMESPACE ACCESS_KEY SECRET_KEY [ANNOTATION=VALUE ...]
apply_s3_secret() {
  local ns="$1" access_key="$2" secret_key="$3"
  shift 3
  local -a annotate=(cat) shown_annotate=()
  if ((${#} > 0)); then
    annotate=(kubectl annotate --local -f - "$@" -o yaml)
    shown_annotate=("|" "${annotate[@]}")
  fi
  local -a shown=(
    "AWS_ACCESS_KEY_ID=${REDACTED}" "AWS_SECRET_ACCESS_KEY=${REDACTED}"
    "AWS_ENDPOINT_URL=${S3_ENDPOINT_IN_CLUSTER}" "AWS_DEFAULT_REGION=${S3_REGION}"
  )
  show printf '%s\n' "${shown[@]}" "|" kubectl -n "${ns}" create secret generic "${S3_SECRET}" \
    --from-env-file=/dev/stdin --dry-run=client -o yaml "${shown_annotate[@]}" "|" kubectl apply -f -
  if [[ "${DRY_RUN}" != "1" ]]; then
    printf '%s\n' "AWS_ACCESS_KEY_ID=${access_key}" "AWS_SECRET_ACCESS_KEY=${secret_key}" \
      "AWS_ENDPOINT_URL=${S3_ENDPOINT_IN_CLUSTER}" "AWS_DEFAULT_REGION=${S3_REGION}" |
      kubectl -n "${ns}" create secret generic "${S3_SECRET}" --from-env-file=/dev/stdin \
        --dry-run=client -o yaml | "${annotate[@]}" | kubectl apply -f -
  fi
}

submit_pipeline() {
  step "compile and submit the pipeline"
  run_bg kubectl -n kubeflow port-forward svc/ml-pipeline "${KFP_LOCAL_PORT}:8888"
  retry 30 2 curl -fsS -o /dev/null "${KFP_HOST}/apis/v2beta1/healthz"
  # Defaults: the uploaded data, the InferenceService name this script checks, and DDP over
  # TRAIN_WORKERS PyTorchJob replicas; PIPELINE_PARAMS adds to them or replaces one by key.
  local -a params=()
  local kv
  for kv in "source=${DATA_URI}" "model_name=${ISVC_NAME}" "train_workers=${TRAIN_WORKERS}" \
    "namespace=${NAMESPACE}"; do
    [[ " ${PIPELINE_PARAMS} " == *" ${kv%%=*}="* ]] || params+=(--param "${kv}")
  done
  for kv in ${PIPELINE_PARAMS}; do
    params+=(--param "${kv}")
  done
  run env "FAREFLOW_IMAGE_TAG=${IMAGE_TAG}" "${PYTHON}" -m pipelines.cli submit --host "${KFP_HOST}" \
    --experiment kind-test "${params[@]}" --wait --timeout "${RUN_TIMEOUT}"
}

check_inference() {
  step "send inference requests to ${NAMESPACE}/${ISVC_NAME}"
  run kubectl -n "${NAMESPACE}" wait --for=condition=Ready "inferenceservice/${ISVC_NAME}" --timeout=600s
  run_bg kubectl -n "${NAMESPACE}" port-forward "svc/${ISVC_NAME}-predictor" "${MODEL_LOCAL_PORT}:80"
  retry 30 2 curl -fsS -o /dev/null "http://127.0.0.1:${MODEL_LOCAL_PORT}/v2/health/ready"
  run "${PYTHON}" "${SCRIPT_DIR}/check_inference.py" --url "http://127.0.0.1:${MODEL_LOCAL_PORT}" \
    --model "${ISVC_NAME}" --protocol both
}

main() {
  check_overlay_tag
  log "data: ${DATA_ROWS} rows (${DATA_MONTHS}) -> ${DATA_URI}"
  log "kind ${KIND_VERSION}, node ${KIND_NODE_IMAGE}, KFP ${KFP_VERSION}, Training Operator ${TRAINING_OPERATOR_VERSION}, cert-manager ${CERT_MANAGER_VERSION}, KServe ${KSERVE_VERSION}, images ghcr.io/fareflow/*:${IMAGE_TAG}"
  create_cluster
  install_platform
  load_images
  apply_overlay
  upload_data
  submit_pipeline
  check_inference
  step "kind-test passed"
}

main "$@"
