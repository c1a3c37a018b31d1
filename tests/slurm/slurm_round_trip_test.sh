#!/usr/bin/env bash
# The Slurm round trip, on a real one-node Slurm (slurm/local_cluster.sh): slurm/train.sbatch runs
# the embedded default (configs/testbed.cfg, 2 ranks) and is preempted mid-run the way Slurm does it
# before a time limit (scancel --signal=USR1 --batch: the batch script's trap forwards the signal,
# the ranks write one checkpoint and exit 3, the script requeues the job). The job must come back,
# resume from that checkpoint and end with the same metrics lines and the same controller.h5 bytes
# as the same training run without interruption.
#   usage: slurm_round_trip_test.sh TEMOE_BINARY
# Exit status 77 (ctest: skipped) when Slurm or munge is not installed and cannot be.
set -euo pipefail
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
binary=$(realpath "$1")
cd "$source_dir"

work=$(mktemp -d /tmp/temoe-slurm-XXXXXX)
cluster=$work/cluster
cleanup() {
  bash slurm/local_cluster.sh stop "$cluster" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for log in "$work"/job.out "$cluster"/log/slurmctld.log "$cluster"/log/slurmd.log; do
    [[ -f $log ]] && { echo "--- $log (end)"; tail -30 "$log"; } >&2
  done
  exit 1
}

status=0
bash slurm/local_cluster.sh start "$cluster" || status=$?
((status == 77)) && { echo "SKIP: no Slurm here (install munge slurmctld slurmd slurm-client)"; exit 77; }
((status == 0)) || fail "the local Slurm did not start"
export SLURM_CONF=$cluster/slurm.conf PATH=$PATH:/usr/sbin
[[ $(sinfo --noheader --format=%t) == idle ]] || fail "sinfo does not show the node idle"

# The jobs run as the calling user; root needs Open MPI's consent (sbatch passes the environment on).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 TEMOE_BINARY=$binary
"$binary" make-data --out "$work/data.h5" --seed 1 --data.documents=60 > /dev/null
options=(--data.path="$work/data.h5" --train.steps=40 --train.checkpoint_every=5 --train.log_every=5)

# The reference: the same run on the same number of ranks, uninterrupted.
bash launch/mpirun.sh -np 2 "$binary" train --config configs/testbed.cfg --run-dir "$work/straight" "${options[@]}" \
  > "$work/straight.out" 2>&1 || { cat "$work/straight.out" >&2; fail "the uninterrupted run failed"; }

job=$(sbatch --parsable --ntasks=2 --output="$work/job.out" slurm/train.sbatch configs/testbed.cfg "$work/slurm" \
  "${options[@]}")
echo "submitted job $job"

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.2 s until it succeeds
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq $((seconds * 5))); do
    "$@" && return 0
    sleep 0.2
  done
  fail "waited $seconds s for $what"
}
job_field() { scontrol show job "$job" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
job_field_is() { [[ $(job_field "$1") == "$2" ]]; }

wait_for 120 "the job's first checkpoint" test -f "$work/slurm/ckpt-5.h5"
scancel --signal=USR1 --batch "$job"
echo "sent USR1 to the batch script of job $job"
wait_for 120 "the job to be requeued" job_field_is Restarts 1
# A requeued job may start again once its old credential has expired (slurm.conf's cred_expire:
# 10 s on the local cluster, 120 s by default). Starting it earlier by hand races with slurmd,
# which refuses to launch a job whose credential it has just revoked.
job_done() {  # true once COMPLETED; fails the test at once on any other end state
  local state
  state=$(job_field JobState)
  [[ $state =~ ^(FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL)$ ]] && fail "the job ended $state"
  [[ $state == COMPLETED ]]
}
wait_for 240 "the requeued job to finish" job_done

grep -q "written after SIGUSR1; requeueing" "$work/job.out" || fail "the job did not checkpoint and requeue on USR1"
grep -q "start 2 on" "$work/job.out" || fail "the job did not start a second time"
stopped_at=$(sed -n 's/^temoe-train: job .* start 2 on .* latest checkpoint: //p' "$work/job.out")
[[ $stopped_at =~ ^ckpt-([0-9]+)\.h5$ ]] || fail "the second start found no checkpoint (latest: '$stopped_at')"
((BASH_REMATCH[1] > 0 && BASH_REMATCH[1] < 40)) || fail "the stop checkpoint $stopped_at is not mid-run"
grep -q "resuming from $work/slurm/$stopped_at at step ${BASH_REMATCH[1]}" "$work/job.out" ||
  fail "the second start did not resume from $stopped_at"
"$binary" inspect "$work/slurm/$(cat "$work/slurm/latest")" > /dev/null || fail "the final checkpoint does not verify"

cmp "$work/straight/controller.h5" "$work/slurm/controller.h5" ||
  fail "controller.h5 after preemption and resume differs from the uninterrupted run"
/usr/bin/python3 - "$work/straight/metrics.jsonl" "$work/slurm/metrics.jsonl" << 'EOF' || fail "metrics differ"
import json, sys
def lines(path):
    out = []
    for line in open(path):
        record = json.loads(line)
        record.pop("tokens_per_s", None)  # wall clock
        out.append(record)
    return out
straight, resumed = lines(sys.argv[1]), lines(sys.argv[2])
assert len(straight) == 40 and len(resumed) == 40, (len(straight), len(resumed))
for a, b in zip(straight, resumed):
    assert a == b, f"step {a['step']}: {a} != {b}"
EOF
echo "PASS: job $job was preempted after $stopped_at, requeued, resumed and ended bit-identical to the uninterrupted run"
