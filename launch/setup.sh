#!/usr/bin/env bash
# Installs what temoe needs (when missing) and builds it in build/. Idempotent: a second run with
# nothing changed checks the packages in well under a second and lets the build do nothing.
#
# As root on Debian/Ubuntu, missing packages are installed with apt-get. Otherwise the script names
# what is missing with the `module load` equivalents a cluster user would reach for, and stops with
# exit 1 when what is missing is needed by the build (the configure step tells).
#
# Every failure prints what failed: an ERR trap names the line and the command, so no exit is silent.
set -Eeuo pipefail
trap 'status=$?; echo "setup: line $LINENO: '\''$BASH_COMMAND'\'' failed with exit $status" >&2; exit $status' ERR
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

# What a cluster user loads instead of a Debian package (module names vary by site; these are the
# usual Lmod / Spack names).
module_for() {
  case $1 in
    g++ | make) echo gcc ;;
    cmake) echo cmake ;;
    pkg-config) echo pkgconf ;;
    openmpi-bin | libopenmpi-dev) echo openmpi ;;
    libhdf5-dev | hdf5-tools) echo hdf5 ;;
    libboost-program-options-dev) echo boost ;;
    libopenblas-openmp-dev) echo openblas ;;
    nlohmann-json3-dev) echo nlohmann-json ;;
    libgtest-dev) echo googletest ;;
    python3 | python3-numpy | python3-h5py) echo python ;;
    munge) echo munge ;;
    slurm*) echo slurm ;;
    *) echo "$1" ;;
  esac
}

# dpkg-query exits 1 when any named package is unknown or not installed; that is the very case this
# step is for, so its status is not an error here (it printed what it knows either way).
missing=()
if command -v dpkg-query > /dev/null; then
  installed=$({ dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2> /dev/null || true; } |
    awk '$2 ~ /^ii/ {sub(/:.*/, "", $1); print $1}')
  for package in "${PACKAGES[@]}"; do
    grep -qx -- "$package" <<< "$installed" || missing+=("$package")
  done
else
  echo "setup: dpkg-query not found (not a Debian-based system): the packages cannot be checked;" \
    "the build below tells what is missing" >&2
fi

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get > /dev/null; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_log=$(mktemp "${TMPDIR:-/tmp}/temoe-apt.XXXXXX")
    if ! apt-get update -qq > "$apt_log" 2>&1; then
      cat "$apt_log" >&2 && rm -f "$apt_log"
      echo "setup: 'apt-get update' failed (log above)" >&2
      exit 1
    fi
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >> "$apt_log" 2>&1; then
      cat "$apt_log" >&2 && rm -f "$apt_log"
      echo "setup: 'apt-get install ${missing[*]}' failed (log above)" >&2
      exit 1
    fi
    rm -f "$apt_log"
  else
    modules=$(for package in "${missing[@]}"; do module_for "$package"; done | sort -u | tr '\n' ' ')
    echo "setup: missing packages: ${missing[*]}" >&2
    if [[ $(id -u) -ne 0 ]]; then
      echo "setup: not root, so nothing is installed. Ask for them (as root: apt-get install ${missing[*]})" >&2
    else
      echo "setup: apt-get not found, so nothing is installed." >&2
    fi
    echo "setup: or load the equivalents: module load ${modules% }" >&2
  fi
fi

# Tools the build and the run cannot do without; a missing one ends here with its package's name.
need_tool() {
  command -v "$1" > /dev/null && return 0
  echo "setup: '$1' not found on PATH (Debian package $2; module load $(module_for "$2"))" >&2
  return 1
}
tools_ok=1
need_tool c++ g++ || tools_ok=0
need_tool make make || tools_ok=0
need_tool cmake cmake || tools_ok=0
need_tool mpicxx libopenmpi-dev || tools_ok=0
need_tool mpirun openmpi-bin || tools_ok=0
if ((!tools_ok)); then
  echo "setup: the build cannot proceed without the tools above" >&2
  exit 1
fi

jobs=$(nproc 2> /dev/null || echo 2)
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  if ! cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DTEMOE_WERROR=ON > "$BUILD_DIR.configure.log" 2>&1; then
    cat "$BUILD_DIR.configure.log" >&2
    rm -f "$BUILD_DIR/CMakeCache.txt"  # the next run configures afresh once the cause is fixed
    echo "setup: configuring the build failed (log above, also in $BUILD_DIR.configure.log)" >&2
    ((${#missing[@]})) && echo "setup: likely because of the missing packages: ${missing[*]}" >&2
    exit 1
  fi
fi
status=0
cmake --build "$BUILD_DIR" -j "$jobs" 2>&1 | grep -Ev '^\[ *[0-9]+%\] (Building|Linking)|^Consolidate compiler' || status=${PIPESTATUS[0]}
if ((status != 0)); then
  echo "setup: the build failed (exit $status, compiler output above)" >&2
  exit 1
fi
