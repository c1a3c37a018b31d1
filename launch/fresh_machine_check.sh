#!/usr/bin/env bash
# Runs the README's two commands on a bare Debian 12 root, as a new user on a new machine would:
# makes the root with debootstrap (minbase: no compiler, no cmake, no MPI) from this machine's
# configured Debian mirror, clones the committed project into it, and runs
#   bash launch/test.sh   (installs what is missing, builds, runs the whole suite)
#   bash launch/run.sh    (installs what is missing, builds, trains and evaluates the main job)
# inside it as root, then prints each one's exit status and wall time. Exit 0 when both pass.
#
# Needs root (debootstrap, chroot, mounts). Options (environment):
#   TEMOE_FRESH_ROOT=DIR     where the root is made (default /var/tmp/temoe-fresh-root; wiped first)
#   TEMOE_FRESH_MIRROR=URL   Debian mirror (default: the first Debian URI in /etc/apt/sources.list*)
#   TEMOE_FRESH_KEEP=1       keep the root afterwards
# Each command's whole output is kept in DIR.logs/ (test.log, run.log, test-again.log).
#   TEMOE_FRESH_REF=REV      the commit to clone (default HEAD; uncommitted changes are not taken)
set -Eeuo pipefail
trap 'status=$?; echo "fresh_machine_check: line $LINENO: '\''$BASH_COMMAND'\'' failed with exit $status" >&2; exit $status' ERR
project=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=${TEMOE_FRESH_ROOT:-/var/tmp/temoe-fresh-root}
ref=${TEMOE_FRESH_REF:-HEAD}
commit=$(git -C "$project" rev-parse --verify "$ref^{commit}") || { echo "fresh_machine_check: '$ref' is not a commit of $project" >&2; exit 1; }

say() { echo "fresh_machine_check: $*"; }
fail() {
  echo "fresh_machine_check: $*" >&2
  exit 1
}

[[ $(id -u) -eq 0 ]] || fail "needs root (debootstrap, chroot and mounts); run it as root or with sudo"
[[ -f /etc/debian_version ]] || fail "needs a Debian host (debootstrap and a Debian mirror)"
if ! command -v debootstrap > /dev/null; then
  say "installing debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap > /dev/null ||
    fail "could not install debootstrap with apt-get"
fi
command -v git > /dev/null || fail "needs git on the host to clone the project"

# The machine's configured package source: the first Debian URI, deb822 (.sources) or one-line form.
mirror=${TEMOE_FRESH_MIRROR:-}
if [[ -z $mirror ]]; then
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2> /dev/null | awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}')
fi
if [[ -z $mirror ]]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2> /dev/null |
    awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}')
fi
[[ -n $mirror ]] || fail "no Debian mirror found in /etc/apt/sources.list*; set TEMOE_FRESH_MIRROR"

mounted=()
cleanup() {
  local index
  for ((index = ${#mounted[@]} - 1; index >= 0; index--)); do
    umount -l "${mounted[index]}" 2> /dev/null || true
  done
  if [[ ${TEMOE_FRESH_KEEP:-0} != 1 ]]; then
    rm -rf --one-file-system "$root"
  fi
}
trap cleanup EXIT

# A stale root from an interrupted run may still have mounts under it.
if [[ -d $root ]]; then
  for mount_point in $(awk -v r="$root" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$mount_point" || fail "could not unmount $mount_point left from an earlier run"
  done
  rm -rf --one-file-system "$root"
fi
mkdir -p "$root"
rm -rf "$root.logs" && mkdir -p "$root.logs"

say "debootstrap bookworm (minbase) from $mirror into $root"
start=$SECONDS
debootstrap --variant=minbase bookworm "$root" "$mirror" > "$root.debootstrap.log" 2>&1 || {
  tail -30 "$root.debootstrap.log" >&2
  fail "debootstrap failed (log: $root.debootstrap.log)"
}
say "bare root made in $((SECONDS - start)) s"
rm -f "$root.debootstrap.log"

# A new machine has the distribution's usual sources: the main suite, its updates and security.
cat > "$root/etc/apt/sources.list" << SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian*}/debian-security bookworm-security main
SOURCES
cp /etc/resolv.conf "$root/etc/resolv.conf" 2> /dev/null || true
# As on an installed machine, the host's own name resolves locally (debootstrap writes no
# /etc/hosts; without it every MPI start waits for a DNS lookup of the name to time out).
host=$(hostname)
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$host" > "$root/etc/hosts"
echo "$host" > "$root/etc/hostname"

for point in proc sys dev dev/pts; do
  mkdir -p "$root/$point"
done
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount --rbind /sys "$root/sys" && mounted+=("$root/sys")
mount --rbind /dev "$root/dev" && mounted+=("$root/dev")
mkdir -p "$root/dev/shm"
mkdir -p "$root/tmp" && chmod 1777 "$root/tmp"

git clone --quiet --no-hardlinks "$project" "$root/root/temoe"
git -C "$root/root/temoe" checkout --quiet "$commit"
say "cloned $(git -C "$root/root/temoe" log -1 --format='%h %s' | cut -c1-80)"

# run_in_root NAME COMMAND: one README command, in a login-like clean environment, timed.
declare -A statuses seconds
run_in_root() {
  local name=$1 command=$2 log="$root.logs/$1.log" begin=$SECONDS status=0
  say "running '$command' in the bare root (log: $log)"
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TERM=dumb LANG=C.UTF-8 ${OPENBLAS_CORETYPE:+OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE} \
    /bin/bash -c "cd /root/temoe && $command" > "$log" 2>&1 || status=$?
  statuses[$name]=$status
  seconds[$name]=$((SECONDS - begin))
  tail -15 "$log"
  say "'$command': exit $status in ${seconds[$name]} s"
}
run_in_root test "bash launch/test.sh"
run_in_root run "bash launch/run.sh"
# The second time nothing is missing and nothing changed: both must be quick.
run_in_root test-again "bash launch/setup.sh"

echo
echo "fresh machine check (${commit:0:7}, $(nproc) cores, $(lscpu 2> /dev/null | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}')):"
printf '  %-32s exit %s, %5s s\n' "bash launch/test.sh" "${statuses[test]}" "${seconds[test]}"
printf '  %-32s exit %s, %5s s\n' "bash launch/run.sh" "${statuses[run]}" "${seconds[run]}"
printf '  %-32s exit %s, %5s s\n' "bash launch/setup.sh (again)" "${statuses[test-again]}" "${seconds[test-again]}"
((statuses[test] == 0 && statuses[run] == 0 && statuses[test-again] == 0)) || fail "a README command failed (logs above)"
say "passed"
