#!/usr/bin/env bash
# Build the project images: images/build.sh [component|trainer|server|mlflow ...] (default: all).
#
# Tags are REGISTRY/NAME:TAG with TAG defaulting to the package version in
# pyproject.toml (never "latest"; components/common/images.py computes the same names).
# Layers are cached by the engine (podman's local storage persists on a machine), and
# each Dockerfile installs dependencies before copying source, so a source-only change
# rebuilds only the last layers.
#
# Settings (environment):
#   CONTAINER_ENGINE  podman (default) or docker
#   IMAGE_REGISTRY    default ghcr.io/fareflow
#   IMAGE_TAG         default: version from pyproject.toml; "latest" is refused
#   BASE_IMAGE        base for all images (default: the Dockerfiles' python:3.11-slim-bookworm;
#                     CI passes the local stand-in from images/make-base.sh)
#   TORCH_VARIANT     cpu (default) or cuda, for the trainer (the one image with torch; torch
#                     is looked up, and downloaded if need be, only when the trainer is built)
#   TORCH_WHEEL_DIR   host directory holding torch wheels, mounted read-only into podman
#                     builds (default: the first directory in PIP_FIND_LINKS or pip's
#                     global.find-links that holds a torch wheel, else PyPI's torch and its
#                     dependencies downloaded into TORCH_WHEEL_CACHE, default
#                     ~/.cache/fareflow/torch-wheels/VERSION); set empty: use the CPU index
#   CA_BUNDLE         host CA bundle mounted over the image's during podman builds so pip
#                     can reach the index (default /etc/ssl/certs/ca-certificates.crt if present)
#   BUILD_ARGS        extra arguments for the engine's build command
#   IMAGE_PRUNE       1 (default): with podman, after the builds remove the images earlier runs of
#                     this script left untagged (each run tags its stages' images as
#                     localhost/fareflow-build-cache/NAME:STAGE, the layer cache the next build
#                     starts from, and labels what it builds fareflow.build=1); 0 keeps them
#   MIN_FREE_GIB      below this much free space in podman's storage the build warns first
#                     (default 14: a trainer whose dependencies changed writes its venv twice,
#                     ~6 GB each); 0: no check
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
ENGINE="${CONTAINER_ENGINE:-podman}"
REGISTRY="${IMAGE_REGISTRY:-ghcr.io/fareflow}"
VERSION="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$root/pyproject.toml")"
TAG="${IMAGE_TAG:-$VERSION}"
TORCH_VARIANT="${TORCH_VARIANT:-cpu}"
CA_BUNDLE="${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"
read -r -a extra_args <<<"${BUILD_ARGS:-}"

if [[ -z $TAG || $TAG == latest ]]; then
  echo "build: IMAGE_TAG must be a fixed version, not '${TAG}' (kind/KServe would try to pull it)" >&2
  exit 2
fi
case $TORCH_VARIANT in cpu | cuda) ;; *) echo "build: TORCH_VARIANT must be cpu or cuda" >&2; exit 2 ;; esac

names=("$@")
((${#names[@]})) || names=(component trainer server mlflow)

# Disk: a build that runs out of space fails deep inside the engine with pages of errors, so
# say first that it may (a build whose layers are all cached needs next to nothing: a warning).
MIN_FREE_GIB="${MIN_FREE_GIB:-14}"
if [[ $ENGINE == podman && $MIN_FREE_GIB != 0 ]]; then
  graphroot="$(podman info --format '{{.Store.GraphRoot}}')"
  free_gib=$(( $(df --output=avail -k "$graphroot" | tail -1) / 1024 / 1024 ))
  if ((free_gib < MIN_FREE_GIB)); then
    echo "build: warning: only ${free_gib} GiB free under $graphroot; a trainer whose" \
      "dependencies changed needs about ${MIN_FREE_GIB} (MIN_FREE_GIB). If the build runs out of" \
      "space: 'podman image prune' removes untagged images, 'podman system df' shows what holds it" >&2
  fi
fi

# The torch pin comes from pyproject.toml so the image matches what the tests use.
TORCH_VERSION="$(python3 "$here/requirements-from-pyproject.py" "$root/pyproject.toml" train | sed -n 's/^torch==//p')"
[[ -n $TORCH_VERSION ]] || { echo "build: no torch== pin in pyproject.toml [train]" >&2; exit 1; }

# Only the trainer needs torch wheels: building the others never looks for (or downloads) them.
[[ " ${names[*]} " == *" trainer "* ]] || TORCH_WHEEL_DIR="${TORCH_WHEEL_DIR-}"
if [[ -z ${TORCH_WHEEL_DIR+set} ]]; then
  TORCH_WHEEL_DIR=""
  for dir in ${PIP_FIND_LINKS:-} $(pip config get global.find-links 2>/dev/null || true); do
    dir="${dir#file://}"
    if compgen -G "$dir/torch-${TORCH_VERSION}*.whl" >/dev/null; then TORCH_WHEEL_DIR="$dir"; break; fi
  done
  # No torch wheel on this machine, and the PyTorch CPU index is out of reach here: PyPI's torch
  # (its default build, CUDA libraries included, which runs on CPU) and its dependencies,
  # downloaded once into a machine-wide cache that later builds (and fresh clones) reuse.
  if [[ -z $TORCH_WHEEL_DIR && $ENGINE == podman && $TORCH_VARIANT == cpu ]]; then
    TORCH_WHEEL_DIR="${TORCH_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fareflow/torch-wheels/$TORCH_VERSION}"
    # .complete: every wheel is there (a download cut short is redone; a full cache is used offline).
    if [[ ! -f $TORCH_WHEEL_DIR/.complete ]]; then
      mkdir -p "$TORCH_WHEEL_DIR"
      echo "build: no torch $TORCH_VERSION wheel on this machine; downloading PyPI's into $TORCH_WHEEL_DIR (once)"
      python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
        --dest "$TORCH_WHEEL_DIR" "torch==$TORCH_VERSION"
      touch "$TORCH_WHEEL_DIR/.complete"
    fi
  fi
fi

common=(--build-arg "VERSION=$VERSION")
[[ -n ${BASE_IMAGE:-} ]] && common+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
if [[ $ENGINE == podman ]]; then
  # docker format keeps SHELL (pipefail) and LABELs; OCI format drops SHELL.
  common+=(--format docker --layers --label fareflow.build=1)
  if [[ -n ${BASE_IMAGE:-} ]] && podman image exists "$BASE_IMAGE"; then common+=(--pull=never); fi
  if [[ -n $CA_BUNDLE && -f $CA_BUNDLE ]]; then
    common+=(-v "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro"
      --build-arg "PIP_CERT=/etc/ssl/certs/ca-certificates.crt")
  fi
fi

for name in "${names[@]}"; do
  dockerfile="$here/$name/Dockerfile"
  [[ -f $dockerfile ]] || { echo "build: no image '$name' ($dockerfile)" >&2; exit 2; }
  ref="$REGISTRY/$name:$TAG"
  args=("${common[@]}")
  if [[ $name == trainer ]]; then  # the only image with torch (the server runs model.npz with numpy)
    args+=(--build-arg "TORCH_VARIANT=$TORCH_VARIANT" --build-arg "TORCH_VERSION=$TORCH_VERSION")
    if [[ $ENGINE == podman && $TORCH_VARIANT == cpu && -n $TORCH_WHEEL_DIR ]]; then
      args+=(-v "$TORCH_WHEEL_DIR:/wheels:ro" --build-arg "TORCH_FIND_LINKS=/wheels")
    fi
  fi
  [[ $ENGINE == podman ]] && args+=(--ignorefile "$here/$name/Dockerfile.dockerignore")
  torch=""
  [[ $name == trainer ]] && torch=", torch $TORCH_VERSION/$TORCH_VARIANT${TORCH_WHEEL_DIR:+ from $TORCH_WHEEL_DIR}"
  echo "build: $ref  (engine $ENGINE, base ${BASE_IMAGE:-Dockerfile default}$torch)"
  start=$SECONDS
  "$ENGINE" build "${args[@]}" "${extra_args[@]}" -f "$dockerfile" -t "$ref" "$root"
  if [[ $ENGINE == podman ]]; then
    # Tag every stage but the last (all cached by now: seconds), so the prune below keeps
    # this build's layer cache and removes only what earlier builds left.
    stages=()
    while read -r stage; do stages+=("$stage"); done < <(sed -nE 's/^FROM[[:space:]]+[^[:space:]]+[[:space:]]+AS[[:space:]]+([A-Za-z0-9_.-]+).*/\1/ip' "$dockerfile")
    ((${#stages[@]})) && unset 'stages[-1]'
    for stage in "${stages[@]}"; do
      "$ENGINE" build "${args[@]}" "${extra_args[@]}" -f "$dockerfile" --target "$stage" \
        -t "localhost/fareflow-build-cache/$name:$stage" --quiet "$root" >/dev/null
    done
  fi
  echo "build: $ref built in $((SECONDS - start))s"
done

if [[ $ENGINE == podman && ${IMAGE_PRUNE:-1} == 1 ]]; then
  # Untagged images from earlier builds (an older trainer holds ~6 GB): only ours, by label.
  # A failure here (an image a leftover build container still uses) costs disk, not the build.
  if out=$(podman image prune --force --filter label=fareflow.build=1 2>&1); then
    echo "build: removed $(grep -c . <<<"$out") untagged image(s) earlier builds left (IMAGE_PRUNE=0 keeps them)"
  else
    echo "build: warning: could not remove the untagged images earlier builds left: ${out##*Error: }" >&2
  fi
fi
