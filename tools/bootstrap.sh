#!/usr/bin/env bash
# Installs kvsim's dependencies from Debian's packages and builds it (Release, vectorised for this
# CPU). Idempotent: run it again after a pull. Needs root for apt-get.
#   KVSIM_BUILD_DIR   build folder (default: build)
#   KVSIM_CMAKE_ARGS  extra CMake arguments, e.g. "-DKVSIM_NATIVE=OFF" for a portable binary
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake make g++ pkg-config
          libboost-program-options-dev libboost-graph-dev libhdf5-dev libeigen3-dev libtbb-dev
          libgtest-dev libgmock-dev libbenchmark-dev
          python3 python3-numpy python3-h5py python3-torch libopenblas0-pthread
          slurm-wlm munge python3-matplotlib chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

build_dir=${KVSIM_BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release ${KVSIM_CMAKE_ARGS:-} >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
