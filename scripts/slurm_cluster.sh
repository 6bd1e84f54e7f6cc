#!/usr/bin/env bash
# A one-node Slurm on this machine, for the tests, CI and trying rlaunch: 16 CPUs and 8 GPUs
# declared for scheduling only (the GPU "devices" are empty files), accounting off.
#
#   bash scripts/slurm_cluster.sh up      # idempotent: installs slurm-wlm/munge if missing, starts
#   bash scripts/slurm_cluster.sh status  # exit 0 when the node takes jobs
#   bash scripts/slurm_cluster.sh down    # stops slurmctld and slurmd (munge keeps running)
#
# Multi-node mode: one slurmctld and RLAUNCH_SLURM_NODES (default 2) slurmd, each "node" in its
# own network namespace (veth into a bridge on the private test subnet 10.231.77.0/24, its own
# host name, spool and log), TaskPlugin=task/affinity so CPU binding is real. Each node declares
# the CPUs this machine has (2), 8 GPUs and 8 Ascend cards (empty files, scheduling only) and has
# its own stand-in /etc/hosts and /etc/hccn.conf (bind mounts in its own mount namespace).
# Node addresses run against the node names (rlnode0 = .12, rlnode1 = .11) so that Slurm's node
# order differs from a rank table's server order, as it can on a real cluster.
#
#   bash scripts/slurm_cluster.sh up-multi      # prints the SLURM_CONF clients must export
#   bash scripts/slurm_cluster.sh status-multi
#   bash scripts/slurm_cluster.sh down-multi    # stops the daemons, removes namespaces and bridge
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


# ---- multi-node mode: slurmd per network namespace ----------------------------------------

MDIR=${RLAUNCH_SLURM_MULTI_DIR:-/var/tmp/rlaunch-slurm-multi}
MNODES=${RLAUNCH_SLURM_NODES:-2}
SUBNET=10.231.77
BRIDGE=rlbr0
CTL_ADDR=$SUBNET.1
CTL_PORT=6830
NS_PREFIX=rlaunch-

node_name() { echo "rlnode$1"; }
node_addr() { echo "$SUBNET.$((10 + MNODES - $1))"; }  # rlnode0 gets the highest address

write_multi_config() {
    mkdir -p "$MDIR/state" "$MDIR/spool" "$MDIR/log" "$MDIR/run" "$MDIR/devices"
    for i in 0 1 2 3 4 5 6 7; do : > "$MDIR/devices/gpu$i"; : > "$MDIR/devices/davinci$i"; done
    local names=() addrs=() i
    for ((i = 0; i < MNODES; i++)); do names+=("$(node_name "$i")"); addrs+=("$(node_addr "$i")"); done
    local name_list addr_list
    name_list=$(IFS=,; echo "${names[*]}")
    addr_list=$(IFS=,; echo "${addrs[*]}")
    cat > "$MDIR/slurm.conf.new" <<CONF
$MARKER (multi-node)
ClusterName=rlaunch-multi
SlurmctldHost=$NODE($CTL_ADDR)
SlurmctldPort=$CTL_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu,npu
ReturnToService=2
MinJobAge=3600
KillWait=30
StateSaveLocation=$MDIR/state
SlurmdSpoolDir=$MDIR/spool/%n
SlurmctldPidFile=$MDIR/run/slurmctld.pid
SlurmdPidFile=$MDIR/run/slurmd-%n.pid
SlurmctldLogFile=$MDIR/log/slurmctld.log
SlurmdLogFile=$MDIR/log/slurmd-%n.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$name_list NodeAddr=$addr_list CPUs=$(machine_cpus) Gres=gpu:8,npu:8 State=UNKNOWN
PartitionName=debug Nodes=$name_list Default=YES MaxTime=INFINITE State=UP
CONF
    mv "$MDIR/slurm.conf.new" "$MDIR/slurm.conf"
    {
        echo "Name=gpu File=$MDIR/devices/gpu[0-7]"
        echo "Name=npu File=$MDIR/devices/davinci[0-7]"
    } > "$MDIR/gres.conf"
}

# The CPUs this machine gives us. Not plain `nproc`: it obeys OMP_NUM_THREADS, which a caller
# that ran MindSpore kernels in-process inherits as 1 (MindSpore setenv()s it), e.g. pytest.
machine_cpus() { env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc; }

netns_up() {  # $1: node index
    local name ns addr veth files
    name=$(node_name "$1"); ns="$NS_PREFIX$name"; addr=$(node_addr "$1"); veth="rlv$1"
    files="$MDIR/nodes/$name"
    mkdir -p "$files" "$MDIR/spool/$name"
    {
        echo "127.0.0.1 localhost"
        echo "$CTL_ADDR $NODE"
        for ((j = 0; j < MNODES; j++)); do echo "$(node_addr "$j") $(node_name "$j")"; done
    } > "$files/hosts"
    # Stand-in for an Ascend server's /etc/hccn.conf: device IPs unique per node and card.
    for card in 0 1 2 3 4 5 6 7; do echo "address_$card=192.168.$((100 + $1)).$((card + 1))"; done \
        > "$files/hccn.conf"
    ip netns list | grep -qw "$ns" || ip netns add "$ns"
    if ! ip link show "$veth" >/dev/null 2>&1; then
        ip link add "$veth" type veth peer name eth0 netns "$ns"
        ip link set "$veth" master "$BRIDGE" up
    fi
    ip -n "$ns" link set lo up
    ip -n "$ns" addr replace "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
}

start_slurmd() {  # $1: node index
    local name files
    name=$(node_name "$1"); files="$MDIR/nodes/$name"
    # A bind mount needs an existing target: a non-Ascend host gets an empty /etc/hccn.conf for
    # the time the cluster is up (down-multi removes it).
    if [ ! -e /etc/hccn.conf ]; then : > /etc/hccn.conf; : > "$MDIR/run/created-etc-hccn.conf"; fi
    # Own network (the netns), host name (UTS namespace), /etc/hosts and /etc/hccn.conf (a
    # private mount namespace; not `ip netns exec`, whose fresh /sys hides the cgroup mounts),
    # own node name, spool and log. slurmd daemonizes; its job steps inherit all of it.
    nsenter --net="/run/netns/$NS_PREFIX$name" unshare --uts --mount --propagation private sh -c '
        mount --bind "$2/hosts" /etc/hosts && mount --bind "$2/hccn.conf" /etc/hccn.conf &&
        hostname "$1" && exec slurmd -N "$1" -f "$3"' rlaunch-node "$name" "$files" "$MDIR/slurm.conf"
}

up_multi() {
    install_packages
    command -v ip >/dev/null || { log "needs iproute2 (ip)"; exit 1; }
    start_munge
    write_multi_config
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
    fi
    ip addr replace "$CTL_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    local i name
    for ((i = 0; i < MNODES; i++)); do netns_up "$i"; done
    daemon_running "$MDIR/run/slurmctld.pid" || slurmctld -f "$MDIR/slurm.conf"
    for _ in $(seq 100); do SLURM_CONF="$MDIR/slurm.conf" scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
    for ((i = 0; i < MNODES; i++)); do
        name=$(node_name "$i")
        daemon_running "$MDIR/run/slurmd-$name.pid" || start_slurmd "$i"
    done
    export SLURM_CONF="$MDIR/slurm.conf"
    for k in $(seq 150); do
        if multi_ready; then
            log "up: $(sinfo -h -N -o '%N %T cpus=%c gres=%G' | tr '\n' ';') SLURM_CONF=$MDIR/slurm.conf"
            echo "$MDIR/slurm.conf"
            return 0
        fi
        if (( k % 10 == 0 )); then
            for ((i = 0; i < MNODES; i++)); do
                scontrol update nodename="$(node_name "$i")" state=resume >/dev/null 2>&1 || true
            done
        fi
        sleep 0.2
    done
    log "nodes did not become ready: $(sinfo -h -N -o '%N %T %E' 2>&1 | tr '\n' ';')"
    tail -n 20 "$MDIR/log/"*.log >&2 || true
    exit 1
}

multi_ready() {
    local ready
    ready=$(SLURM_CONF="$MDIR/slurm.conf" sinfo -h -N -o '%N %T' 2>/dev/null \
        | awk '$2 ~ /^(idle|mixed|allocated|completing)$/' | wc -l)
    [ "$ready" -ge "$MNODES" ]
}

down_multi() {
    local i name ns
    # A private test cluster: its jobs end with it (a restarted slurmctld would run them again).
    if daemon_running "$MDIR/run/slurmctld.pid"; then
        SLURM_CONF="$MDIR/slurm.conf" scancel --user=root >/dev/null 2>&1 || true
    fi
    for ((i = 0; i < MNODES; i++)); do
        name=$(node_name "$i")
        stop_daemon "$MDIR/run/slurmd-$name.pid" "slurmd $name"
    done
    stop_daemon "$MDIR/run/slurmctld.pid" "slurmctld (multi-node)"
    for ((i = 0; i < MNODES; i++)); do
        ns="$NS_PREFIX$(node_name "$i")"
        if ip netns list | grep -qw "$ns"; then
            # Whatever a job left behind in the namespace (its steps died with slurmd).
            for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
            ip netns del "$ns"
        fi
    done
    ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
    if [ -f "$MDIR/run/created-etc-hccn.conf" ] && [ ! -s /etc/hccn.conf ]; then
        rm -f /etc/hccn.conf "$MDIR/run/created-etc-hccn.conf"
    fi
    rm -rf "$MDIR/state"
    log "multi-node cluster removed (logs kept in $MDIR/log)"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) node_ready && log "node $NODE ready" ;;
    up-multi) up_multi ;;
    down-multi) down_multi ;;
    status-multi) multi_ready && log "$MNODES nodes ready; SLURM_CONF=$MDIR/slurm.conf" ;;
    *) echo "usage: $0 up|down|status|up-multi|down-multi|status-multi" >&2; exit 2 ;;
esac
