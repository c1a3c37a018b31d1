#!/usr/bin/env bash
# The main job on the embedded default: installs what is missing, builds, writes the testbed's
# token data if missing, trains the option controllers on the testbed model on several ranks under
# mpirun (progress lines, runs/testbed/controller/metrics.jsonl) and evaluates them against the
# baselines on held-out tokens. A finished run is evaluated again, not retrained
# (TEMOE_RETRAIN=1 trains afresh). TEMOE_RANKS sets the ranks (default 2).
set -Eeuo pipefail
trap 'status=$?; echo "run: line $LINENO: '\''$BASH_COMMAND'\'' failed with exit $status" >&2; exit $status' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash launch/setup.sh
ranks=${TEMOE_RANKS:-2}
config=${TEMOE_CONFIG:-configs/testbed.cfg}
mkdir -p runs/testbed
[[ -f runs/testbed/data.h5 ]] || ./build/temoe make-data --out runs/testbed/data.h5 --seed 1 --data.documents=2048 > /dev/null
[[ -f runs/testbed/eval.h5 ]] || ./build/temoe make-data --out runs/testbed/eval.h5 --seed 2 --data.documents=256 > /dev/null
# The headline testbed's byte corpus (TEMOE_CONFIG=configs/corpus-testbed.cfg), from Debian packages.
if [[ $config == configs/corpus-testbed.cfg && ! ( -f runs/corpus/train.h5 && -f runs/corpus/eval.h5 ) ]]; then
  bash launch/make_corpus.sh runs/corpus
fi
run=runs/$(basename "$config" .cfg)/controller  # runs/testbed/controller for the default
if [[ ${TEMOE_RETRAIN:-0} == 1 ]]; then
  rm -rf "$run"  # a run directory with checkpoints would otherwise be resumed, not retrained
fi
if [[ ! -f $run/controller.h5 ]]; then
  bash launch/mpirun.sh -np "$ranks" ./build/temoe train --config "$config" --run-dir "$run" "$@"
fi
bash launch/mpirun.sh -np "$ranks" ./build/temoe eval --config "$config" --run-dir "$run" --json "$run/eval.json"
