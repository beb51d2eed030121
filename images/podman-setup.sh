#!/usr/bin/env bash
# Make podman usable on a CI build machine (Debian bookworm, root, no Docker engine).
#
# Facts verified on the build machines (see DESIGN.md): Debian's podman works with
# runc (crun fails on cgroups there), the cgroupfs cgroup manager, host networking
# and no default ulimits. This script installs podman/runc/debootstrap when they are
# missing and writes /etc/containers/containers.conf accordingly. It is idempotent:
# running it again changes nothing.
#
# Settings (environment): CONTAINERS_CONF (default /etc/containers/containers.conf).
set -euo pipefail

CONTAINERS_CONF="${CONTAINERS_CONF:-/etc/containers/containers.conf}"

need=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "podman-setup: missing ${need[*]} and not root; install them first" >&2
    exit 1
  fi
  echo "podman-setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}" uidmap iptables ca-certificates
fi

desired=$(cat <<'EOF'
# Written by images/podman-setup.sh (fareflow). Facts verified on the CI machines:
# runc + cgroupfs (crun fails on cgroups there), host network, no default ulimits.
[containers]
default_ulimits = []
netns = "host"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
)

if [[ -f $CONTAINERS_CONF ]] && [[ "$(cat "$CONTAINERS_CONF")" == "$desired" ]]; then
  echo "podman-setup: $CONTAINERS_CONF already configured"
else
  if [[ -f $CONTAINERS_CONF ]]; then
    cp -p "$CONTAINERS_CONF" "$CONTAINERS_CONF.fareflow-backup"
    echo "podman-setup: previous $CONTAINERS_CONF saved as $CONTAINERS_CONF.fareflow-backup"
  fi
  mkdir -p "$(dirname "$CONTAINERS_CONF")"
  printf '%s\n' "$desired" >"$CONTAINERS_CONF"
  echo "podman-setup: wrote $CONTAINERS_CONF"
fi

# A quick self-check that podman can talk to its storage with this configuration.
podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Store.GraphDriverName}}'
