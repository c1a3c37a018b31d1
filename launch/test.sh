#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole suite (unit tests,
# MPI tests under mpirun -np 2/4, end-to-end tests). GPU tests skip with a message when no GPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash launch/setup.sh
jobs=$(nproc 2> /dev/null || echo 2)
cd "${TEMOE_BUILD_DIR:-build}"
ctest --output-on-failure -j "$jobs" --timeout 600 "$@"
