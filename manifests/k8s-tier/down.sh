#!/usr/bin/env bash
# Stop exactly what up.sh started (its pid files), newest first, and wait for each to exit.
# Keeps the logs in .cache/k8s-tier/run/logs/ for a look after a failure; the next up.sh wipes them.
set -euo pipefail
# shellcheck source=manifests/k8s-tier/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PIDS="${K8S_TIER_RUN}/pids"
[[ -d "${PIDS}" ]] || {
  log "not up (no ${PIDS})"
  exit 0
}
for name in training-operator kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  file="${PIDS}/${name}.pid"
  [[ -f "${file}" ]] || continue
  pid="$(cat "${file}")"
  if kill -0 "${pid}" 2>/dev/null; then
    # Each was started with setsid: end its whole process group (unshare + apiserver).
    kill -TERM -- "-${pid}" 2>/dev/null || kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "${pid}" 2>/dev/null; then
      kill -KILL -- "-${pid}" 2>/dev/null || true
      log "${name} (pid ${pid}) killed after 10s"
    else
      log "stopped ${name} (pid ${pid})"
    fi
  fi
  rm -f "${file}"
done
