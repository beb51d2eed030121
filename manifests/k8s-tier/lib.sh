# shellcheck shell=bash
# Shared by the k8s tier's scripts (sourced, not run): pins, paths, logging, readiness waits.

TIER_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${TIER_SRC}/../.." && pwd)"
# shellcheck source=manifests/k8s-tier/versions.env
source "${TIER_SRC}/versions.env"
# shellcheck source=manifests/versions.env
source "${REPO_ROOT}/manifests/versions.env"

# Everything the tier builds or writes lives here (git-ignored): bin/ survives k8s-down,
# run/ (certificates, etcd data, logs, pid files, kubeconfigs) is made anew by k8s-up.
K8S_TIER_DIR="${K8S_TIER_DIR:-${REPO_ROOT}/.cache/k8s-tier}"
# shellcheck disable=SC2034 # used by the scripts that source this file
K8S_TIER_BIN="${K8S_TIER_DIR}/bin"
K8S_TIER_RUN="${K8S_TIER_DIR}/run"
# shellcheck disable=SC2034
K8S_TIER_KUBECONFIG="${K8S_TIER_RUN}/admin.kubeconfig"
GO="${GO:-go}"

log() { printf '==> [k8s-tier] %s\n' "$*" >&2; }
die() {
  printf 'k8s-tier: error: %s\n' "$*" >&2
  exit 1
}

# The module cache folder of a Go module at a version (downloaded if needed).
go_module_dir() {
  (cd "${TIER_SRC}/control-plane" && "${GO}" mod download -json "$1@$2") |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# Poll a readiness command until it succeeds: a check every 0.5 s, at most $1 seconds.
wait_until() {
  local timeout="$1" what="$2" deadline
  shift 2
  deadline=$((SECONDS + timeout))
  # each check is bounded too: a kubectl against an API server that accepts but never answers
  # would otherwise hang here past the deadline
  until timeout --kill-after=2 10 "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      die "${what}: not ready after ${timeout}s (logs: ${K8S_TIER_RUN}/logs/)"
    fi
    sleep 0.5
  done
  log "${what}: ready after $((SECONDS - deadline + timeout))s"
}
