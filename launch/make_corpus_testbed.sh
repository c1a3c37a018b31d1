#!/usr/bin/env bash
# The recipe of the headline testbed model (configs/corpus-testbed/model, configs/corpus-testbed.cfg):
# the byte corpus of launch/make_corpus.sh and a Mixtral-style MoE shaped like the paper's routing
# (E = 32 experts, top-4, 4 MoE layers; d_model 128, experts of width 64, byte vocabulary 256)
# pretrained on it by temoe itself on 2 ranks, continued with a routing-locality term on 1 rank
# (stage 2 below), then stored in BF16 (6.7 MB) so that it can be
# committed. The repository ships the result; this script reproduces it (deterministic for the same
# corpus, world size and machine kind; about 20 + 12 minutes on 2 otherwise idle cores, 2000 + 600
# steps of 16 x 256 bytes) and records beside the model the corpus it was trained on (corpus.sha256,
# corpus.json, packages.txt).
#   bash launch/make_corpus_testbed.sh [OUT_DIR]     (default configs/corpus-testbed/model)
set -Eeuo pipefail
trap 'status=$?; echo "make_corpus_testbed: line $LINENO: '\''$BASH_COMMAND'\'' failed with exit $status" >&2; exit $status' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-configs/corpus-testbed/model}
work=${TEMOE_CORPUS_TESTBED_WORK:-runs/corpus-pretrain}
corpus=${TEMOE_CORPUS_DIR:-runs/corpus}
binary=${TEMOE_BINARY:-./build/temoe}
[[ -f $corpus/train.h5 && -f $corpus/eval.h5 ]] || TEMOE_BINARY=$binary bash launch/make_corpus.sh "$corpus"
mkdir -p "$work"
# Why these settings: at d_model 64 the teacher reached 38% next-byte accuracy after 300 steps,
# at d_model 128 43% (measured on the evaluation split); 2000 steps take it past the 50% the
# issue asks for. Experts of width 64 keep the model at 3.3M parameters. Load balancing 0.001
# rather than the Switch default 0.01: measured after the full 2000 steps, the weaker term kept
# the teacher (62.2% vs 62.1%) and every expert in use (utilisation entropy 3.08 of ln 32 = 3.47)
# while held masks lost less: segment oracle 78% vs 68% retention at k_hat 16, greedy cache 90%
# vs 85% at 18% vs 27% switching.
bash launch/mpirun.sh -np 2 "$binary" pretrain --data "$corpus/train.h5" --out "$work/model-f32" --run-dir "$work/run" \
  --pretrain.num_experts=32 --pretrain.top_k=4 --pretrain.num_layers=4 --pretrain.hidden_size=128 \
  --pretrain.expert_ffn_size=64 --pretrain.steps=2000 --pretrain.batch_size=16 --pretrain.sequence_length=256 \
  --pretrain.warmup_steps=100 --pretrain.load_balancing=0.001 --pretrain.log_interval=50 \
  --pretrain.checkpoint_interval=250
# Stage 2: 600 more steps from that model with the routing-locality term (the entropy of each
# 64-token window's mean routing, coefficient 0.1) and load balancing 0.01 against its pull towards
# a few experts. Why: the byte model's experts specialise by byte, not by kind of text, so a held
# set lost half the teacher's accuracy on every baseline (segment oracle 78%, greedy cache 74% at
# 6% switching); large models' routing is locally consistent on its own, and this term stands in
# for that. Measured: fixed mask 51% -> 75% retention at k_hat 16 (36% -> 48% at k_hat 8), segment
# oracle 78% -> 86%, greedy cache at 4.4% switching 94%; teacher 62.3% -> 61.1%; plain top-k still
# switches on 84% of (token, layer) pairs. Coefficient 0.3 collapsed layer 1 onto one expert (window
# entropy 0.05) and cost 0.35 nats of cross-entropy; 0.03 moved the windows' entropy by 0.2 nats only.
# About 12 minutes.
# It starts from stage 1 stored in BF16 (the model the repository shipped before, d69c2a5), on one
# BLAS thread, as the shipped model was made.
/usr/bin/python3 launch/model_to_bf16.py "$work/model-f32" "$work/model-stage1-bf16"
OMP_NUM_THREADS=1 bash launch/mpirun.sh -np 1 "$binary" pretrain --data "$corpus/train.h5" --out "$work/model-local-f32" \
  --run-dir "$work/run-local" --pretrain.init_model="$work/model-stage1-bf16" --pretrain.steps=600 --pretrain.batch_size=16 \
  --pretrain.sequence_length=256 --pretrain.learning_rate=1e-3 --pretrain.min_learning_rate=1e-4 \
  --pretrain.warmup_steps=50 --pretrain.load_balancing=0.01 --pretrain.routing_locality=0.1 \
  --pretrain.locality_window=64 --pretrain.log_interval=25 --pretrain.checkpoint_interval=200
/usr/bin/python3 launch/model_to_bf16.py "$work/model-local-f32" "$out"
{
  echo "# sha256 of the token files the model was trained on (launch/make_corpus.sh writes them);"
  echo "# check with: grep -v '^#' $out/corpus.sha256 | (cd $corpus && sha256sum -c)"
  echo "# input_sha256 $(sed -n 's/.*"input_sha256": *"\([0-9a-f]*\)".*/\1/p' "$corpus/corpus.json")" \
    "(every input file's bytes, concatenated by kind name, then path)"
  cat "$corpus/SHA256SUMS"
} > "$out/corpus.sha256"
cp "$corpus/corpus.json" "$out/corpus.json"
cp "$corpus/packages.txt" "$out/packages.txt"
cp "$work/run/summary.json" "$out/pretrain_summary.json"
cp "$work/run-local/summary.json" "$out/locality_summary.json"
echo "make_corpus_testbed: wrote $out"
