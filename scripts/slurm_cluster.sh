#!/usr/bin/env bash
# A one-node Slurm on this machine, for the tests, CI and trying rlaunch: 16 CPUs and 8 GPUs
# declared for scheduling only (the GPU "devices" are empty files), accounting off.
#
#   bash scripts/slurm_cluster.sh up      # idempotent: installs slurm-wlm/munge if missing, starts
#   bash scripts/slurm_cluster.sh status  # exit 0 when the node takes jobs
#   bash scripts/slurm_cluster.sh down    # stops slurmctld and slurmd (munge keeps running)
#
# State, spool and logs live in $RLAUNCH_SLURM_DIR (default /var/tmp/rlaunch-slurm). The config is
# linked to /etc/slurm/slurm.conf unless a foreign one is there; otherwise export
# SLURM_CONF=$RLAUNCH_SLURM_DIR/slurm.conf (printed by `up`). Needs root (SlurmUser=root).
set -euo pipefail

DIR=${RLAUNCH_SLURM_DIR:-/var/tmp/rlaunch-slurm}
NODE=$(hostname)
MARKER="# managed by rlaunch scripts/slurm_cluster.sh"
export SLURM_CONF="$DIR/slurm.conf"

log() { echo "slurm_cluster: $*" >&2; }

install_packages() {
    local missing=()
    for p in slurm-wlm munge; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    [ -f /etc/munge/munge.key ] || mungekey -c
    mkdir -p /var/run/munge /var/log/munge /var/lib/munge
    chown -R munge:munge /etc/munge /var/run/munge /var/log/munge /var/lib/munge
    chmod 0700 /etc/munge /var/log/munge /var/lib/munge
    chmod 0755 /var/run/munge
    chmod 0600 /etc/munge/munge.key
    su -s /bin/sh munge -c /usr/sbin/munged
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.1
    done
    log "munged did not start"; exit 1
}

write_config() {
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/gpus"
    for i in 0 1 2 3 4 5 6 7; do : > "$DIR/gpus/gpu$i"; done
    cat > "$DIR/slurm.conf.new" <<CONF
$MARKER
ClusterName=rlaunch
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
GresTypes=gpu
ReturnToService=2
MinJobAge=3600
KillWait=30
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$NODE CPUs=16 Gres=gpu:8 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
    mv "$DIR/slurm.conf.new" "$DIR/slurm.conf"
    echo "NodeName=$NODE Name=gpu File=$DIR/gpus/gpu[0-7]" > "$DIR/gres.conf"
    mkdir -p /etc/slurm
    # slurmd reads gres.conf next to slurm.conf; client commands read /etc/slurm/slurm.conf.
    if [ ! -e /etc/slurm/slurm.conf ] || grep -qF "$MARKER" /etc/slurm/slurm.conf 2>/dev/null; then
        ln -sfn "$DIR/slurm.conf" /etc/slurm/slurm.conf
        ln -sfn "$DIR/gres.conf" /etc/slurm/gres.conf
    else
        log "a foreign /etc/slurm/slurm.conf exists: export SLURM_CONF=$DIR/slurm.conf"
    fi
}

daemon_running() {  # $1: pid file
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_ready() {
    local state
    state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1) || return 1
    case "$state" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

up() {
    install_packages
    start_munge
    write_config
    daemon_running "$DIR/slurmctld.pid" || slurmctld -f "$DIR/slurm.conf"
    for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
    daemon_running "$DIR/slurmd.pid" || slurmd -f "$DIR/slurm.conf"
    for i in $(seq 150); do
        if node_ready; then
            log "up: node $NODE $(sinfo -h -n "$NODE" -o '%T cpus=%c gres=%G'); SLURM_CONF=$DIR/slurm.conf"
            return 0
        fi
        # Clears DOWN/INVAL left over from an earlier run.
        if (( i % 10 == 0 )); then scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true; fi
        sleep 0.2
    done
    log "node $NODE did not become ready: $(sinfo -h -N -o '%N %T %E' 2>&1)"
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    exit 1
}

stop_daemon() {  # $1: pid file, $2: name
    if daemon_running "$1"; then
        local pid; pid=$(cat "$1")
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || { log "stopped $2"; return; }; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
}

down() {
    stop_daemon "$DIR/slurmd.pid" slurmd
    stop_daemon "$DIR/slurmctld.pid" slurmctld
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) node_ready && log "node $NODE ready" ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
