#!/usr/bin/env bash
# Start the k8s tier on loopback: etcd, kube-apiserver (real admission chain), kube-controller-
# manager, kube-scheduler, kwok nodes (CPU + GPU pool) and the real Training Operator with its
# webhooks, each a background process logging to .cache/k8s-tier/run/logs/. Every start is
# waited for with a readiness check. Writes the admin kubeconfig to
# .cache/k8s-tier/run/admin.kubeconfig. `make k8s-down` (down.sh) stops exactly what this started.
set -euo pipefail
# shellcheck source=manifests/k8s-tier/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CP="${K8S_TIER_BIN}/fareflow-control-plane"
PKI="${K8S_TIER_RUN}/pki"
LOGS="${K8S_TIER_RUN}/logs"
PIDS="${K8S_TIER_RUN}/pids"
APISERVER="https://127.0.0.1:${K8S_TIER_APISERVER_PORT}"
TIMEOUT="${K8S_TIER_TIMEOUT:-120}"
# The Training Operator's cert-controller keeps its serving certificate in this Secret and
# reads it from this directory (where the kubelet would mount it; upstream pkg/cert/cert.go).
TO_CERT_SECRET="training-operator-webhook-cert"
TO_CERT_DIR="/tmp/k8s-webhook-server/serving-certs"

for bin in fareflow-control-plane kwok training-operator.v1; do
  [[ -x "${K8S_TIER_BIN}/${bin}" ]] || die "${K8S_TIER_BIN}/${bin} missing: run 'make k8s-build' first"
done
command -v openssl >/dev/null || die "'openssl' is required to make the tier's certificates"
command -v kubectl >/dev/null || die "'kubectl' is required"
PYTHON="${PYTHON:-${REPO_ROOT}/.venv/bin/python}"
[[ -x "${PYTHON}" ]] || die "${PYTHON} missing: run 'make install' first"
if [[ -d "${PIDS}" ]] && compgen -G "${PIDS}/*.pid" >/dev/null; then
  die "the tier is already up (pid files in ${PIDS}); run 'make k8s-down' first"
fi

rm -rf "${K8S_TIER_RUN}"
mkdir -p "${PKI}" "${LOGS}" "${PIDS}"
start_time=${SECONDS}

# --- certificates: one CA, the API server's serving certificate, a client per component ------
openssl_quiet() { openssl "$@" 2>>"${LOGS}/openssl.log"; }
openssl_quiet req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
  -keyout "${PKI}/ca.key" -out "${PKI}/ca.crt" -subj "/CN=fareflow-k8s-tier-ca"
# cert NAME SUBJECT EXTENSIONS
cert() {
  openssl_quiet req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "${PKI}/$1.key" -out "${PKI}/$1.csr" -subj "$2"
  openssl_quiet x509 -req -in "${PKI}/$1.csr" -CA "${PKI}/ca.crt" -CAkey "${PKI}/ca.key" \
    -CAcreateserial -days 7 -out "${PKI}/$1.crt" -extfile <(printf '%s\n' "$3")
}
cert apiserver "/CN=kube-apiserver" "$(printf '%s\n' \
  "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc" \
  "extendedKeyUsage=serverAuth")"
cert admin "/O=system:masters/CN=fareflow-k8s-tier-admin" "extendedKeyUsage=clientAuth"
cert controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
cert scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
cert kwok "/O=system:masters/CN=kwok" "extendedKeyUsage=clientAuth"
cert kwok-server "/CN=kwok" "$(printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth")"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
# Service account tokens are signed with this key pair (RSA, as kubeadm makes it).
openssl_quiet genrsa -out "${PKI}/sa.key" 2048
openssl_quiet rsa -in "${PKI}/sa.key" -pubout -out "${PKI}/sa.pub"

# kubeconfig NAME [USER]: a kubeconfig for NAME, authenticating with USER (a kubeconfig user
# mapping; default NAME's client certificate).
kubeconfig() {
  local user="{client-certificate: \"${PKI}/$1.crt\", client-key: \"${PKI}/$1.key\"}"
  if [[ -n "${2:-}" ]]; then
    user="$2"
  fi
  cat >"${K8S_TIER_RUN}/$1.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: k8s-tier
    cluster: {server: "${APISERVER}", certificate-authority: "${PKI}/ca.crt"}
users:
  - name: $1
    user: ${user}
contexts:
  - name: k8s-tier
    context: {cluster: k8s-tier, user: $1}
current-context: k8s-tier
KUBECONFIG
}
for who in admin controller-manager scheduler kwok; do kubeconfig "${who}"; done
KUBECTL=(kubectl --kubeconfig "${K8S_TIER_KUBECONFIG}")

# start NAME COMMAND...: run in the background (own process group), log and pid under run/.
start() {
  local name="$1"
  shift
  setsid "$@" >"${LOGS}/${name}.log" 2>&1 </dev/null &
  echo "$!" >"${PIDS}/${name}.pid"
  log "started ${name} (pid $!)"
}
# running NAME: fail at once when a started process died (instead of waiting out a timeout).
running() {
  kill -0 "$(cat "${PIDS}/$1.pid")" 2>/dev/null ||
    die "$1 exited; last lines of ${LOGS}/$1.log:
$(tail -n 20 "${LOGS}/$1.log")"
}
# ready NAME CHECK...: wait for CHECK while NAME keeps running.
ready() {
  local name="$1"
  shift
  # shellcheck disable=SC2016
  wait_until "${TIMEOUT}" "${name}" bash -c 'kill -0 "$1" || exit 0; shift; "$@"' _ \
    "$(cat "${PIDS}/${name}.pid")" "$@"
  running "${name}"
}

# --- etcd ---------------------------------------------------------------------------------------
start etcd "${CP}" etcd --name k8s-tier --data-dir "${K8S_TIER_RUN}/etcd" \
  --listen-client-urls "http://127.0.0.1:${K8S_TIER_ETCD_PORT}" \
  --advertise-client-urls "http://127.0.0.1:${K8S_TIER_ETCD_PORT}" \
  --listen-peer-urls "http://127.0.0.1:$((K8S_TIER_ETCD_PORT + 1))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((K8S_TIER_ETCD_PORT + 1))" \
  --initial-cluster "k8s-tier=http://127.0.0.1:$((K8S_TIER_ETCD_PORT + 1))" \
  --unsafe-no-fsync --log-level warn
ready etcd curl -fsS "http://127.0.0.1:${K8S_TIER_ETCD_PORT}/health"

# --- kube-apiserver -----------------------------------------------------------------------------
# The webhooks of local operators are called at https://NAME.NAMESPACE.svc:PORT (see
# local_operator.py); the API server alone sees those names as 127.0.0.1, through a hosts file
# bind-mounted in a mount namespace of its own (nothing on the machine changes).
HOSTS="${K8S_TIER_RUN}/hosts"
{
  cat /etc/hosts
  echo "127.0.0.1 training-operator.kubeflow.svc"
} >"${HOSTS}"
# The admission plugins a real cluster runs (kubeadm's defaults plus those named explicitly).
ADMISSION="NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultTolerationSeconds,DefaultStorageClass"
ADMISSION+=",PersistentVolumeClaimResize,Priority,RuntimeClass,NodeRestriction,PodSecurity"
ADMISSION+=",MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,ResourceQuota"
# shellcheck disable=SC2016
start kube-apiserver unshare --mount -- bash -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' _ \
  "${HOSTS}" "${CP}" kube-apiserver \
  --etcd-servers "http://127.0.0.1:${K8S_TIER_ETCD_PORT}" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "${K8S_TIER_APISERVER_PORT}" \
  --tls-cert-file "${PKI}/apiserver.crt" --tls-private-key-file "${PKI}/apiserver.key" \
  --client-ca-file "${PKI}/ca.crt" \
  --kubelet-client-certificate "${PKI}/apiserver-kubelet-client.crt" \
  --kubelet-client-key "${PKI}/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "${PKI}/sa.pub" --service-account-signing-key-file "${PKI}/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 \
  --authorization-mode Node,RBAC --enable-admission-plugins "${ADMISSION}" \
  --allow-privileged=true --profiling=false --cert-dir "${PKI}/apiserver-generated"
ready kube-apiserver "${KUBECTL[@]}" get --raw /readyz

# --- kube-controller-manager and kube-scheduler -------------------------------------------------
KCM_CONFIG="${K8S_TIER_RUN}/controller-manager.kubeconfig"
start kube-controller-manager "${CP}" kube-controller-manager \
  --kubeconfig "${KCM_CONFIG}" --authentication-kubeconfig "${KCM_CONFIG}" \
  --authorization-kubeconfig "${KCM_CONFIG}" \
  --bind-address 127.0.0.1 --secure-port "${K8S_TIER_KCM_PORT}" --leader-elect=false \
  --use-service-account-credentials=true --service-account-private-key-file "${PKI}/sa.key" \
  --root-ca-file "${PKI}/ca.crt" --cluster-signing-cert-file "${PKI}/ca.crt" \
  --cluster-signing-key-file "${PKI}/ca.key" --cert-dir "${PKI}/controller-manager-generated"
SCHED_CONFIG="${K8S_TIER_RUN}/scheduler.kubeconfig"
start kube-scheduler "${CP}" kube-scheduler \
  --kubeconfig "${SCHED_CONFIG}" --authentication-kubeconfig "${SCHED_CONFIG}" \
  --authorization-kubeconfig "${SCHED_CONFIG}" \
  --bind-address 127.0.0.1 --secure-port "${K8S_TIER_SCHEDULER_PORT}" --leader-elect=false \
  --cert-dir "${PKI}/scheduler-generated"
ready kube-controller-manager curl -fsSk "https://127.0.0.1:${K8S_TIER_KCM_PORT}/healthz"
ready kube-scheduler curl -fsSk "https://127.0.0.1:${K8S_TIER_SCHEDULER_PORT}/healthz"
# The controller-manager makes each namespace's default ServiceAccount: wait for one.
wait_until "${TIMEOUT}" "default ServiceAccount" "${KUBECTL[@]}" -n default get serviceaccount default

# --- kwok: nodes and the pods bound to them -------------------------------------------------------
KWOK_DIR="$(go_module_dir sigs.k8s.io/kwok "${K8S_TIER_KWOK_VERSION}")"
[[ -d "${KWOK_DIR}/kustomize/stage" ]] || die "kwok ${K8S_TIER_KWOK_VERSION} module has no kustomize/stage"
KWOK_STAGES=(
  "${KWOK_DIR}/kustomize/stage/node/fast/node-initialize.yaml"
  "${KWOK_DIR}/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml"
  "${KWOK_DIR}/kustomize/stage/pod/fast/pod-ready.yaml"
  "${KWOK_DIR}/kustomize/stage/pod/fast/pod-delete.yaml"
  "${TIER_SRC}/kwok-stages.yaml"
)
# Nodes answer at 127.0.0.1 (kwok's own server plays the kubelet's port): the API server never
# dials an address off this machine, e.g. for `kubectl logs`.
start kwok "${K8S_TIER_BIN}/kwok" --kubeconfig "${K8S_TIER_RUN}/kwok.kubeconfig" \
  --manage-all-nodes=false --manage-nodes-with-label-selector type=kwok \
  --node-ip 127.0.0.1 --node-port "${K8S_TIER_KWOK_PORT}" \
  --server-address "127.0.0.1:${K8S_TIER_KWOK_PORT}" \
  --tls-cert-file "${PKI}/kwok-server.crt" --tls-private-key-file "${PKI}/kwok-server.key" \
  "${KWOK_STAGES[@]/#/--config=}"
ready kwok curl -fsSk "https://127.0.0.1:${K8S_TIER_KWOK_PORT}/healthz"
"${KUBECTL[@]}" apply --server-side -f "${TIER_SRC}/nodes.yaml" >/dev/null
"${KUBECTL[@]}" wait --for=condition=Ready node --selector type=kwok --timeout "${TIMEOUT}s" >/dev/null
log "nodes: $("${KUBECTL[@]}" get nodes --no-headers -o custom-columns=N:.metadata.name | tr '\n' ' ')"

# --- the Training Operator (upstream standalone overlay, run as a local process) -----------------
TO_DIR="$(go_module_dir github.com/kubeflow/training-operator "${TRAINING_OPERATOR_VERSION}")"
[[ -d "${TO_DIR}/manifests/overlays/standalone" ]] || die "training-operator module has no standalone overlay"
kubectl kustomize "${TO_DIR}/manifests/overlays/standalone" |
  "${PYTHON}" "${TIER_SRC}/local_operator.py" --deployment training-operator \
    --webhook-port "${K8S_TIER_TRAINING_OPERATOR_WEBHOOK_PORT}" >"${K8S_TIER_RUN}/training-operator.yaml"
"${KUBECTL[@]}" apply --server-side -f "${K8S_TIER_RUN}/training-operator.yaml" >/dev/null
"${KUBECTL[@]}" wait --for=condition=Established --timeout "${TIMEOUT}s" \
  crd/pytorchjobs.kubeflow.org crd/mpijobs.kubeflow.org >/dev/null
# The operator authenticates as its own ServiceAccount, so its upstream RBAC is what it gets.
TO_TOKEN="$("${KUBECTL[@]}" -n kubeflow create token training-operator --duration 24h)"
kubeconfig training-operator "{token: \"${TO_TOKEN}\"}"
rm -rf "${TO_CERT_DIR}"
mkdir -p "${TO_CERT_DIR}"
start training-operator env KUBECONFIG="${K8S_TIER_RUN}/training-operator.kubeconfig" \
  MY_POD_NAMESPACE=kubeflow MY_POD_NAME=training-operator-local \
  "${K8S_TIER_BIN}/training-operator.v1" \
  --metrics-bind-address "127.0.0.1:${K8S_TIER_TRAINING_OPERATOR_METRICS_PORT}" \
  --health-probe-bind-address "127.0.0.1:${K8S_TIER_TRAINING_OPERATOR_PROBE_PORT}" \
  --webhook-server-port "${K8S_TIER_TRAINING_OPERATOR_WEBHOOK_PORT}" \
  --pytorch-init-container-image "${ALPINE_IMAGE}" \
  --mpi-kubectl-delivery-image "${MPI_KUBECTL_DELIVERY_IMAGE}" \
  --pytorch-init-container-template-file "${REPO_ROOT}/manifests/platform/pytorch-init-container.yaml"
# Play the kubelet's secret volume: once the operator has written its certificate into the
# Secret, put the keys where it reads them.
wait_until "${TIMEOUT}" "training-operator certificate" \
  "${KUBECTL[@]}" -n kubeflow get secret "${TO_CERT_SECRET}" -o 'jsonpath={.data.tls\.crt}' --allow-missing-template-keys=false
for key in ca.crt tls.crt tls.key; do
  "${KUBECTL[@]}" -n kubeflow get secret "${TO_CERT_SECRET}" -o "jsonpath={.data.${key//./\\.}}" |
    base64 -d >"${TO_CERT_DIR}/${key}"
done
ready training-operator curl -fsS "http://127.0.0.1:${K8S_TIER_TRAINING_OPERATOR_PROBE_PORT}/readyz"

log "k8s tier up in $((SECONDS - start_time))s: export KUBECONFIG=${K8S_TIER_KUBECONFIG}"
