#!/usr/bin/env bash
# A one-node Slurm on this machine, for trying slurm/train.sbatch and for the Slurm round-trip test:
#   slurm/local_cluster.sh start DIR   # munged, slurmctld and slurmd, all state under DIR
#   export SLURM_CONF=DIR/slurm.conf   # then sbatch, squeue, sinfo, scancel talk to it
#   slurm/local_cluster.sh stop DIR    # stops exactly the daemons that `start DIR` started
#
# Everything is private to DIR: its own munge key and socket, its own ports, state and logs, so it
# neither needs nor disturbs a system Slurm or munge. The daemons run as the calling user (root in
# CI); jobs run as that user too. Needs Debian's slurmctld, slurmd, slurm-client and munge
# (launch/test.sh installs them as root). Exit status 77 means "not available here" (tests skip).
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|status DIR" >&2
  exit 2
}
(($# == 2)) || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

# Ports derived from the directory, so that two clusters (two test runs) do not collide.
port_base=$((20000 + $(cksum <<< "$dir" | cut -d' ' -f1) % 20000 * 2))

stop_daemon() {
  local pid_file=$1
  [[ -f $pid_file ]] || return 0
  local pid
  pid=$(cat "$pid_file")
  if [[ -n $pid ]] && kill -0 "$pid" 2> /dev/null; then
    kill "$pid" 2> /dev/null || true
    for _ in $(seq 50); do
      kill -0 "$pid" 2> /dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2> /dev/null || true
  fi
  rm -f "$pid_file"
}

stop() {
  # Jobs first (their processes belong to slurmd's step daemons), then the daemons.
  if [[ -f $dir/slurm.conf ]] && command -v scancel > /dev/null; then
    SLURM_CONF=$dir/slurm.conf timeout 10 scancel --full --quiet --user "$(id -un)" 2> /dev/null || true
  fi
  stop_daemon "$dir/slurmd.pid"
  stop_daemon "$dir/slurmctld.pid"
  stop_daemon "$dir/munged.pid"
  # slurmstepd outlives slurmd for a moment; anything still running from this cluster goes too.
  pkill -9 -f "slurmstepd.*$dir" 2> /dev/null || true
}

start() {
  local missing=()
  for tool in munged slurmctld slurmd sbatch sinfo scontrol; do
    command -v "$tool" > /dev/null || [[ -x /usr/sbin/$tool ]] || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "local_cluster: missing ${missing[*]} (Debian packages: munge slurmctld slurmd slurm-client)" >&2
    exit 77
  fi
  export PATH=$PATH:/usr/sbin
  stop  # a cluster left running in DIR by an earlier, interrupted run
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  local user host cpus memory
  user=$(id -un)
  host=$(hostname -s)
  cpus=$(nproc)
  memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)

  # munge refuses group- or world-readable keys and, as root, wants --force.
  if [[ ! -f $dir/munge.key ]]; then
    (umask 077 && head -c 1024 /dev/urandom > "$dir/munge.key")
  fi
  munged --force --socket="$dir/munge.socket" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge.seed" 2> "$dir/log/munged.start" || {
    cat "$dir/log/munged.start" >&2
    exit 1
  }

  # Linux process tracking and no task plugin: cgroups are often unavailable in containers, and
  # one node needs neither. config_overrides lets the node offer at least 4 CPUs on a 2-core
  # machine, so that the default 4-task job of slurm/train.sbatch is accepted (oversubscribed).
  cat > "$dir/slurm.conf" << EOF
ClusterName=temoe-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port_base
SlurmdPort=$((port_base + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=10
NodeName=$host NodeAddr=127.0.0.1 CPUs=$((cpus < 4 ? 4 : cpus)) RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -f "$SLURM_CONF" -i || {
    tail -20 "$dir/log/slurmctld.log" >&2
    exit 1
  }
  slurmd -f "$SLURM_CONF" -N "$host" || {
    tail -20 "$dir/log/slurmd.log" >&2
    exit 1
  }
  for _ in $(seq 100); do
    if [[ $(sinfo --noheader --format=%t 2> /dev/null) == idle ]]; then
      echo "local_cluster: node $host idle; export SLURM_CONF=$SLURM_CONF"
      return 0
    fi
    sleep 0.2
  done
  echo "local_cluster: the node did not become idle within 20 s:" >&2
  sinfo >&2 || true
  tail -20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2
  stop
  exit 1
}

case $action in
  start) start ;;
  stop) stop ;;
  status) SLURM_CONF=$dir/slurm.conf sinfo ;;
  *) usage ;;
esac
