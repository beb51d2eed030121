# shellcheck shell=bash
# Helpers shared by the cluster scripts (sourced, not run).
#
# DRY_RUN=1: every command is printed ("+ cmd args", shell-quoted) instead of run, so the
# whole sequence with its resolved versions and tags can be read (and tested) without a
# cluster, Docker or network. DRY_RUN_FAIL_AT=STEP makes a dry run fail at that step, to show
# the failure path (log collection, teardown).

DRY_RUN="${DRY_RUN:-0}"
DRY_RUN_FAIL_AT="${DRY_RUN_FAIL_AT:-}"

log() {
  printf '==> %s\n' "$*" >&2
}

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Print a step marker (on stdout, so dry-run output shows the structure).
step() {
  printf '# step: %s\n' "$1"
  log "$1"
  if [[ "${DRY_RUN}" == "1" && -n "${DRY_RUN_FAIL_AT}" && "${DRY_RUN_FAIL_AT}" == "$1" ]]; then
    printf '# dry-run: simulated failure at step %s\n' "$1"
    return 1
  fi
}

# Print a command on one line, single-quoting the arguments that need it.
show() {
  local out="+" arg
  for arg in "$@"; do
    if [[ "${arg}" =~ ^[A-Za-z0-9_./:=,@%+-]+$ || "${arg}" == "&" || "${arg}" == ">" || "${arg}" == "|" ]]; then
      out+=" ${arg}"
    else
      out+=" ${arg@Q}"
    fi
  done
  printf '%s\n' "${out}"
}

# Run a command (or only print it in a dry run).
run() {
  show "$@"
  if [[ "${DRY_RUN}" != "1" ]]; then
    "$@"
  fi
}

# Run a command in the background (port-forwards); stop_bg ends those started so far.
BG_PIDS=()
run_bg() {
  show "$@" "&"
  if [[ "${DRY_RUN}" != "1" ]]; then
    "$@" &
    BG_PIDS+=("$!")
  fi
}

stop_bg() {
  local pid
  for pid in "${BG_PIDS[@]}"; do
    kill "${pid}" 2>/dev/null || true
  done
  BG_PIDS=()
}

# Fail early with a clear message when a tool is missing (not in a dry run).
require() {
  local tool
  [[ "${DRY_RUN}" == "1" ]] && return 0
  for tool in "$@"; do
    command -v "${tool}" >/dev/null 2>&1 || die "'${tool}' is required but not on PATH"
  done
}

# Wait until each CRD is Established (the API server serves its kind).
wait_crds() {
  local crd
  for crd in "$@"; do
    run kubectl wait --for=condition=Established --timeout="${CRD_TIMEOUT:-180s}" "crd/${crd}"
  done
}

# Retry a command until it succeeds (webhooks that are not serving yet, port-forwards).
retry() {
  local tries="$1" delay="$2" i
  shift 2
  show "$@"
  [[ "${DRY_RUN}" == "1" ]] && return 0
  for ((i = 1; i <= tries; i++)); do
    if "$@"; then
      return 0
    fi
    log "attempt ${i}/${tries} failed: $*; retrying in ${delay}s"
    sleep "${delay}"
  done
  return 1
}

# Create namespace $1 if it is missing, leave it alone if it exists (client-side render piped
# into apply, so a second run changes nothing).
ensure_namespace() {
  show kubectl create namespace "$1" --dry-run=client -o yaml "|" kubectl apply -f -
  if [[ "${DRY_RUN}" != "1" ]]; then
    kubectl create namespace "$1" --dry-run=client -o yaml | kubectl apply -f -
  fi
}

# Roll out each deployment $2... in namespace $1, then wait for any other deployment there
# (one an upstream release added that is not named here) to be Available.
rollout_all() {
  local ns="$1" d
  shift
  for d in "$@"; do
    run kubectl -n "${ns}" rollout status "deployment/${d}" --timeout="${ROLLOUT_TIMEOUT:-600s}"
  done
  run kubectl -n "${ns}" wait --for=condition=Available deployment --all --timeout="${ROLLOUT_TIMEOUT:-600s}"
}
