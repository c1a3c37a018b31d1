#!/usr/bin/env bash
# launch/gpu_check.sh on a machine without a GPU stops at once (exit 2) and says why, both where
# nvidia-smi is missing and where it lists no GPU; it builds or writes nothing first.
#   bash tests/launch/gpu_check_test.sh launch/gpu_check.sh
set -uo pipefail
script=$(realpath "$1")
if command -v nvidia-smi > /dev/null 2>&1 && [[ -n $(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null) ]]; then
  echo "gpu_check_test: this machine has a GPU; the no-GPU behaviour is tested where there is none"
  exit 77
fi
failures=0
check() {  # check NAME CONDITION-OUTPUT
  if [[ $2 == yes ]]; then echo "ok: $1"; else echo "FAILED: $1"; failures=$((failures + 1)); fi
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/repo/launch"
cp "$script" "$work/repo/launch/gpu_check.sh"
for tool in bash cat date dirname grep head wc sed mkdir env; do
  path=$(command -v "$tool") && ln -s "$path" "$work/bin/$tool"
done
run_case() {  # run_case NAME: runs the copy with PATH=$work/bin, captures exit status and output
  local begin=$SECONDS
  output=$(cd "$work/repo" && PATH="$work/bin" bash launch/gpu_check.sh 2>&1)
  code=$?
  seconds=$((SECONDS - begin))
  check "$1: exit status 2 (got $code)" "$([[ $code == 2 ]] && echo yes)"
  check "$1: the message says there is no GPU" "$([[ $output == *"no NVIDIA GPU on this machine"* ]] && echo yes)"
  check "$1: at once (${seconds} s)" "$([[ $seconds -le 5 ]] && echo yes)"
  check "$1: nothing built or written" "$([[ ! -e $work/repo/build-gpu && ! -e $work/repo/runs ]] && echo yes)"
}
run_case "no nvidia-smi"
cat > "$work/bin/nvidia-smi" << 'STUB'
#!/bin/bash
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2
exit 9
STUB
chmod +x "$work/bin/nvidia-smi"
run_case "nvidia-smi without a driver"
printf '#!/bin/bash\nexit 0\n' > "$work/bin/nvidia-smi"
run_case "nvidia-smi listing no GPU"
echo "gpu_check_test: $failures failure(s)"
exit $((failures > 0))
