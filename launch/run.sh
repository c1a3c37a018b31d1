#!/usr/bin/env bash
# The main job on the headline testbed: installs what is missing, builds, builds the byte corpus
# from named Debian packages if missing (launch/make_corpus.sh), trains the option controllers on
# the shipped corpus-testbed model on several ranks under mpirun (progress lines,
# runs/corpus-testbed/controller/metrics.jsonl; about 9 minutes on 2 cores) and evaluates them
# against the baselines on held-out bytes. A finished run is evaluated again, not retrained
# (TEMOE_RETRAIN=1 trains afresh). TEMOE_RANKS sets the ranks (default 2); TEMOE_CONFIG another
# config (configs/testbed.cfg: the synthetic topic language of the unit tests, seconds to train).
set -Eeuo pipefail
trap 'status=$?; echo "run: line $LINENO: '\''$BASH_COMMAND'\'' failed with exit $status" >&2; exit $status' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash launch/setup.sh
ranks=${TEMOE_RANKS:-2}
config=${TEMOE_CONFIG:-configs/corpus-testbed.cfg}
if [[ $config != configs/corpus-testbed.cfg ]]; then  # the synthetic topic language
  mkdir -p runs/testbed
  [[ -f runs/testbed/data.h5 ]] || ./build/temoe make-data --out runs/testbed/data.h5 --seed 1 --data.documents=2048 > /dev/null
  [[ -f runs/testbed/eval.h5 ]] || ./build/temoe make-data --out runs/testbed/eval.h5 --seed 2 --data.documents=256 > /dev/null
fi
# The headline testbed's byte corpus, from Debian packages.
if [[ $config == configs/corpus-testbed.cfg && ! ( -f runs/corpus/train.h5 && -f runs/corpus/eval.h5 ) ]]; then
  bash launch/make_corpus.sh runs/corpus
fi
run=runs/$(basename "$config" .cfg)/controller  # runs/corpus-testbed/controller for the default
if [[ ${TEMOE_RETRAIN:-0} == 1 ]]; then
  rm -rf "$run"  # a run directory with checkpoints would otherwise be resumed, not retrained
fi
if [[ ! -f $run/controller.h5 ]]; then
  bash launch/mpirun.sh -np "$ranks" ./build/temoe train --config "$config" --run-dir "$run" "$@"
fi
bash launch/mpirun.sh -np "$ranks" ./build/temoe eval --config "$config" --run-dir "$run" --json "$run/eval.json"
