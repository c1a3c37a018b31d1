#!/usr/bin/env bash
# The GPU check, in one run of under 8 minutes on an H100/H200-class card (issue 19): builds with
# -DTEMOE_CUDA=ON, runs the GPU tests (ctest -L gpu), trains and evaluates the controllers on the
# testbed with runtime.device=cuda on 1 GPU (and on 2 ranks when the machine has 2 GPUs), runs
# temoe bench forward / train / dispatch on the GPU, compares the GPU's logits with the CPU's, and
# prints one summary, also written as JSON.
#   bash launch/gpu_check.sh [SUMMARY.json]      (default: runs/gpu-check/summary.json)
# On a machine without an NVIDIA GPU it stops at once, exit status 2, saying so. Each step's
# output is in runs/gpu-check/<step>.log; a failing step is reported in the summary and the
# check goes on with the next, so one run shows everything that does and does not work.
set -Euo pipefail
trap 'echo "gpu_check: line $LINENO: '\''$BASH_COMMAND'\'' failed" >&2' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=runs/gpu-check
summary=${1:-$out/summary.json}

if ! command -v nvidia-smi > /dev/null 2>&1 || ! cards=$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null) ||
  [[ -z $cards ]]; then
  echo "gpu_check: no NVIDIA GPU on this machine (nvidia-smi is missing or lists none): nothing to check." >&2
  echo "gpu_check: run it where a GPU is present; the CPU suite is bash launch/test.sh." >&2
  exit 2
fi
gpus=$(printf '%s\n' "$cards" | wc -l)
card=$(printf '%s\n' "$cards" | head -1)
mkdir -p "$out"
started=$(date +%s)
declare -A status
# step NAME COMMAND...: runs it with its output in $out/NAME.log, records ok/failed and seconds.
step() {
  local name=$1
  shift
  local begin=$SECONDS
  if "$@" > "$out/$name.log" 2>&1; then status[$name]="ok"; else status[$name]="failed (exit $?)"; fi
  echo "gpu_check: $name: ${status[$name]} in $((SECONDS - begin)) s (log $out/$name.log)"
}

build=${TEMOE_GPU_BUILD_DIR:-build-gpu}
jobs=$(nproc 2> /dev/null || echo 4)
configure_and_build() {
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTEMOE_CUDA=ON -DTEMOE_WERROR=ON &&
    cmake --build "$build" -j "$jobs"
}
step build configure_and_build
temoe=$build/temoe
[[ ${status[build]} == ok ]] || { echo "gpu_check: the build failed; see $out/build.log" >&2; exit 1; }

step gpu_tests ctest --test-dir "$build" -L gpu --output-on-failure
gpu_tests_line=$(grep -E 'tests passed' "$out/gpu_tests.log" | tail -1 || true)
gtest_passed=$(grep -hoE '\[  PASSED  \] [0-9]+ tests?' "$out/gpu_tests.log" | grep -oE '[0-9]+' | tail -1 || echo 0)
gtest_skipped=$(grep -hoE '\[  SKIPPED \] [0-9]+ tests?' "$out/gpu_tests.log" | grep -oE '[0-9]+' | tail -1 || echo 0)
gtest_failed=$(grep -cE '^\[  FAILED  \] [A-Za-z]' "$out/gpu_tests.log" || true)
# With two GPUs: the tests that need two ranks (NCCL, the dispatcher on device buffers in both modes).
if ((gpus >= 2)); then
  step gpu_tests_2ranks bash launch/mpirun.sh -np 2 "$build/tests/temoe_gpu_tests" \
    --gtest_filter='NcclCommunicatorTest.*:CudaTokenDispatcher*'
fi

# The testbed's data, as launch/run.sh writes it.
mkdir -p runs/testbed
[[ -f runs/testbed/data.h5 ]] || "$temoe" make-data --out runs/testbed/data.h5 --seed 1 --data.documents=2048 > /dev/null
[[ -f runs/testbed/eval.h5 ]] || "$temoe" make-data --out runs/testbed/eval.h5 --seed 2 --data.documents=256 > /dev/null
config=configs/testbed.cfg
cuda=(--runtime.device=cuda)
# 60 steps: enough for the progress lines and an evaluation of a trained controller, short enough
# for the 8 minutes the whole check may take (the testbed's 150 steps are the CPU figure).
gpu_steps=(--train.steps=60)
rm -rf "$out/train-1gpu" "$out/train-2gpu" "$out/train-cpu" "$out/train-gpu-5"
step train_1gpu bash launch/mpirun.sh -np 1 "$temoe" train --config "$config" --run-dir "$out/train-1gpu" "${cuda[@]}" \
  "${gpu_steps[@]}"
step eval_1gpu bash launch/mpirun.sh -np 1 "$temoe" eval --config "$config" --run-dir "$out/train-1gpu" "${cuda[@]}" \
  --json "$out/eval-1gpu.json"
if ((gpus >= 2)); then
  step train_2gpu bash launch/mpirun.sh -np 2 "$temoe" train --config "$config" --run-dir "$out/train-2gpu" "${cuda[@]}" \
    "${gpu_steps[@]}" --parallel.ep_size=2 --parallel.dispatch=option
  step eval_2gpu bash launch/mpirun.sh -np 2 "$temoe" eval --config "$config" --run-dir "$out/train-2gpu" "${cuda[@]}" \
    --json "$out/eval-2gpu.json"
fi
# The same training on the CPU, for the agreement of the first steps' decisions and losses.
step train_cpu "$temoe" train --config "$config" --run-dir "$out/train-cpu" --train.steps=5
step train_gpu_5 "$temoe" train --config "$config" --run-dir "$out/train-gpu-5" --train.steps=5 "${cuda[@]}"

model=configs/testbed/model
step bench_forward "$temoe" bench forward --model "$model" "${cuda[@]}" --no-torch --json "$out/bench-forward.json"
step bench_train "$temoe" bench train --config "$config" "${cuda[@]}" --json "$out/bench-train.json"
# Expert parallelism needs one GPU per rank (NCCL refuses two ranks on one device): with one GPU
# the dispatcher's device path is covered by train_1gpu's single rank only, and this step says so.
if ((gpus >= 2)); then
  step bench_dispatch bash launch/mpirun.sh -np 2 "$temoe" bench dispatch --config "$config" "${cuda[@]}" \
    --json "$out/bench-dispatch.json"
else
  status[bench_dispatch]="skipped (needs 2 GPUs: expert parallelism runs one rank per GPU)"
  echo "gpu_check: bench_dispatch: ${status[bench_dispatch]}"
fi

# Logits on the CPU and the GPU for the same tokens.
agreement="not compared (needs Debian's python3 with numpy)"
if /usr/bin/python3 -c 'import numpy' 2> /dev/null; then
  /usr/bin/python3 -c 'import numpy; numpy.save("'"$out"'/tokens.npy", (numpy.arange(4 * 64, dtype=numpy.int32) * 37 % 128).reshape(4, 64))'
  step forward_cpu "$temoe" forward --model "$model" --tokens "$out/tokens.npy" --out "$out/logits-cpu.npy"
  step forward_gpu "$temoe" forward --model "$model" --tokens "$out/tokens.npy" --out "$out/logits-gpu.npy" "${cuda[@]}"
  if [[ ${status[forward_cpu]} == ok && ${status[forward_gpu]} == ok ]]; then
    agreement=$(/usr/bin/python3 -c 'import numpy
a = numpy.load("'"$out"'/logits-cpu.npy"); b = numpy.load("'"$out"'/logits-gpu.npy")
print("%.3g" % (abs(a - b).max() / abs(a).max()))')
  fi
fi

# First-steps agreement of the CPU and GPU training runs: the same switch rates (decisions) in
# every step, rewards, KL and losses within 1e-4 relative (launch/compare_metrics.py).
steps_agreement="not compared"
if [[ -f $out/train-cpu/metrics.jsonl && -f $out/train-gpu-5/metrics.jsonl ]]; then
  steps_agreement=$(/usr/bin/python3 launch/compare_metrics.py "$out/train-cpu/metrics.jsonl" \
    "$out/train-gpu-5/metrics.jsonl" --tolerance 1e-4 2>&1 | tail -1 || true)
fi

# A JSON field of a report file: json_number FILE KEY (the first match; "null" when absent).
json_number() {
  [[ -f $1 ]] || { echo null; return; }
  grep -oE "\"$2\": *[-0-9.eE+]+" "$1" | head -1 | sed -E 's/.*: *//' || echo null
}
forward_tokens=$(json_number "$out/bench-forward.json" tokens_per_s)
forward_gflops=$(json_number "$out/bench-forward.json" gflops)
gemm_gflops=$(json_number "$out/bench-forward.json" sgemm_gflops)
dispatch_json=null
[[ -s $out/bench-dispatch.json ]] && dispatch_json=$(tr -d '\n' < "$out/bench-dispatch.json")
train_tokens=$(json_number "$out/bench-train.json" train_tokens_per_s)
step_over_forward=$(json_number "$out/bench-train.json" step_over_forward)
elapsed=$(($(date +%s) - started))

steps_json=""
for name in "${!status[@]}"; do steps_json+="\"$name\": \"${status[$name]}\", "; done
cat > "$summary" << EOF
{"card": "$card", "gpus": $gpus, "seconds": $elapsed,
 "steps": {${steps_json%, }},
 "gpu_tests": {"ctest": "${gpu_tests_line:-none}", "gtest_passed": ${gtest_passed:-0}, "gtest_skipped": ${gtest_skipped:-0}, "gtest_failed": ${gtest_failed:-0}},
 "forward": {"tokens_per_s": ${forward_tokens:-null}, "gflops": ${forward_gflops:-null}, "cublas_gemm_gflops_same_shapes": ${gemm_gflops:-null}},
 "dispatch": $dispatch_json,
 "train": {"tokens_per_s": ${train_tokens:-null}, "step_over_forward": ${step_over_forward:-null}},
 "cpu_gpu_logits_relative_difference": "$agreement",
 "cpu_gpu_first_steps": "$steps_agreement"}
EOF
echo
echo "gpu_check summary ($card, $gpus GPU(s), $elapsed s): $summary"
cat "$summary"
