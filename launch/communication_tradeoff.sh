#!/usr/bin/env bash
# Issue 7's trade-off: controllers trained with a co-selection expert placement and a communication
# cost against the controller without them, same seeds and steps, each evaluated on the same
# held-out tokens; prints one table (cost, placement, switch rate, retention, KL, remote ranks per
# held mask, retention difference to the reference in points).
#   bash launch/communication_tradeoff.sh [CONFIG] [COSTS] [SEEDS]
#   e.g. bash launch/communication_tradeoff.sh configs/testbed.cfg "0 0.001 0.003 0.01 0.03" "1 2 3"
# The cost (controller.communication_cost) is taken from each token's reward in each layer for every
# rank other than the token's own that owns experts of the held mask. The reward is -KL per token
# (about 0.013 on the testbed), while controller.eta (0.02) is paid once per switch, i.e. once per
# option of ~40 tokens: a cost of 0.01 per token is already about the size of the KL itself.
# Note: with ep_size 2 the 16 experts are 8 per rank, so a held mask of k_hat > 8 (testbed: 12)
# always spans both ranks and the cost is a constant; try TEMOE_TRADEOFF_OPTIONS=--controller.k_hat=4.
# Locality biases (controller.selection_locality_bias: logits taken from other ranks' experts at
# every selection) in TEMOE_LOCALITY_BIASES, e.g. "1 2 3": each is trained at every cost beside the
# unbiased run (runs named placed-cost-C-bias-B-seed-S). Unlike the cost, the bias moves the
# masks themselves toward the home rank, so it trades KL for traffic even when selection is not
# learned. TEMOE_TRADEOFF_BENCH=1 also runs `temoe bench dispatch` on each run's masks
# (TEMOE_BENCH_OPTIONS, default "--batch 8 --time 128") and the table adds option/token ratios of
# remote bytes, messages and replayed exchange time, and the decode steps' skipped counts exchanges.
# Idempotent: finished runs (eval.json present) are skipped, a trained run is only evaluated.
# Extra temoe options (train, eval and place) go in TEMOE_TRADEOFF_OPTIONS (e.g. --train.steps=100),
# extra place options in TEMOE_PLACE_OPTIONS (e.g. --place.set_size=12); ranks in TEMOE_RANKS
# (default 2), expert-parallel size in TEMOE_EP_SIZE (default: the ranks), results in
# TEMOE_TRADEOFF_DIR (default runs/communication-tradeoff), the binary in TEMOE_BIN (./build/temoe).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
config=${1:-configs/testbed.cfg}
costs=${2:-"0 0.001 0.003 0.01 0.03"}
seeds=${3:-"1 2 3"}
ranks=${TEMOE_RANKS:-2}
ep=${TEMOE_EP_SIZE:-$ranks}
out=${TEMOE_TRADEOFF_DIR:-runs/communication-tradeoff}
temoe=${TEMOE_BIN:-./build/temoe}
read -r -a extra <<< "${TEMOE_TRADEOFF_OPTIONS:-}"
read -r -a place_extra <<< "${TEMOE_PLACE_OPTIONS:-}"
read -r -a biases <<< "0 ${TEMOE_LOCALITY_BIASES:-}"
read -r -a bench_options <<< "${TEMOE_BENCH_OPTIONS:---batch 8 --time 128}"
mkdir -p "$out"

# The token data, made the way launch/run.sh makes them (seeds 1 and 2) if the config's files are missing.
data_key() {  # data_key KEY: the value of KEY in the config's [data] section
  awk -v key="$1" '/^\[/ { section = $0 } section == "[data]" && $1 == key && $2 == "=" { print $3 }' "$config"
}
data=$(data_key path)
eval_data=$(data_key eval_path)
if [[ -n $data && ! -f $data ]]; then
  mkdir -p "$(dirname "$data")"
  nice -n 10 "$temoe" make-data --out "$data" --seed 1 --data.documents=2048 > /dev/null
fi
if [[ -n $eval_data && ! -f $eval_data ]]; then
  mkdir -p "$(dirname "$eval_data")"
  nice -n 10 "$temoe" make-data --out "$eval_data" --seed 2 --data.documents=256 > /dev/null
fi

# 1. The co-selection placement for the expert-parallel size used.
placement="$out/placement-ep$ep.json"
if [[ ! -f $placement ]]; then
  nice -n 10 "$temoe" place --config "$config" --ep-size "$ep" --out "$placement" \
    --json "$out/placement-ep$ep.quality.json" "${extra[@]}" "${place_extra[@]}" > "$out/placement-ep$ep.log"
fi
tail -n 2 "$out/placement-ep$ep.log"

# train_and_eval NAME SEED OPTIONS...: one controller, trained unless trained, evaluated unless evaluated.
train_and_eval() {
  local name=$1 run="$out/$1" seed=$2
  shift 2
  if [[ ! -f $run/controller.h5 ]]; then
    nice -n 10 bash launch/mpirun.sh -np "$ranks" "$temoe" train --config "$config" --run-dir "$run" \
      --parallel.ep_size="$ep" --train.seed="$seed" --train.log_every=1000000 "$@" "${extra[@]}" > "$run.train.log"
  fi
  if [[ ! -f $run/eval.json ]]; then
    nice -n 10 bash launch/mpirun.sh -np "$ranks" "$temoe" eval --config "$config" --run-dir "$run" \
      --parallel.ep_size="$ep" --train.seed="$seed" --json "$run/eval.json" "$@" "${extra[@]}" > "$run.eval.log"
  fi
  if [[ ${TEMOE_TRADEOFF_BENCH:-0} == 1 && ! -f $run/bench.json ]]; then
    nice -n 10 bash launch/mpirun.sh -np "$ranks" "$temoe" bench dispatch --config "$config" --run-dir "$run" \
      --parallel.ep_size="$ep" --train.seed="$seed" --json "$run/bench.json" "${bench_options[@]}" "$@" "${extra[@]}" > "$run.bench.log"
  fi
  echo "$name: $(tail -n +3 "$run.eval.log" | head -1)"
}

for seed in $seeds; do
  # 2a. The reference: contiguous expert blocks, no communication cost.
  train_and_eval "reference-seed-$seed" "$seed" --controller.communication_cost=0
  # 2b. The placement, with the cost swept.
  for cost in $costs; do
    for bias in "${biases[@]}"; do
      name="placed-cost-$cost-seed-$seed"
      [[ $bias == 0 ]] || name="placed-cost-$cost-bias-$bias-seed-$seed"
      train_and_eval "$name" "$seed" --parallel.placement="$placement" --controller.communication_cost="$cost" \
        --controller.selection_locality_bias="$bias"
    done
  done
done
# 3. The table.
/usr/bin/python3 launch/summarize_tradeoff.py "$out" "$ranks"
