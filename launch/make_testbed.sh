#!/usr/bin/env bash
# The recipe of the embedded testbed model (configs/testbed/model): the topic language and a tiny
# Mixtral-style MoE pretrained on it by temoe itself. The repository ships the result; this script
# reproduces it (deterministic for the same world size and machine kind; about 10 minutes on 2 cores).
#   bash launch/make_testbed.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-configs/testbed/model}
work=${TEMOE_TESTBED_WORK:-runs/testbed-pretrain}
mkdir -p "$work"
./build/temoe make-data --out "$work/data.h5" --seed 1 --data.documents=2048
./build/temoe pretrain --data "$work/data.h5" --out "$out" --run-dir "$work/run" \
  --pretrain.steps=400 --pretrain.warmup_steps=40 --pretrain.batch_size=16 --pretrain.sequence_length=128 \
  --pretrain.num_experts=16 --pretrain.log_interval=50
