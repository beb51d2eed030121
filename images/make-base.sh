#!/usr/bin/env bash
# Make the base image the project Dockerfiles build on, without pulling anything:
#   debootstrap --variant=minbase bookworm -> podman import -> add Python 3.11 from Debian.
# The result is a local stand-in for python:3.11-slim-bookworm; pass it to the
# Dockerfiles as --build-arg BASE_IMAGE=... (images/build.sh does when BASE_IMAGE is set).
#
# Idempotent: an existing base image is kept (its ID keys every cached layer above
# it), unless FORCE=1.
#
# Settings (environment):
#   BASE_IMAGE     name of the Python base to make (default localhost/fareflow-base/python:3.11-slim-bookworm)
#   MINBASE_IMAGE  name of the imported root fs (default localhost/fareflow-base/debian:bookworm-minbase)
#   DEBIAN_MIRROR  (default http://deb.debian.org/debian)
#   FORCE=1        rebuild both even if they exist
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
BASE_IMAGE="${BASE_IMAGE:-localhost/fareflow-base/python:3.11-slim-bookworm}"
MINBASE_IMAGE="${MINBASE_IMAGE:-localhost/fareflow-base/debian:bookworm-minbase}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
FORCE="${FORCE:-0}"

exists() { podman image exists "$1"; }

if [[ $FORCE != 1 ]] && exists "$BASE_IMAGE"; then
  echo "make-base: $BASE_IMAGE exists ($(podman image inspect --format '{{.Id}}' "$BASE_IMAGE" | cut -c1-12)); FORCE=1 rebuilds it"
  exit 0
fi

if [[ $FORCE == 1 ]] || ! exists "$MINBASE_IMAGE"; then
  rootfs="$(mktemp -d /var/tmp/fareflow-minbase.XXXXXX)"
  chmod 0755 "$rootfs"  # becomes the image's / : mktemp makes it 0700
  trap 'rm -rf "$rootfs"' EXIT
  echo "make-base: debootstrap --variant=minbase bookworm into $rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    exit 1
  }
  rm -f "$rootfs.log"
  # Leave no apt lists or caches in the layer.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" --numeric-owner -c . | podman import \
    --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$MINBASE_IMAGE"
fi

echo "make-base: building $BASE_IMAGE from $MINBASE_IMAGE"
podman build --pull=never --format docker \
  --build-arg MINBASE_IMAGE="$MINBASE_IMAGE" \
  -t "$BASE_IMAGE" -f "$here/base/Dockerfile" "$here/base"
podman run --rm "$BASE_IMAGE" python --version
