#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs the whole suite (unit tests, MPI
# tests under mpirun -np 2/4, end-to-end tests, the round trip through a local Slurm). GPU tests
# skip with a message when no GPU.
set -Eeuo pipefail
trap 'status=$?; echo "test: line $LINENO: '\''$BASH_COMMAND'\'' failed with exit $status" >&2; exit $status' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The Slurm round-trip test brings up a one-node Slurm of its own, and the fuzzers build with clang
# and libFuzzer: they need these on top of the build's.
TEMOE_EXTRA_PACKAGES="munge slurmctld slurmd slurm-client clang libclang-rt-14-dev libomp-14-dev ${TEMOE_EXTRA_PACKAGES:-}" bash launch/setup.sh
jobs=$(nproc 2> /dev/null || echo 2)
cd "${TEMOE_BUILD_DIR:-build}"
ctest --output-on-failure -j "$jobs" --timeout 600 "$@"
