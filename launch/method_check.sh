#!/usr/bin/env bash
# The method's figures on the headline testbed (issue 15's acceptance table), one command:
#   1. the eta sweep at k_hat 16 (the default operating point, E/2) over 3 seeds;
#   2. the same at k_hat 8 (E/4);
#   3. the selection ablation at the default eta, same seeds: the other selection than the
#      config's (selection_coefficient 1, learned at its own rate, against 0, the router's reload);
# each with every baseline on the same held-out bytes, printed as tables with spreads and drawn as
# fronts (runs/method/<part>/front.png).
#   bash launch/method_check.sh [CONFIG] [SEEDS]       (default configs/corpus-testbed.cfg, "1 2 3")
# TEMOE_METHOD_ETAS (default "0 0.1 0.3") and TEMOE_METHOD_ETAS_K8 (default "0 0.3") set the
# sweeps; TEMOE_RANKS the ranks. Finished runs are not redone (delete runs/method to start over).
set -Eeuo pipefail
trap 'status=$?; echo "method_check: line $LINENO: '\''$BASH_COMMAND'\'' failed with exit $status" >&2; exit $status' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
config=${1:-configs/corpus-testbed.cfg}
seeds=${2:-"1 2 3"}
etas=${TEMOE_METHOD_ETAS:-"0 0.1 0.3"}
etas_k8=${TEMOE_METHOD_ETAS_K8:-"0 0.3"}
root=${TEMOE_METHOD_DIR:-runs/method}
default_eta=$(sed -n 's/^eta *= *//p' "$config" | head -1)
echo "== k_hat 16: eta sweep (${etas}), seeds ${seeds}"
TEMOE_SWEEP_DIR=$root/khat16 TEMOE_DEFAULT_ETA=${default_eta:-0.02} TEMOE_SWEEP_OPTIONS="--controller.k_hat=16" \
  bash launch/eta_sweep.sh "$config" "$etas" "$seeds"
echo "== k_hat 8: eta sweep (${etas_k8}), seeds ${seeds}"
TEMOE_SWEEP_DIR=$root/khat8 TEMOE_DEFAULT_ETA=${default_eta:-0.02} TEMOE_SWEEP_OPTIONS="--controller.k_hat=8" \
  bash launch/eta_sweep.sh "$config" "$etas_k8" "$seeds"
configured=$(sed -n 's/^selection_coefficient *= *//p' "$config" | head -1)
other=$([[ ${configured:-1} == 0 ]] && echo 1 || echo 0)
echo "== selection ablation at eta ${default_eta:-0.02}, k_hat 16: selection_coefficient $other (the config: ${configured:-1})"
TEMOE_SWEEP_DIR=$root/selection-$other TEMOE_DEFAULT_ETA=${default_eta:-0.02} \
  TEMOE_SWEEP_OPTIONS="--controller.k_hat=16 --controller.selection_coefficient=$other" \
  bash launch/eta_sweep.sh "$config" "${default_eta:-0.02}" "$seeds"
