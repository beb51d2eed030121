#!/usr/bin/env bash
# End-to-end test of the cluster path on a throwaway kind cluster:
#   create the cluster -> advertise fake GPUs on the GPU pool's node -> install the platform
#   (KSERVE_MODE=Standard, or Knative with Knative Serving) -> build and load the images -> apply
#   overlays/kind (plus components/knative-serving in Knative mode) -> generate a small data set, upload it to KFP's object store and create the
#   fareflow-s3 Secret the pipeline's ingest reads -> compile and submit the pipeline with
#   kfp.Client (port-forward to the KFP API) -> wait for the run to succeed -> send v1 and v2
#   inference requests to the InferenceService and check the answers -> (on failure) collect
#   logs -> delete the cluster.
#
# Settings (environment): CLUSTER_NAME, KEEP_CLUSTER=1 (keep the cluster), DRY_RUN=1 (print
# every command instead of running it), IMAGE_TAG, RUN_TIMEOUT (seconds), ISVC_NAME,
# NAMESPACE, TRAIN_WORKERS, TRAIN_BACKEND (ddp: PyTorchJob; horovod: MPIJob, which also applies
# components/mpijob-baseline and loads the MPIJob launcher's kubectl-delivery image),
# PIPELINE_PARAMS ("key=value ..."; source, model_name, train_workers, train_backend and
# namespace default to the data uploaded here and the settings above),
# DATA_ROWS, DATA_MONTHS, DATA_URI, ARTIFACT_DIR, KFP_LOCAL_PORT, MODEL_LOCAL_PORT,
# S3_LOCAL_PORT, KSERVE_MODE (Standard or Knative), FAKE_GPUS (nvidia.com/gpu the GPU pool's
# node advertises), IMAGE_PLATFORM (the nodes' platform, for loading pulled images), PYTHON,
# MAKE. Versions come from manifests/versions.env. Order and upstream sources: docs/kind-test.md.
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
TRAIN_BACKEND="${TRAIN_BACKEND:-ddp}"
NAMESPACE="${NAMESPACE:-fareflow}"
PIPELINE_PARAMS="${PIPELINE_PARAMS:-}"
ARTIFACT_DIR="${ARTIFACT_DIR:-${TMPDIR:-/tmp}/fareflow-kind-test}"
KFP_LOCAL_PORT="${KFP_LOCAL_PORT:-8888}"
MODEL_LOCAL_PORT="${MODEL_LOCAL_PORT:-8081}"
S3_LOCAL_PORT="${S3_LOCAL_PORT:-9000}"
FAKE_GPUS="${FAKE_GPUS:-2}"
# Autoscaling checks: seconds of load at most, and how long scaling up / down may take.
LOAD_SECONDS="${LOAD_SECONDS:-240}"
SCALE_UP_TIMEOUT="${SCALE_UP_TIMEOUT:-300}"
SCALE_DOWN_TIMEOUT="${SCALE_DOWN_TIMEOUT:-600}"
KNATIVE_HOST=""
# The canary check's candidate: where the serving model's model.json is copied without its
# weights (unloadable_model.py), and how long it may try to load.
CANARY_BAD_URI="${CANARY_BAD_URI:-s3://mlpipeline/fareflow-kind-test/unloadable-model/}"
CANARY_READY_TIMEOUT="${CANARY_READY_TIMEOUT:-180}"
IMAGE_PLATFORM="${IMAGE_PLATFORM:-}"
# The data set the pipeline ingests: generated here, uploaded to KFP's object store (KFP 2.17:
# SeaweedFS, Service seaweedfs.kubeflow, S3 on port 9000 -> 8333) in the bucket KFP itself uses.
DATA_ROWS="${DATA_ROWS:-50000}"
DATA_MONTHS="${DATA_MONTHS:-2015-01:2015-03}"
DATA_URI="${DATA_URI:-s3://mlpipeline/fareflow-kind-test/raw/}"
DATA_DIR="${ARTIFACT_DIR}/data"
# KFP standalone's object store credentials (keys accesskey/secretkey; the Secret kept its MinIO
# era name) and the Secret the
# compiled pipeline injects into the ingest task (pipelines.taxi_fare.S3_SECRET); KFP
# standalone runs pipeline pods in kubeflow, so that is where it must exist.
S3_CREDENTIALS_SECRET="mlpipeline-minio-artifact"
S3_SECRET="fareflow-s3"
S3_SERVICE="seaweedfs"
S3_ENDPOINT_IN_CLUSTER="http://${S3_SERVICE}.kubeflow:9000"
S3_REGION="us-east-1"
REDACTED="<redacted>"
PYTHON="${PYTHON:-python3}"
MAKE="${MAKE:-make}"
KIND_CONFIG="${REPO_ROOT}/manifests/kind/kind-config.yaml"
OVERLAY="${REPO_ROOT}/manifests/overlays/kind"
KNATIVE_COMPONENT="${REPO_ROOT}/manifests/components/knative-serving"
MPIJOB_COMPONENT="${REPO_ROOT}/manifests/components/mpijob-baseline"
# overlays/kind plus the components this run needs (Knative mode: knative-serving; Horovod:
# mpijob-baseline), composed in a kustomization of its own here (no file changes).
COMPOSED_OVERLAY="${ARTIFACT_DIR}/overlay"
OVERLAY_COMPONENTS=()
KFP_HOST="http://127.0.0.1:${KFP_LOCAL_PORT}"

case "${TRAIN_BACKEND}" in
  ddp) ;;
  horovod) OVERLAY_COMPONENTS+=("${MPIJOB_COMPONENT}") ;;
  *) die "TRAIN_BACKEND=${TRAIN_BACKEND}: expected ddp or horovod" ;;
esac
if [[ "${KSERVE_MODE}" == "Knative" ]]; then
  OVERLAY_COMPONENTS+=("${KNATIVE_COMPONENT}")
fi

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
  for ns in "${NAMESPACE}" kubeflow kserve cert-manager knative-serving kourier-system; do
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

# kind nodes have no GPU: the tainted GPU pool's node advertises FAKE_GPUS nvidia.com/gpu
# through the Node status subresource (an extended resource; the kubelet derives allocatable
# from it and keeps it), so pods that request GPUs schedule there and run on its CPU.
advertise_gpus() {
  step "advertise ${FAKE_GPUS} fake nvidia.com/gpu on the fareflow.io/pool=gpu node"
  local node
  show kubectl get nodes -l fareflow.io/pool=gpu -o "jsonpath={.items[0].metadata.name}"
  if [[ "${DRY_RUN}" == "1" ]]; then
    node="${CLUSTER_NAME}-worker3"
  else
    node="$(kubectl get nodes -l fareflow.io/pool=gpu -o 'jsonpath={.items[0].metadata.name}')"
  fi
  [[ -n "${node}" ]] || die "no node labelled fareflow.io/pool=gpu (see ${KIND_CONFIG})"
  GPU_NODE="${node}"
  run kubectl patch node "${node}" --subresource=status --type=json \
    -p "[{\"op\":\"add\",\"path\":\"/status/capacity/nvidia.com~1gpu\",\"value\":\"${FAKE_GPUS}\"}]"
  run kubectl wait "node/${node}" --for="jsonpath={.status.allocatable.nvidia\.com/gpu}=${FAKE_GPUS}" --timeout=60s
}

# The GPU pool is exercised for real: a restricted pod requesting one nvidia.com/gpu with the
# gpu component's node selector and toleration must run to completion on the GPU node, within
# the project's GPU quota (overlays/kind allows FAKE_GPUS).
write_gpu_probe() {
  printf '%s\n' "apiVersion: v1" "kind: Pod" "metadata:" "  name: fareflow-gpu-probe" \
    "  namespace: ${NAMESPACE}" "spec:" "  restartPolicy: Never" \
    "  automountServiceAccountToken: false" "  nodeSelector: {fareflow.io/pool: gpu}" \
    "  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]" \
    "  securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}" \
    "  containers:" "    - name: probe" "      image: ${ALPINE_IMAGE}" "      command: [\"true\"]" \
    "      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}" \
    "      resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 32Mi, nvidia.com/gpu: \"1\"}}" \
    >"$1"
}

check_gpu_scheduling() {
  step "a GPU request is scheduled onto the GPU pool"
  local probe="${ARTIFACT_DIR}/gpu-probe.yaml" node
  run mkdir -p "${ARTIFACT_DIR}"
  run write_gpu_probe "${probe}"
  run kubectl -n "${NAMESPACE}" delete pod fareflow-gpu-probe --ignore-not-found
  run kubectl apply -f "${probe}"
  run kubectl -n "${NAMESPACE}" wait pod/fareflow-gpu-probe --for=jsonpath='{.status.phase}'=Succeeded --timeout=180s
  show kubectl -n "${NAMESPACE}" get pod fareflow-gpu-probe -o "jsonpath={.spec.nodeName}"
  if [[ "${DRY_RUN}" != "1" ]]; then
    node="$(kubectl -n "${NAMESPACE}" get pod fareflow-gpu-probe -o 'jsonpath={.spec.nodeName}')"
    [[ "${node}" == "${GPU_NODE}" ]] || die "the GPU probe ran on ${node}, not on the GPU node ${GPU_NODE}"
  fi
  run kubectl -n "${NAMESPACE}" delete pod fareflow-gpu-probe
}

install_platform() {
  step "install the platform"
  # The install script prints its own commands in a dry run.
  DRY_RUN="${DRY_RUN}" KSERVE_MODE="${KSERVE_MODE}" bash "${SCRIPT_DIR}/install-platform.sh"
}

# The nodes' platform (os/arch), for saving one platform of a pulled multi-arch image.
node_platform() {
  if [[ -n "${IMAGE_PLATFORM}" ]]; then
    printf '%s\n' "${IMAGE_PLATFORM}"
    return 0
  fi
  case "$(uname -m)" in
    x86_64 | amd64) printf 'linux/amd64\n' ;;
    aarch64 | arm64) printf 'linux/arm64\n' ;;
    *) die "unknown machine $(uname -m): set IMAGE_PLATFORM=linux/ARCH" ;;
  esac
}

# Load a pulled image into every node. `kind load docker-image` imports with --all-platforms,
# which fails on Docker 29's containerd image store for multi-arch images whose other
# platforms were never pulled ("content digest not found", kind#3795). So pull and save one
# platform (--platform needs Docker 28+) into a file and load that archive: a file, not
# /dev/stdin, because kind opens the archive once per node, concurrently.
kind_load_pulled_image() {
  local img="$1" platform archive
  platform="$(node_platform)"
  archive="${ARTIFACT_DIR}/images/$(printf '%s' "${img}" | tr '/:' '__').tar"
  run mkdir -p "${ARTIFACT_DIR}/images"
  run docker pull --platform "${platform}" "${img}"
  run docker save --platform "${platform}" -o "${archive}" "${img}"
  run kind load image-archive "${archive}" --name "${CLUSTER_NAME}"
  run rm -f "${archive}"
}

load_images() {
  step "build and load images (tag ${IMAGE_TAG})"
  # images/images.mk: kind reads images from Docker, so build them with Docker here.
  run "${MAKE}" -C "${REPO_ROOT}" images "IMAGE_TAG=${IMAGE_TAG}" CONTAINER_ENGINE=docker
  run "${MAKE}" -C "${REPO_ROOT}" kind-load "IMAGE_TAG=${IMAGE_TAG}" CONTAINER_ENGINE=docker "KIND_CLUSTER=${CLUSTER_NAME}"
  # The third-party images the project's pods need: the operator's PyTorchJob init container,
  # and for Horovod its MPIJob launcher's kubectl-delivery init container.
  # (PostgreSQL is the optional components/optuna-postgres, not in overlays/kind.)
  kind_load_pulled_image "${ALPINE_IMAGE}"
  if [[ "${TRAIN_BACKEND}" == "horovod" ]]; then
    kind_load_pulled_image "${MPI_KUBECTL_DELIVERY_IMAGE}"
  fi
}

# write_overlay DIR COMPONENT...: overlays/kind with these components, in DIR (kustomize takes
# only relative paths to other kustomizations).
write_overlay() {
  local dir="$1" component
  shift
  mkdir -p "${dir}"
  {
    printf '%s\n' "# kind-test: overlays/kind with the components this run needs." \
      "apiVersion: kustomize.config.k8s.io/v1beta1" "kind: Kustomization" \
      "resources:" "  - $(realpath --relative-to="${dir}" "${OVERLAY}")" "components:"
    for component in "$@"; do
      printf '  - %s\n' "$(realpath --relative-to="${dir}" "${component}")"
    done
  } >"${dir}/kustomization.yaml"
}

apply_overlay() {
  if ((${#OVERLAY_COMPONENTS[@]} > 0)); then
    step "apply overlays/kind with ${OVERLAY_COMPONENTS[*]#"${REPO_ROOT}/manifests/"}"
    run write_overlay "${COMPOSED_OVERLAY}" "${OVERLAY_COMPONENTS[@]}"
    run kubectl apply -k "${COMPOSED_OVERLAY}"
  else
    step "apply overlays/kind"
    run kubectl apply -k "${OVERLAY}"
  fi
}

# Set variable $1 to key $2 of KFP's object store Secret, decoded. The value is never
# printed (a placeholder in a dry run).
read_s3_credential() {
  local value
  show kubectl -n kubeflow get secret "${S3_CREDENTIALS_SECRET}" -o "jsonpath={.data.$2}" "|" base64 -d
  if [[ "${DRY_RUN}" == "1" ]]; then
    value="${REDACTED}"
  else
    value="$(kubectl -n kubeflow get secret "${S3_CREDENTIALS_SECRET}" -o "jsonpath={.data.$2}" | base64 -d)"
  fi
  [[ -n "${value}" ]] || die "kubeflow/${S3_CREDENTIALS_SECRET} has no key $2"
  printf -v "$1" '%s' "${value}"
}

# with_s3_env ACCESS_KEY SECRET_KEY COMMAND...: COMMAND (a function too) in a subshell, from the
# repo root, with the object store's credentials and the port-forwarded endpoint in its
# environment only (never in a process's arguments).
with_s3_env() {
  local access_key="$1" secret_key="$2"
  shift 2
  (
    export AWS_ACCESS_KEY_ID="${access_key}" AWS_SECRET_ACCESS_KEY="${secret_key}" \
      AWS_ENDPOINT_URL="http://127.0.0.1:${S3_LOCAL_PORT}" AWS_DEFAULT_REGION="${S3_REGION}"
    cd "${REPO_ROOT}"
    "$@"
  )
}

upload_data() {
  step "generate and upload the data set to ${DATA_URI}"
  run rm -rf "${DATA_DIR}"
  run "${PYTHON}" -m components.generate --out "${DATA_DIR}" --rows "${DATA_ROWS}" --months "${DATA_MONTHS}"
  local access_key="" secret_key=""
  read_s3_credential access_key accesskey
  read_s3_credential secret_key secretkey
  run_bg kubectl -n kubeflow port-forward "svc/${S3_SERVICE}" "${S3_LOCAL_PORT}:9000"
  # Credentials travel in the environment only; retry while the port-forward (and KFP's
  # object store init job) come up.
  with_s3_env "${access_key}" "${secret_key}" \
    retry 30 2 "${PYTHON}" "${SCRIPT_DIR}/upload_data.py" --src "${DATA_DIR}" --dest "${DATA_URI}" --delete
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
  # Defaults: the uploaded data, the InferenceService name this script checks, and training over
  # TRAIN_WORKERS pods with TRAIN_BACKEND (ddp: PyTorchJob replicas; horovod: MPIJob workers);
  # PIPELINE_PARAMS adds to them or replaces one by key.
  local -a params=()
  local kv
  for kv in "source=${DATA_URI}" "model_name=${ISVC_NAME}" "train_workers=${TRAIN_WORKERS}" \
    "namespace=${NAMESPACE}" "train_backend=${TRAIN_BACKEND}"; do
    [[ " ${PIPELINE_PARAMS} " == *" ${kv%%=*}="* ]] || params+=(--param "${kv}")
  done
  for kv in ${PIPELINE_PARAMS}; do
    params+=(--param "${kv}")
  done
  run env "FAREFLOW_IMAGE_TAG=${IMAGE_TAG}" "${PYTHON}" -m pipelines.cli submit --host "${KFP_HOST}" \
    --experiment kind-test "${params[@]}" --wait --timeout "${RUN_TIMEOUT}"
}

# Knative mode: svc/ISVC-predictor is an ExternalName to Kourier (nothing to port-forward to).
# One request through Kourier with the predictor's Knative host (Route -> activator -> pod),
# then the checks against the ready revision's pods.
knative_predictor_service() {
  local host revision
  show kubectl -n "${NAMESPACE}" get "inferenceservice/${ISVC_NAME}" -o "jsonpath={.status.components.predictor.url}"
  show kubectl -n "${NAMESPACE}" get "inferenceservice/${ISVC_NAME}" \
    -o "jsonpath={.status.components.predictor.latestReadyRevision}"
  if [[ "${DRY_RUN}" == "1" ]]; then
    host="${ISVC_NAME}-predictor.${NAMESPACE}.example.com"
    revision="${ISVC_NAME}-predictor-00001"
  else
    host="$(kubectl -n "${NAMESPACE}" get "inferenceservice/${ISVC_NAME}" -o 'jsonpath={.status.components.predictor.url}')"
    host="${host#*://}"
    revision="$(kubectl -n "${NAMESPACE}" get "inferenceservice/${ISVC_NAME}" \
      -o 'jsonpath={.status.components.predictor.latestReadyRevision}')"
  fi
  [[ -n "${host}" && -n "${revision}" ]] || die "inferenceservice/${ISVC_NAME} has no URL or ready revision"
  KNATIVE_HOST="${host}"
  run_bg kubectl -n kourier-system port-forward svc/kourier "${MODEL_LOCAL_PORT}:80"
  retry 30 2 curl -fsS -o /dev/null -H "Host: ${host}" "http://127.0.0.1:${MODEL_LOCAL_PORT}/v2/health/ready"
  stop_bg
  PREDICTOR_SERVICE="${revision}-private"
}

# Poll the predictor's HPA until its current replicas satisfy "$1" ("gt N" or "le N"), at most
# $2 seconds (a dry run prints the query once).
wait_hpa_replicas() {
  local op="$1" n="$2" timeout="$3" hpa="${ISVC_NAME}-predictor" current deadline
  show kubectl -n "${NAMESPACE}" get hpa "${hpa}" -o "jsonpath={.status.currentReplicas}" "# until ${op} ${n}"
  [[ "${DRY_RUN}" == "1" ]] && return 0
  deadline=$((SECONDS + timeout))
  while true; do
    current="$(kubectl -n "${NAMESPACE}" get hpa "${hpa}" -o 'jsonpath={.status.currentReplicas}')"
    if [[ -n "${current}" ]] && { [[ "${op}" == gt ]] && ((current > n)) || { [[ "${op}" == le ]] && ((current <= n)); }; }; then
      log "hpa/${hpa}: ${current} replicas"
      return 0
    fi
    ((SECONDS < deadline)) || die "hpa/${hpa}: ${current:-?} replicas, not ${op} ${n} after ${timeout}s"
    sleep 5
  done
}

# Standard mode: load through the port-forward drives the predictor's CPU past the HPA's
# target, so it scales above minReplicas; once the load stops it falls back (the HPA's
# scale-down stabilization is 5 minutes, hence the longer bound).
check_autoscaling() {
  step "autoscaling: load scales ${ISVC_NAME}'s predictor above its minimum, and back"
  local min
  show kubectl -n "${NAMESPACE}" get hpa "${ISVC_NAME}-predictor" -o "jsonpath={.spec.minReplicas}"
  if [[ "${DRY_RUN}" == "1" ]]; then
    min=1
  else
    min="$(kubectl -n "${NAMESPACE}" get hpa "${ISVC_NAME}-predictor" -o 'jsonpath={.spec.minReplicas}')"
  fi
  [[ -n "${min}" ]] || die "inferenceservice/${ISVC_NAME} has no HPA (minReplicas < maxReplicas in fareflow-cluster?)"
  run_bg "${PYTHON}" "${SCRIPT_DIR}/load_inference.py" --url "http://127.0.0.1:${MODEL_LOCAL_PORT}" \
    --model "${ISVC_NAME}" --year "${DATA_MONTHS:0:4}" --concurrency 8 --trips 100 --duration "${LOAD_SECONDS}"
  wait_hpa_replicas gt "${min}" "${SCALE_UP_TIMEOUT}"
  stop_bg
  wait_hpa_replicas le "${min}" "${SCALE_DOWN_TIMEOUT}"
}

# Knative mode: with minReplicas 0 an idle predictor scales to zero pods, and one request
# through Kourier brings a pod back and is answered.
check_scale_to_zero() {
  step "scale to zero: the idle predictor has no pods; a request brings it back"
  stop_bg
  local selector="serving.kserve.io/inferenceservice=${ISVC_NAME}" deadline
  show kubectl -n "${NAMESPACE}" get pods -l "${selector}" -o name "# until none"
  if [[ "${DRY_RUN}" != "1" ]]; then
    deadline=$((SECONDS + SCALE_DOWN_TIMEOUT))
    until [[ -z "$(kubectl -n "${NAMESPACE}" get pods -l "${selector}" -o name)" ]]; do
      ((SECONDS < deadline)) || die "predictor of ${ISVC_NAME} still has pods after ${SCALE_DOWN_TIMEOUT}s idle"
      sleep 5
    done
    log "${ISVC_NAME}: scaled to zero"
  fi
  run_bg kubectl -n kourier-system port-forward svc/kourier "${MODEL_LOCAL_PORT}:80"
  retry 60 2 curl -fsS -o /dev/null -H "Host: ${KNATIVE_HOST}" "http://127.0.0.1:${MODEL_LOCAL_PORT}/v2/health/ready"
  run "${PYTHON}" "${SCRIPT_DIR}/check_inference.py" --url "http://127.0.0.1:${MODEL_LOCAL_PORT}" \
    --model "${ISVC_NAME}" --year "${DATA_MONTHS:0:4}" --protocol v1 --host-header "${KNATIVE_HOST}"
  run kubectl -n "${NAMESPACE}" get pods -l "${selector}" -o name
  stop_bg
}

# Standard mode: a candidate that cannot load (the serving model's model.json without its
# weights: it reads as a model, so the rollout starts, but the server's load fails) is served as
# a canary, never gets ready, and is rolled back (exit status 3); the stable model answers
# throughout. The rollout reads both models' model.json from the object store, through a
# port-forward with the credentials in its environment. (Promotion's flow is tested offline:
# kind-test has one trained model.)
check_canary_rollback() {
  step "canary: a candidate that cannot load is rolled back; the stable model keeps serving"
  local rc=0 stable access_key="" secret_key=""
  show kubectl -n "${NAMESPACE}" get "inferenceservice/${ISVC_NAME}" -o "jsonpath={.spec.predictor.model.storageUri}"
  if [[ "${DRY_RUN}" == "1" ]]; then
    stable="s3://mlpipeline/models/${ISVC_NAME}/"
  else
    stable="$(kubectl -n "${NAMESPACE}" get "inferenceservice/${ISVC_NAME}" -o 'jsonpath={.spec.predictor.model.storageUri}')"
  fi
  [[ "${stable}" == s3://* ]] || die "inferenceservice/${ISVC_NAME} serves '${stable}', not an s3:// model"
  read_s3_credential access_key accesskey
  read_s3_credential secret_key secretkey
  run_bg kubectl -n kubeflow port-forward "svc/${S3_SERVICE}" "${S3_LOCAL_PORT}:9000"
  local -a rollout=("${PYTHON}" -m components.cluster --name "${ISVC_NAME}" --namespace "${NAMESPACE}"
    --model-uri "${CANARY_BAD_URI}" --canary-percent 20 --ready-timeout "${CANARY_READY_TIMEOUT}")
  with_s3_env "${access_key}" "${secret_key}" \
    retry 30 2 "${PYTHON}" "${SCRIPT_DIR}/unloadable_model.py" --from "${stable}" --to "${CANARY_BAD_URI}"
  show "${rollout[@]}"
  if [[ "${DRY_RUN}" != "1" ]]; then
    with_s3_env "${access_key}" "${secret_key}" "${rollout[@]}" || rc=$?
    [[ ${rc} -eq 3 ]] || die "the bad canary was not rolled back (exit ${rc}, expected 3)"
  fi
  stop_bg
  run_bg kubectl -n "${NAMESPACE}" port-forward "svc/${ISVC_NAME}-predictor" "${MODEL_LOCAL_PORT}:80"
  retry 30 2 curl -fsS -o /dev/null "http://127.0.0.1:${MODEL_LOCAL_PORT}/v2/health/ready"
  run "${PYTHON}" "${SCRIPT_DIR}/check_inference.py" --url "http://127.0.0.1:${MODEL_LOCAL_PORT}" \
    --model "${ISVC_NAME}" --year "${DATA_MONTHS:0:4}" --protocol both
  stop_bg
}

check_inference() {
  step "send inference requests to ${NAMESPACE}/${ISVC_NAME}"
  run kubectl -n "${NAMESPACE}" wait --for=condition=Ready "inferenceservice/${ISVC_NAME}" --timeout=600s
  PREDICTOR_SERVICE="${ISVC_NAME}-predictor"
  if [[ "${KSERVE_MODE}" == "Knative" ]]; then
    knative_predictor_service
  fi
  run_bg kubectl -n "${NAMESPACE}" port-forward "svc/${PREDICTOR_SERVICE}" "${MODEL_LOCAL_PORT}:80"
  retry 30 2 curl -fsS -o /dev/null "http://127.0.0.1:${MODEL_LOCAL_PORT}/v2/health/ready"
  run "${PYTHON}" "${SCRIPT_DIR}/check_inference.py" --url "http://127.0.0.1:${MODEL_LOCAL_PORT}" \
    --model "${ISVC_NAME}" --year "${DATA_MONTHS:0:4}" --protocol both
}

main() {
  check_overlay_tag
  log "data: ${DATA_ROWS} rows (${DATA_MONTHS}) -> ${DATA_URI}"
  log "kind ${KIND_VERSION}, node ${KIND_NODE_IMAGE}, KFP ${KFP_VERSION}, Training Operator ${TRAINING_OPERATOR_VERSION}, cert-manager ${CERT_MANAGER_VERSION}, KServe ${KSERVE_VERSION} (${KSERVE_MODE}), training ${TRAIN_BACKEND}, images ghcr.io/fareflow/*:${IMAGE_TAG}"
  create_cluster
  advertise_gpus
  install_platform
  load_images
  apply_overlay
  check_gpu_scheduling
  upload_data
  submit_pipeline
  check_inference
  if [[ "${KSERVE_MODE}" == "Knative" ]]; then
    check_scale_to_zero
  else
    check_autoscaling
    check_canary_rollback
  fi
  step "kind-test passed"
}

main "$@"
