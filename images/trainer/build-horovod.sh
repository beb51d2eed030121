#!/usr/bin/env bash
# Build a Horovod wheel against the torch installed in the calling Python (PyPI's sdist, patched
# to C++17: torch 2.13's headers need it, Horovod 0.28.1 asks for C++14). One script for the
# trainer image (with MPI, and NCCL for CUDA) and the development venv (gloo only), so both
# build the same source the same way.
#
# usage: build-horovod.sh VERSION WHEEL_DIR
#   PYTHON               the Python whose torch Horovod builds against (default: python)
#   HOROVOD_WITH_MPI=1   build the MPI controller too (needs mpicc: Debian's libopenmpi-dev);
#                        otherwise gloo only
#   HOROVOD_GPU_OPERATIONS, HOROVOD_NCCL_HOME, ...  passed through (the CUDA image sets them)
# Writes WHEEL_DIR/horovod-VERSION-*.whl; installing it is the caller's step.
set -euo pipefail

version=${1:?usage: build-horovod.sh VERSION WHEEL_DIR}
out=${2:?usage: build-horovod.sh VERSION WHEEL_DIR}
python=${PYTHON:-python}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --no-binary=:all: --dest "$work" "horovod==${version}"
tar -xzf "$work/horovod-${version}.tar.gz" -C "$work"
src="$work/horovod-${version}"
cmake_files=("$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt")
sed -i 's/CMAKE_CXX_STANDARD 14/CMAKE_CXX_STANDARD 17/' "${cmake_files[@]}"
if grep -n 'CMAKE_CXX_STANDARD 14' "${cmake_files[@]}"; then
  echo "build-horovod.sh: C++14 left in Horovod's CMake files" >&2
  exit 1
fi

export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1
if [ "${HOROVOD_WITH_MPI:-0}" = 1 ]; then
  command -v mpicc >/dev/null || { echo "build-horovod.sh: HOROVOD_WITH_MPI=1 but no mpicc" >&2; exit 1; }
  unset HOROVOD_WITHOUT_MPI
else
  unset HOROVOD_WITH_MPI
  export HOROVOD_WITHOUT_MPI=1
fi
# cmake >= 4 refuses Horovod's old cmake_minimum_required without this; older cmake ignores it.
MAKEFLAGS="-j$(nproc)"
export CMAKE_POLICY_VERSION_MINIMUM=3.5 MAKEFLAGS
mkdir -p "$out"
"$python" -m pip wheel --quiet --no-build-isolation --no-deps --wheel-dir "$out" "$src"
ls "$out"/horovod-"${version}"-*.whl
