#!/usr/bin/env bash
# Installs what temoe needs (when missing) and builds it in build/. Idempotent: a second run with
# nothing changed checks the packages in well under a second and lets the build do nothing.
#
# As root on Debian/Ubuntu, missing packages are installed with apt-get. Otherwise the script names
# what is missing (a cluster user would `module load` the equivalents) and tries the build anyway.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUILD_DIR=${TEMOE_BUILD_DIR:-build}
PACKAGES=(
  g++ make cmake pkg-config
  openmpi-bin libopenmpi-dev
  libhdf5-dev hdf5-tools
  libboost-program-options-dev
  libopenblas-openmp-dev
  nlohmann-json3-dev
  libgtest-dev
  python3 python3-numpy python3-h5py
)
# Extra package groups a caller can ask for: TEMOE_EXTRA_PACKAGES="python3-torch ..."
read -r -a EXTRA <<< "${TEMOE_EXTRA_PACKAGES:-}"
PACKAGES+=("${EXTRA[@]}")

missing=()
if command -v dpkg-query > /dev/null; then
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2> /dev/null | awk '$2 ~ /^ii/ {print $1}')
  for package in "${PACKAGES[@]}"; do
    grep -qx "$package" <<< "$installed" || missing+=("$package")
  done
fi

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get > /dev/null; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" > /tmp/temoe-apt.log 2>&1 || {
      cat /tmp/temoe-apt.log
      echo "setup: apt-get install failed" >&2
      exit 1
    }
  else
    echo "setup: missing packages: ${missing[*]}" >&2
    echo "setup: not root, so nothing is installed; provide them (e.g. 'module load cmake openmpi hdf5 boost openblas')" >&2
    echo "setup: and the build is attempted anyway." >&2
  fi
fi

for tool in cmake mpicxx mpirun; do
  command -v "$tool" > /dev/null || { echo "setup: '$tool' not found on PATH" >&2; exit 1; }
done

jobs=$(nproc 2> /dev/null || echo 2)
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DTEMOE_WERROR=ON > "$BUILD_DIR.configure.log" 2>&1 || {
    cat "$BUILD_DIR.configure.log"
    exit 1
  }
fi
cmake --build "$BUILD_DIR" -j "$jobs" 2>&1 | grep -Ev '^\[ *[0-9]+%\] (Building|Linking)|^Consolidate compiler' || true
test "${PIPESTATUS[0]}" -eq 0 || { echo "setup: build failed" >&2; exit 1; }
