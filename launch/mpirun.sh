#!/usr/bin/env bash
# mpirun with the flags this kind of machine needs: as root, Open MPI must be told that this is
# intended; with fewer cores than ranks, it must be allowed to oversubscribe. Inside a Slurm
# allocation plain mpirun already does the right thing, so it is left alone there.
set -euo pipefail
flags=()
if [[ -z "${SLURM_JOB_ID:-}" ]]; then
  flags+=(--oversubscribe --bind-to none)
  [[ $(id -u) -eq 0 ]] && flags+=(--allow-run-as-root)
fi
# Keep each rank to its share of the cores unless the caller decided.
ranks=2
for ((i = 1; i <= $#; i++)); do
  if [[ ${!i} == -np || ${!i} == -n ]]; then j=$((i + 1)); ranks=${!j}; fi
done
if [[ -z "${OMP_NUM_THREADS:-}" ]]; then
  cores=$(nproc 2> /dev/null || echo 1)
  export OMP_NUM_THREADS=$((cores / ranks > 0 ? cores / ranks : 1))
fi
exec mpirun "${flags[@]}" -x OMP_NUM_THREADS "$@"
