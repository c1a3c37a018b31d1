#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang in build-fuzz/ (AddressSanitizer and
# coverage instrumentation over the whole library), makes their seed corpora from tests/fixtures,
# and runs each target for a fixed time. Prints, per target, the run time, the executions and the
# crashes found; exits 1 when any target crashed (the inputs are kept under
# build-fuzz/fuzz/artifacts/TARGET/ and reproduce with `build-fuzz/tests/fuzz/TARGET FILE`).
#
#   tests/fuzz/run_fuzzers.sh [TARGET...]        (default: every target)
# Environment:
#   TEMOE_FUZZ_SECONDS  seconds per target (default 20)
#   TEMOE_FUZZ_BUILD    the build directory (default build-fuzz in the source tree)
#   TEMOE_FUZZ_JOBS     parallel compile jobs (default 2)
#   TEMOE_FUZZ_KEEP_GOING=1  continue after a crash (libFuzzer's -fork=1 -ignore_crashes=1) to
#                       collect several crashing inputs in one run
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${TEMOE_FUZZ_BUILD:-$root/build-fuzz}
seconds=${TEMOE_FUZZ_SECONDS:-20}
jobs=${TEMOE_FUZZ_JOBS:-2}
fixtures=$root/tests/fixtures
all_targets=(fuzz_npy_header fuzz_safetensors_header fuzz_safetensors_index fuzz_model_config fuzz_checkpoint_file)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

# Without clang there is nothing to fuzz with: 77 is "not available here" (ctest skips).
for tool in clang clang++; do
  command -v "$tool" > /dev/null || { echo "run_fuzzers.sh: $tool not found (Debian: apt-get install clang libclang-rt-14-dev libomp-14-dev); skipping" >&2; exit 77; }
done
for tool in cmake python3 find; do
  command -v "$tool" > /dev/null || { echo "run_fuzzers.sh: $tool not found (Debian: apt-get install clang cmake python3)" >&2; exit 2; }
done

echo "== configure and build in $build"
mkdir -p "$build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DTEMOE_FUZZ=ON -DTEMOE_CUDA=OFF -DTEMOE_WERROR=OFF > "$build/configure.log" 2>&1 ||
  { cat "$build/configure.log" >&2; exit 2; }
cmake --build "$build" -j "$jobs" --target temoe_fuzzers > "$build/build.log" 2>&1 ||
  { tail -50 "$build/build.log" >&2; exit 2; }

# ---------------------------------------------------------------------------------------------
# Seed corpora (rebuilt every run; the corpora the fuzzers grow are kept between runs).
seeds=$build/fuzz/seeds
rm -rf "$seeds"
mkdir -p "$seeds"/{fuzz_npy_header,fuzz_safetensors_header,fuzz_safetensors_index,fuzz_model_config,fuzz_checkpoint_file}
for file in "$fixtures"/*/*.npy "$fixtures"/*/*/*.npy; do
  [ -f "$file" ] && cp "$file" "$seeds/fuzz_npy_header/$(echo "${file#$fixtures/}" | tr / _)"
done
for file in "$fixtures"/*/config.json "$fixtures"/*/*/config.json; do
  [ -f "$file" ] && cp "$file" "$seeds/fuzz_model_config/$(echo "${file#$fixtures/}" | tr / _)"
done
for file in "$fixtures"/*/model.safetensors.index.json; do
  cp "$file" "$seeds/fuzz_safetensors_index/$(echo "${file#$fixtures/}" | tr / _)"
done
# Every fixture .safetensors file whole, and a small copy of each: its real header with every
# tensor cut to at most 4 elements (offsets rewritten), so most mutations land in the header.
python3 - "$fixtures" "$seeds/fuzz_safetensors_header" << 'EOF'
import json, os, struct, sys
fixtures, out = sys.argv[1], sys.argv[2]
sizes = {"F32": 4, "F16": 2, "BF16": 2, "U8": 1}
for folder in sorted(os.listdir(fixtures)):
    path = os.path.join(fixtures, folder)
    for name in sorted(os.listdir(path)) if os.path.isdir(path) else []:
        if not name.endswith(".safetensors"):
            continue
        data = open(os.path.join(path, name), "rb").read()
        stem = f"{folder}_{name}"
        open(os.path.join(out, stem), "wb").write(data)
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + length])
        body, small = b"", {}
        for tensor, entry in header.items():
            if tensor == "__metadata__":
                small[tensor] = entry
                continue
            begin = 8 + length + entry["data_offsets"][0]
            count = min(4, 1 if not entry["shape"] else max(1, entry["shape"][-1]))
            shape = [1] * (len(entry["shape"]) - 1) + [count] if entry["shape"] else []
            chunk = data[begin:begin + count * sizes[entry["dtype"]]]
            small[tensor] = {"dtype": entry["dtype"], "shape": shape, "data_offsets": [len(body), len(body) + len(chunk)]}
            body += chunk
        text = json.dumps(small).encode()
        open(os.path.join(out, "small_" + stem), "wb").write(struct.pack("<Q", len(text)) + text + body)
EOF
"$build/tests/fuzz/make_checkpoint_seed" "$seeds/fuzz_checkpoint_file/sample_checkpoint"

# ---------------------------------------------------------------------------------------------
# Runs.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/fuzz/lsan_suppressions.txt:print_suppressions=0}
keep_going=()
[ "${TEMOE_FUZZ_KEEP_GOING:-0}" = 1 ] && keep_going=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
# libomp (clang's OpenMP runtime) registers every process in /dev/shm/__KMP_REGISTERED_LIB_<pid>_*
# and leaves the file behind when the process ends through _Exit, as libFuzzer's do: remove those
# of finished processes that appeared during the run.
remove_stale_openmp_files() {
  local file pid
  for file in /dev/shm/__KMP_REGISTERED_LIB_*; do
    [ -e "$file" ] && [ "$file" -nt "$1" ] || continue
    pid=${file#/dev/shm/__KMP_REGISTERED_LIB_}
    pid=${pid%%_*}
    kill -0 "$pid" 2> /dev/null || rm -f "$file"
  done
}

failed=0
summary=()
for target in "${targets[@]}"; do
  corpus=$build/fuzz/corpus/$target
  artifacts=$build/fuzz/artifacts/$target
  log=$build/fuzz/$target.log
  mkdir -p "$corpus" "$artifacts"
  before=$(find "$artifacts" -type f | wc -l)
  echo "== $target: ${seconds} s"
  touch "$log.start"
  start=$(date +%s%N)
  status=0
  scratch_base=/tmp
  [ -d /dev/shm ] && scratch_base=/dev/shm
  scratch=$(mktemp -d "$scratch_base/temoe_fuzz.XXXXXX")
  TEMOE_FUZZ_SCRATCH=$scratch "$build/tests/fuzz/$target" "${keep_going[@]}" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "$seeds/$target" > "$log" 2>&1 ||
    status=$?
  rm -rf "$scratch"
  remove_stale_openmp_files "$log.start"
  elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  [ -n "$executions" ] || executions=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi  # died without leaving an input
  line=$(printf '%-26s %4d.%01d s  %10s executions  %2d crash(es)' "$target" $((elapsed_ms / 1000)) \
    $((elapsed_ms % 1000 / 100)) "${executions:-?}" "$crashes")
  summary+=("$line")
  echo "$line"
  if [ "$crashes" -ne 0 ]; then
    failed=1
    grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|deadly signal|uncaught exception|terminate called' "$log" || true
    find "$artifacts" -type f -newer "$log.start" | sed 's/^/  input: /'
    echo "  log: $log"
  fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
