#!/usr/bin/env bash
# Build the k8s tier's binaries from their pinned Go modules into .cache/k8s-tier/bin:
#   fareflow-control-plane  etcd + kube-apiserver + kube-controller-manager + kube-scheduler
#                           (one binary from control-plane/go.mod: k8s.io/kubernetes, etcd)
#   kwok                    sigs.k8s.io/kwok/cmd/kwok
#   training-operator.v1    github.com/kubeflow/training-operator/cmd/training-operator.v1
# Each is rebuilt only when its pin (or the Go toolchain) changes; the build time is printed.
set -euo pipefail
# shellcheck source=manifests/k8s-tier/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v "${GO}" >/dev/null || die "'${GO}' is required (Go toolchain) to build the k8s tier"
mkdir -p "${K8S_TIER_BIN}"
go_version="$("${GO}" env GOVERSION)"

# The control plane's versions are in go.mod too: refuse a build where they disagree.
grep -q "k8s.io/kubernetes ${K8S_TIER_KUBERNETES_VERSION}\$" "${TIER_SRC}/control-plane/go.mod" ||
  die "control-plane/go.mod does not require k8s.io/kubernetes ${K8S_TIER_KUBERNETES_VERSION} (versions.env)"
grep -q "go.etcd.io/etcd/server/v3 ${K8S_TIER_ETCD_VERSION}\$" "${TIER_SRC}/control-plane/go.mod" ||
  die "control-plane/go.mod does not require go.etcd.io/etcd/server/v3 ${K8S_TIER_ETCD_VERSION} (versions.env)"

# build NAME STAMP COMMAND...: run COMMAND unless bin/NAME exists with the same stamp.
build() {
  local name="$1" stamp="$2" start
  shift 2
  if [[ -x "${K8S_TIER_BIN}/${name}" && "$(cat "${K8S_TIER_BIN}/.${name}.stamp" 2>/dev/null)" == "${stamp}" ]]; then
    log "${name}: up to date (${stamp})"
    return 0
  fi
  log "building ${name} (${stamp})"
  start=${SECONDS}
  "$@"
  printf '%s\n' "${stamp}" >"${K8S_TIER_BIN}/.${name}.stamp"
  log "built ${name} in $((SECONDS - start))s"
}

total_start=${SECONDS}
cp_stamp="$(cat "${TIER_SRC}/control-plane/go.mod" "${TIER_SRC}/control-plane/go.sum" \
  "${TIER_SRC}/control-plane/main.go" | sha256sum | cut -c1-16) ${go_version}"
# The version the components report (/version, --version), as the upstream release build sets it.
minor="${K8S_TIER_KUBERNETES_VERSION#v1.}"
minor="${minor%%.*}"
cp_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  cp_ldflags+=" -X ${pkg}.gitVersion=${K8S_TIER_KUBERNETES_VERSION} -X ${pkg}.gitMajor=1"
  cp_ldflags+=" -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean"
done
cp_stamp+=" ${K8S_TIER_KUBERNETES_VERSION}"
# shellcheck disable=SC2016 # expanded by the inner bash
build fareflow-control-plane "${cp_stamp}" \
  bash -c 'cd "$1" && "$2" build -trimpath -ldflags="$4" -o "$3/fareflow-control-plane" .' _ \
  "${TIER_SRC}/control-plane" "${GO}" "${K8S_TIER_BIN}" "${cp_ldflags}"
build kwok "sigs.k8s.io/kwok@${K8S_TIER_KWOK_VERSION} ${go_version}" \
  env GOBIN="${K8S_TIER_BIN}" "${GO}" install -trimpath -ldflags="-s -w" \
  "sigs.k8s.io/kwok/cmd/kwok@${K8S_TIER_KWOK_VERSION}"
build training-operator.v1 "training-operator@${TRAINING_OPERATOR_VERSION} ${go_version}" \
  env GOBIN="${K8S_TIER_BIN}" "${GO}" install -trimpath -ldflags="-s -w" \
  "github.com/kubeflow/training-operator/cmd/training-operator.v1@${TRAINING_OPERATOR_VERSION}"
log "k8s tier binaries ready in $((SECONDS - total_start))s: ${K8S_TIER_BIN}"
