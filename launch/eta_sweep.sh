#!/usr/bin/env bash
# The headline experiment: plain top-k switching, then controllers trained at several
# deliberation costs and seeds, each evaluated against the baselines on the same held-out tokens;
# prints the front (switch rate vs KL, accuracy ratio, top-1 agreement, NLL gap, mean +- spread
# over seeds), the acceptance checks (eta 0 vs the default, monotone in eta, controller vs random
# and the greedy cache's front) and draws it as SWEEP_DIR/front.png (python3-matplotlib; installed
# when root and missing, else the table is printed without the picture).
#   bash launch/eta_sweep.sh [CONFIG] [ETAS] [SEEDS]      e.g. bash launch/eta_sweep.sh configs/testbed.cfg "0 0.02 0.05" "1 2 3"
# Extra temoe options go in TEMOE_SWEEP_OPTIONS; ranks in TEMOE_RANKS (default 2); the binary in
# TEMOE_BINARY (default ./build/temoe, what launch/setup.sh builds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
config=${1:-configs/testbed.cfg}
etas=${2:-"0 0.02 0.05 0.1"}
seeds=${3:-"1 2 3"}
ranks=${TEMOE_RANKS:-2}
binary=${TEMOE_BINARY:-./build/temoe}
out=${TEMOE_SWEEP_DIR:-runs/eta-sweep}
read -r -a extra <<< "${TEMOE_SWEEP_OPTIONS:-}"
mkdir -p "$out"
for eta in $etas; do
  for seed in $seeds; do
    run="$out/eta-$eta-seed-$seed"
    if [[ ! -f $run/eval.json ]]; then
      bash launch/mpirun.sh -np "$ranks" "$binary" train --config "$config" --run-dir "$run" \
        --controller.eta="$eta" --train.seed="$seed" --train.log_every=1000000 "${extra[@]}" > "$run.train.log"
      bash launch/mpirun.sh -np "$ranks" "$binary" eval --config "$config" --run-dir "$run" \
        --train.seed="$seed" --json "$run/eval.json" "${extra[@]}" > "$run.eval.log"
    fi
    echo "eta $eta seed $seed: $(tail -n +3 "$run.eval.log" | head -1)"
  done
done
if ! /usr/bin/python3 -c 'import matplotlib' 2> /dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get > /dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-matplotlib > "$out/apt.log" 2>&1 ||
      echo "eta_sweep: apt-get install python3-matplotlib failed (see $out/apt.log); no picture" >&2
  else
    echo "eta_sweep: python3-matplotlib is missing (not root: ask for it, or load a module with matplotlib); no picture" >&2
  fi
fi
/usr/bin/python3 launch/summarize_sweep.py "$out" --default-eta "${TEMOE_DEFAULT_ETA:-0.02}"
