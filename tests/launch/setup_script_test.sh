#!/usr/bin/env bash
# Tests launch/setup.sh's decisions on machines it cannot be run on for real: a bare Debian as root,
# a cluster login node without root, a failing apt-get, a failing build. dpkg-query, apt-get, id,
# cmake and the compilers are stand-ins on a PATH that holds nothing else but basic utilities, so
# the test runs in a second on a machine that has every package.
#
# Usage: setup_script_test.sh [PATH_TO_SETUP_SH]   (default: the project's launch/setup.sh)
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
setup_script=${1:-$here/../../launch/setup.sh}
[[ -f $setup_script ]] || { echo "setup test: no setup script at $setup_script" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/temoe-setup-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0
passed=0

# Basic utilities the script may use, linked from the real system; nothing else is on PATH.
base="$work/base-bin"
mkdir -p "$base"
for tool in bash sh awk grep sort tr mktemp cat rm nproc dirname sed mkdir touch head tail env uniq wc cp; do
  real=$(command -v "$tool") || { echo "setup test: '$tool' is needed to run this test" >&2; exit 1; }
  ln -s "$real" "$base/$tool"
done

# write_stub NAME BODY: an executable stand-in in the case's stub folder.
write_stub() {
  printf '#!%s\n%s\n' "$(command -v bash)" "$2" > "$stubs/$1"
  chmod +x "$stubs/$1"
}

# new_case UID INSTALLED...: a fresh project copy and stand-ins for a machine where the user has
# this uid and exactly these Debian packages are installed.
new_case() {
  local uid=$1
  shift
  case_dir="$work/case-$((passed + failures))"
  stubs="$case_dir/bin"
  mkdir -p "$case_dir/project/launch" "$stubs"
  cp "$setup_script" "$case_dir/project/launch/setup.sh"
  : > "$case_dir/calls"
  printf '%s\n' "$@" > "$case_dir/installed"
  # dpkg-query -W -f=FORMAT PKG...: like the real one, prints the known packages and exits 1 when
  # any named package is not installed.
  write_stub dpkg-query '
installed="'"$case_dir"'/installed"; status=0
for argument in "$@"; do
  case $argument in -*) continue ;; esac
  if grep -qx -- "$argument" "$installed"; then echo "$argument ii "
  else echo "dpkg-query: no packages found matching $argument" >&2; status=1; fi
done
exit $status'
  write_stub apt-get '
echo "apt-get $*" >> "'"$case_dir"'/calls"
[[ $1 == install ]] || exit 0
[[ -f "'"$case_dir"'/apt-fails" ]] && { echo "E: Unable to locate package" >&2; exit 100; }
for argument in "$@"; do case $argument in install|-*) ;; *) echo "$argument" >> "'"$case_dir"'/installed" ;; esac; done'
  write_stub id '[[ $1 == -u ]] && echo '"$uid"
  # cmake: configure writes a cache unless configure-fails exists; --build fails if build-fails exists.
  write_stub cmake '
echo "cmake $*" >> "'"$case_dir"'/calls"
if [[ $1 == --build ]]; then
  [[ -f "'"$case_dir"'/build-fails" ]] && { echo "error: something.cpp:1: no such header" ; exit 2; }
  exit 0
fi
[[ -f "'"$case_dir"'/configure-fails" ]] && { echo "CMake Error: Could NOT find HDF5"; exit 1; }
build=${@: -1}; for a in "$@"; do case $a in -B) take=1 ;; *) [[ ${take:-0} == 1 ]] && build=$a; take=0 ;; esac; done
mkdir -p "$build" && touch "$build/CMakeCache.txt"'
  local tool
  for tool in c++ make mpicxx mpirun; do write_stub "$tool" 'exit 0'; done
}

# run_setup: runs the copy under test with only the stand-ins and basic utilities on PATH.
run_setup() {
  (cd "$case_dir/project" && PATH="$stubs:$base" TEMOE_BUILD_DIR=build TEMOE_EXTRA_PACKAGES="${extra:-}" \
    bash launch/setup.sh > "$case_dir/stdout" 2> "$case_dir/stderr")
  status=$?
}

check() {  # check DESCRIPTION COMMAND...: one assertion of the current case.
  local description=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    failures=$((failures + 1))
    echo "FAILED: $case_name: $description"
    echo "  exit status: $status"
    sed 's/^/  stdout: /' "$case_dir/stdout"
    sed 's/^/  stderr: /' "$case_dir/stderr"
    sed 's/^/  call: /' "$case_dir/calls"
  fi
}
has_call() { grep -qx -- "$1" "$case_dir/calls"; }
has_no_call_like() { ! grep -q -- "$1" "$case_dir/calls"; }
said() { grep -q -- "$1" "$case_dir/stdout" "$case_dir/stderr"; }
exited() { [[ $status -eq $1 ]]; }
exited_nonzero_saying_why() { [[ $status -ne 0 ]] && grep -q 'setup:' "$case_dir/stderr"; }

all_packages=(g++ make cmake pkg-config openmpi-bin libopenmpi-dev libhdf5-dev hdf5-tools
  libboost-program-options-dev libopenblas-openmp-dev nlohmann-json3-dev libgtest-dev python3
  python3-numpy python3-h5py)

case_name="bare machine as root"
new_case 0 python3
extra="munge slurmd"
run_setup
extra=""
check "exits 0" exited 0
check "updates the package lists" has_call "apt-get update -qq"
check "installs exactly what is missing, extras included" has_call \
  "apt-get install -y -qq --no-install-recommends g++ make cmake pkg-config openmpi-bin libopenmpi-dev libhdf5-dev hdf5-tools libboost-program-options-dev libopenblas-openmp-dev nlohmann-json3-dev libgtest-dev python3-numpy python3-h5py munge slurmd"
check "says what it installs" said "setup: installing g++"
check "configures and builds" has_call "cmake --build build -j $(nproc)"

case_name="second run as root with everything installed"
new_case 0 "${all_packages[@]}"
run_setup
check "exits 0" exited 0
check "calls no apt-get" has_no_call_like "apt-get"
check "builds" has_call "cmake --build build -j $(nproc)"
run_setup
check "does not configure again when the cache exists" [ "$(grep -c -- '-S \.' "$case_dir/calls")" -eq 1 ]

case_name="non-root with libraries missing but the tools present"
new_case 1000 g++ make cmake openmpi-bin libopenmpi-dev
run_setup
check "installs nothing" has_no_call_like "apt-get"
check "names the missing packages" said "missing packages: pkg-config libhdf5-dev hdf5-tools"
check "names the module-load equivalents" said "module load .*hdf5"
check "tries the build, which here succeeds" exited 0

case_name="non-root without cmake"
new_case 1000 g++ make openmpi-bin libopenmpi-dev
rm "$case_dir/bin/cmake"
run_setup
check "exits non-zero and says why" exited_nonzero_saying_why
check "names cmake and its module" said "'cmake' not found on PATH (Debian package cmake; module load cmake)"
check "does not build" has_no_call_like "^cmake"

case_name="non-root whose configure step fails for a missing library"
new_case 1000 g++ make cmake openmpi-bin libopenmpi-dev
touch "$case_dir/configure-fails"
run_setup
check "exits 1" exited 1
check "shows cmake's own error" said "Could NOT find HDF5"
check "links the failure to the missing packages" said "likely because of the missing packages: pkg-config libhdf5-dev"

case_name="root whose apt-get install fails"
new_case 0 python3
touch "$case_dir/apt-fails"
run_setup
check "exits 1" exited 1
check "shows apt-get's log" said "Unable to locate package"
check "names the failed command" said "'apt-get install g++"
check "does not build" has_no_call_like "^cmake"

case_name="a failing compile"
new_case 0 "${all_packages[@]}"
touch "$case_dir/build-fails"
run_setup
check "exits non-zero and says why" exited_nonzero_saying_why
check "shows the compiler output" said "no such header"
check "says the build failed" said "the build failed"

case_name="not a Debian system (no dpkg-query)"
new_case 1000 "${all_packages[@]}"
rm "$case_dir/bin/dpkg-query"
run_setup
check "says the packages cannot be checked" said "dpkg-query not found"
check "builds with what is on PATH" exited 0

echo "setup script test ($setup_script): $passed passed, $failures failed"
((failures == 0))
