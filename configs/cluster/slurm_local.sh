#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for trying and testing slurm_render.sbatch for real.
#
#   bash configs/cluster/slurm_local.sh up [PID]   # install (apt), start munged, slurmctld, slurmd
#   export SLURM_CONF=/var/lib/synthgen-slurm/slurm.conf   # printed by `up`; sbatch/squeue need it
#   bash configs/cluster/slurm_local.sh conf     # print the slurm.conf it writes for this host
#   bash configs/cluster/slurm_local.sh status
#   bash configs/cluster/slurm_local.sh down [PID] # stop the daemons
#
# `up` needs root and, when SLURM or munge is missing, apt-get (Debian packages `slurm-wlm` and
# `munge`, installed without recommends). It is idempotent: a running cluster of its own (from an
# earlier `up`) is reused, a munged that already answers is reused and never stopped by `down`.
# It exits 3 when it cannot run here (not root, no apt-get, install failed, SLURM ports taken by
# another SLURM), 1 on any other failure (daemon logs are printed).
# PID (the tests pass their own pid): `up PID` takes a lease on the cluster for that process;
# `down PID` drops it and stops the daemons only if an `up PID` started them and no other live
# process holds a lease, so concurrent test sessions can share the cluster. A cluster started by
# a plain `up` is left running by `down PID`; a plain `down` stops it regardless.
#
# Everything lives in $SLURM_LOCAL_DIR (default /var/lib/synthgen-slurm): slurm.conf, state and
# spool folders, pid files and the daemon logs. /etc/slurm is not touched: clients find the conf
# through SLURM_CONF. The conf describes this host as reported by `slurmd -C` (CPUs, sockets,
# cores, threads, RealMemory) in one partition `local`; resources are cores and memory
# (select/cons_tres, CR_Core_Memory); processes are tracked by parent pid (proctrack/linuxproc, no
# cgroup set-up needed); there is no accounting database (no slurmdbd, so no `sacct`): finished
# jobs stay visible to `scontrol show job` for MinJobAge (1 h) and are appended to jobcomp.log.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/var/lib/synthgen-slurm}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
NODE=$(hostname -s)
CTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}

log() { echo "slurm_local: $*" >&2; }
cannot() { log "cannot start SLURM here: $*"; exit 3; }

# alive PIDFILE NAME: the pid file names a live process called NAME (not a reused pid)
alive() { [[ -f $1 ]] && [[ $(cat "/proc/$(cat "$1")/comm" 2>/dev/null) == "$2" ]]; }

gen_conf() {
  local hw
  hw=$(slurmd -C | head -n 1)   # NodeName=... CPUs=... Boards=... SocketsPerBoard=... RealMemory=...
  cat <<EOF
# Single-node SLURM cluster for synthgen (written by configs/cluster/slurm_local.sh; do not edit).
ClusterName=synthgen-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
MinJobAge=3600
KillWait=30
InactiveLimit=0
SlurmctldTimeout=60
SlurmdTimeout=60
$hw NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

show_logs() {
  for f in "$DIR/slurmctld.log" "$DIR/slurmd.log"; do
    [[ -f $f ]] && { log "--- tail of $f"; tail -n 30 "$f" >&2; }
  done
  return 0
}

node_state() { sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1; }

munge_ok() { command -v munge >/dev/null && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null && return 0
  command -v apt-get >/dev/null || cannot "SLURM is not installed and there is no apt-get to install it"
  log "installing slurm-wlm and munge (apt-get)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
           --no-install-recommends slurm-wlm munge >/dev/null; }; then
    cannot "apt-get install slurm-wlm munge failed"
  fi
}

start_munge() {
  if munge_ok; then return 0; fi
  log "starting munged"
  if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 0400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  chmod 0755 /run/munge
  # 9>&-: the daemons must not inherit the lock (see up)
  if id munge >/dev/null 2>&1; then runuser -u munge -- munged 9>&-
  else munged --force 9>&-; fi
  touch "$DIR/munged.started-by-us"
  for _ in $(seq 50); do munge_ok && return 0; sleep 0.1; done
  log "munged does not answer"; return 1
}

lease_prune() {   # drop leases of processes that are gone; print the live ones
  local f
  for f in "$DIR"/leases/*; do
    [[ -e $f ]] || continue
    if kill -0 "$(basename "$f")" 2>/dev/null; then basename "$f"; else rm -f "$f"; fi
  done
}

up() {
  local holder=${1:-}
  [[ $(id -u) == 0 ]] || cannot "needs root (starts slurmctld and slurmd as root), running as $(id -un)"
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/leases"
  exec 9>"$DIR/lock"
  flock 9   # one up/down (and apt-get) at a time
  install
  start_munge
  local state=""
  if alive "$DIR/slurmctld.pid" slurmctld && alive "$DIR/slurmd.pid" slurmd && scontrol ping >/dev/null 2>&1; then
    state=$(node_state)
    if [[ $state == down* || $state == drain* || $state == fail* ]]; then
      scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
    fi
    [[ -n $holder ]] && touch "$DIR/leases/$holder"
    log "reusing the running cluster (node $NODE ${state:-unknown}); SLURM_CONF=$CONF"
    echo "export SLURM_CONF=$CONF"
    return 0
  fi
  for f in slurmd slurmctld; do
    if alive "$DIR/$f.pid" $f; then kill "$(cat "$DIR/$f.pid")"; sleep 1; fi
  done
  port_busy "$CTLD_PORT" && cannot "port $CTLD_PORT is taken (another slurmctld?); set SLURMCTLD_PORT"
  port_busy "$SLURMD_PORT" && cannot "port $SLURMD_PORT is taken (another slurmd?); set SLURMD_PORT"
  gen_conf >"$CONF.new"
  mv "$CONF.new" "$CONF"
  log "starting slurmctld and slurmd ($(grep '^NodeName' "$CONF"))"
  slurmctld -c -i 9>&- || { show_logs; return 1; }   # -c: forget jobs of an earlier life
  slurmd 9>&- || { show_logs; return 1; }
  for _ in $(seq 60); do
    state=$(node_state)
    [[ $state == idle* ]] && break
    sleep 0.5
  done
  if [[ $state != idle* ]]; then
    log "node $NODE is '${state:-unknown}', not idle, after 30 s"; show_logs
    scontrol show node "$NODE" >&2 || true
    return 1
  fi
  rm -f "$DIR"/leases/*
  if [[ -n $holder ]]; then touch "$DIR/started-for-lease" "$DIR/leases/$holder"; else rm -f "$DIR/started-for-lease"; fi
  log "cluster up: node $NODE idle; SLURM_CONF=$CONF"
  echo "export SLURM_CONF=$CONF"
}

down() {
  local holder=${1:-} f pid others
  mkdir -p "$DIR/leases"
  exec 9>"$DIR/lock"
  flock 9
  if [[ -n $holder ]]; then
    rm -f "$DIR/leases/$holder"
    others=$(lease_prune | tr '\n' ' ')
    if [[ -n $others ]]; then log "still in use by pid(s) $others; left running"; return 0; fi
    if [[ ! -f $DIR/started-for-lease ]]; then log "started by a plain \`up\`; left running"; return 0; fi
  fi
  for f in slurmd slurmctld; do
    if alive "$DIR/$f.pid" $f; then
      pid=$(cat "$DIR/$f.pid")
      kill "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      log "stopped $f ($pid)"
    fi
  done
  rm -f "$DIR/started-for-lease" "$DIR"/leases/*
  if [[ -f $DIR/munged.started-by-us ]]; then
    if alive /run/munge/munged.pid munged; then
      pid=$(cat /run/munge/munged.pid)
      kill "$pid"
      log "stopped munged ($pid)"
    fi
    rm -f "$DIR/munged.started-by-us"
  fi
}

status() {
  for f in slurmctld slurmd; do
    if alive "$DIR/$f.pid" $f; then echo "$f: running (pid $(cat "$DIR/$f.pid"))"; else echo "$f: stopped"; fi
  done
  if munge_ok; then echo "munged: answering"; else echo "munged: not answering"; fi
  if [[ -f $CONF ]]; then sinfo 2>/dev/null || true; fi
}

case "${1:-}" in
  up) up "${2:-}" ;;
  down) down "${2:-}" ;;
  conf) gen_conf ;;
  status) status ;;
  *) echo "usage: $0 up [PID] | down [PID] | conf | status" >&2; exit 2 ;;
esac
