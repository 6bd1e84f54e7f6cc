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

# Daemons start without the caller's open files: a test run holds /tmp/rlaunch-slurm.lock through
# an inherited descriptor, and a daemon that kept it would hold the lock after the run, for good.
detached() {
    local fd
    for fd in /proc/$BASHPID/fd/*; do
        fd=${fd##*/}
        if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-"; fi
    done
    exec "$@"
}

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
    (detached su -s /bin/sh munge -c /usr/sbin/munged)
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
    daemon_running "$DIR/slurmctld.pid" || (detached slurmctld -f "$DIR/slurm.conf")
    for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
    daemon_running "$DIR/slurmd.pid" || (detached slurmd -f "$DIR/slurm.conf")
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
    detached nsenter --net="/run/netns/$NS_PREFIX$name" unshare --uts --mount --propagation private sh -c '
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
    daemon_running "$MDIR/run/slurmctld.pid" || (detached slurmctld -f "$MDIR/slurm.conf")
    for _ in $(seq 100); do SLURM_CONF="$MDIR/slurm.conf" scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
    for ((i = 0; i < MNODES; i++)); do
        name=$(node_name "$i")
        daemon_running "$MDIR/run/slurmd-$name.pid" || (start_slurmd "$i")
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

# ---- production-shaped mode: what a site's cluster looks like to a user ---------------------
#
# Two slurmd in network namespaces as above, plus what production clusters have and friendly
# test clusters lack:
# - jobs run as an unprivileged user (PROD_USER, created here); slurmctld/slurmdbd run as the
#   Debian `slurm` user, slurmd as root (it must setuid to the job's owner);
# - ProctrackType=proctrack/cgroup, TaskPlugin=task/cgroup,task/affinity on cgroup v1 with
#   ConstrainCores, ConstrainRAMSpace and ConstrainDevices: each slurmd sees its own cgroup
#   subtree as the root (a cgroup namespace plus bind mounts of that subtree over
#   /sys/fs/cgroup/<controller>), as a machine of its own would; inside it Slurm makes
#   /slurm_<node>/uid_U/job_J/step_S/task_T (seen: cgroup.procs of a step's tasks);
# - GPU and NPU gres backed by character devices (mknod; nvidia major 195, davinci a free major):
#   the devices cgroup lets a step open only the devices it was given (the NPUs through the
#   gres/npu plugin built below);
# - SelectTypeParameters=CR_Core_Memory with DefMemPerCPU=PROD_DEF_MEM_PER_CPU MB: a job that
#   asks for no memory gets that much per CPU, below what MindSpore's ranks need, and
#   ConstrainSwapSpace with AllowedSwapSpace=0 holds RAM+swap to it: the ranks are OOM-killed
#   (a limit below MindSpore's mapped libraries made them crawl instead; docs/slurm.md);
# - accounting through slurmdbd and a private MariaDB (sacct answers, finished jobs keep their
#   state, AccountingStorageEnforce=associations,limits,qos with an account and QOS);
# - PreemptType=preempt/partition_prio: `low` (default, PreemptMode=REQUEUE), `scavenger`
#   (PreemptMode=CANCEL, GraceTime 30 s: the tasks get SIGTERM, then SIGKILL) and `high`
#   (PriorityTier 10, preempts the other two);
# - node names that are not host names (NodeName=gpu-a01 NodeHostname=prod-h1 NodeAddr=...);
#   gpu-a01's own /etc/hosts maps its host name to 127.0.1.1, as Debian's installer writes it,
#   and no node name resolves anywhere.
#
#   bash scripts/slurm_cluster.sh up-production      # prints the SLURM_CONF clients must export
#   bash scripts/slurm_cluster.sh status-production
#   bash scripts/slurm_cluster.sh down-production    # daemons, database, namespaces, cgroups

PDIR=${RLAUNCH_SLURM_PROD_DIR:-/var/tmp/rlaunch-slurm-prod}
PROD_USER=${RLAUNCH_SLURM_PROD_USER:-rlaunch-user}
PROD_ACCOUNT=research
PROD_NAMES=(gpu-a01 gpu-a02)
PROD_HOSTS=(prod-h1 prod-h2)
PROD_SUBNET=10.231.78
PROD_BRIDGE=rlbr1
PROD_CTL_ADDR=$PROD_SUBNET.1
PROD_CTL_PORT=6840
PROD_DBD_PORT=6841
PROD_DB_PORT=6842
PROD_NS_PREFIX=rlaunch-prod-
PROD_MEM_MB=6000
PROD_DEF_MEM_PER_CPU=256
PROD_CONTROLLERS=(cpuset memory devices freezer cpuacct)
DAVINCI_MAJOR=241  # Ascend's davinci driver takes a dynamic major; any unused one models it

prod_addr() { echo "$PROD_SUBNET.$((12 - $1))"; }  # gpu-a01 = .12: node order != address order

prod_user() {
    id -u "$PROD_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$PROD_USER"
}

prod_devices() {
    mkdir -p "$PDIR/dev"
    local i
    for i in 0 1 2 3 4 5 6 7; do
        [ -c "$PDIR/dev/nvidia$i" ] || mknod -m 0666 "$PDIR/dev/nvidia$i" c 195 "$i"
        [ -c "$PDIR/dev/davinci$i" ] || mknod -m 0666 "$PDIR/dev/davinci$i" c "$DAVINCI_MAJOR" "$i"
    done
}

# Slurm 22.05 confines a gres's device files only when a gres plugin of that name lists them
# (src/common/gres.c, gres_g_get_devices: contexts without ops.get_devices are skipped); it ships
# plugins for gpu, mps, nic and shard, none for npu, so `--gres=npu:1` left every davinci file
# open under ConstrainDevices. Slurm 23.02 lists the File= devices of plugin-less gres too
# (SchedMD commit dd2e76b9df, bug 14139), which is what an Ascend site on a current Slurm has.
# This cluster gets that behaviour from a gres/npu plugin built from Debian's Slurm source of the
# installed version: its gres/nic plugin (src/plugins/gres/nic/gres_nic.c: devices from gres.conf
# File=, global card numbers from the file names) under the name npu, its job/step variables
# renamed SLURM_JOB_NPUS/SLURM_STEP_NPUS and ASCEND_VISIBLE_DEVICES. Built once, kept in
# $PDIR/plugins, found through PluginDir.
NPU_PLUGIN_DIR=$PDIR/plugins
npu_gres_plugin() {
    [ -f "$NPU_PLUGIN_DIR/gres_npu.so" ] && return 0
    command -v gcc >/dev/null || { log "needs gcc to build the gres/npu plugin (scripts/setup.sh installs it)"; exit 1; }
    local version src pool=http://deb.debian.org/debian/pool/main/s/slurm-wlm
    version=$(dpkg-query -W -f='${Version}' slurm-wlm-basic-plugins); version=${version%%-*}
    src="$PDIR/build/slurm-$version"
    mkdir -p "$PDIR/build" "$NPU_PLUGIN_DIR"
    if [ ! -f "$src/config.h" ]; then
        log "building the gres/npu plugin from Debian's slurm-wlm $version source (once)"
        curl -sSfL -o "$PDIR/build/orig.tar.gz" "$pool/slurm-wlm_$version.orig.tar.gz" \
            || { log "could not download slurm-wlm_$version.orig.tar.gz from $pool"; exit 1; }
        rm -rf "$src"; mkdir -p "$src"
        tar -xzf "$PDIR/build/orig.tar.gz" -C "$src" --strip-components=1
        (cd "$src" && ./configure --without-munge >"$PDIR/build/configure.log" 2>&1) \
            || { log "configure of the Slurm source failed: $(tail -n 3 "$PDIR/build/configure.log")"; exit 1; }
    fi
    local gres="$src/src/plugins/gres"
    sed -e 's|"gres/nic"|"gres/npu"|; s|"Gres NIC plugin"|"Gres NPU plugin (rlaunch test cluster)"|' \
        -e 's|gres_name\[\]\(\s*\)= "nic"|gres_name[]\1= "npu"|' \
        -e 's|SLURM_JOB_NICS|SLURM_JOB_NPUS|; s|SLURM_STEP_NICS|SLURM_STEP_NPUS|' \
        -e 's|OMPI_MCA_btl_openib_if_include|ASCEND_VISIBLE_DEVICES|g; s|"mlx4_"|""|' \
        "$gres/nic/gres_nic.c" > "$gres/nic/gres_npu.c"
    grep -q '"gres/npu"' "$gres/nic/gres_npu.c" && grep -q '= "npu"' "$gres/nic/gres_npu.c" \
        || { log "gres_nic.c of slurm $version no longer has the lines the npu plugin is made from"; exit 1; }
    gcc -shared -fPIC -O2 -DHAVE_CONFIG_H -DSLURM_PLUGIN_DEBUG -I"$src" -I"$src/src/common" \
        -o "$NPU_PLUGIN_DIR/gres_npu.so.new" "$gres/nic/gres_npu.c" "$gres/common/gres_common.c" \
        || { log "could not compile the gres/npu plugin"; exit 1; }
    mv "$NPU_PLUGIN_DIR/gres_npu.so.new" "$NPU_PLUGIN_DIR/gres_npu.so"
}

write_prod_config() {
    mkdir -p "$PDIR/state" "$PDIR/spool" "$PDIR/log" "$PDIR/run" "$PDIR/nodes"
    chown slurm:slurm "$PDIR/state" "$PDIR/log"
    local nodes="" i
    for i in "${!PROD_NAMES[@]}"; do
        nodes+="NodeName=${PROD_NAMES[$i]} NodeHostname=${PROD_HOSTS[$i]} NodeAddr=$(prod_addr "$i") "
        nodes+="CPUs=$(machine_cpus) RealMemory=$PROD_MEM_MB Gres=gpu:8,npu:8 State=UNKNOWN"$'\n'
    done
    local all; all=$(IFS=,; echo "${PROD_NAMES[*]}")
    cat > "$PDIR/slurm.conf.new" <<CONF
$MARKER (production-shaped)
ClusterName=rlaunch-prod
SlurmctldHost=$NODE($PROD_CTL_ADDR)
SlurmctldPort=$PROD_CTL_PORT
SlurmUser=slurm
SlurmdUser=root
PluginDir=$(dirname "$(dpkg -L slurm-wlm-basic-plugins | grep -m1 '/gres_gpu.so$')"):$NPU_PLUGIN_DIR
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup,task/affinity
JobAcctGatherType=jobacct_gather/cgroup
JobAcctGatherFrequency=30
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$PROD_DEF_MEM_PER_CPU
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
GresTypes=gpu,npu
ReturnToService=2
MinJobAge=300
KillWait=30
StateSaveLocation=$PDIR/state
SlurmdSpoolDir=$PDIR/spool/%n
SlurmctldPidFile=$PDIR/run/slurmctld.pid
SlurmdPidFile=$PDIR/run/slurmd-%n.pid
SlurmctldLogFile=$PDIR/log/slurmctld.log
SlurmdLogFile=$PDIR/log/slurmd-%n.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$PROD_CTL_ADDR
AccountingStoragePort=$PROD_DBD_PORT
AccountingStorageEnforce=associations,limits,qos
AccountingStorageTRES=gres/gpu,gres/npu
JobCompType=jobcomp/none
$nodes
PartitionName=low Nodes=$all Default=YES PriorityTier=1 PreemptMode=REQUEUE MaxTime=INFINITE State=UP
PartitionName=scavenger Nodes=$all PriorityTier=1 PreemptMode=CANCEL GraceTime=30 MaxTime=INFINITE State=UP
PartitionName=high Nodes=$all PriorityTier=10 PreemptMode=OFF MaxTime=INFINITE State=UP
CONF
    mv "$PDIR/slurm.conf.new" "$PDIR/slurm.conf"
    cat > "$PDIR/cgroup.conf" <<CONF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
CgroupAutomount=no
ConstrainCores=yes
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
AllowedSwapSpace=0
ConstrainDevices=yes
CONF
    {
        echo "Name=gpu File=$PDIR/dev/nvidia[0-7]"
        echo "Name=npu File=$PDIR/dev/davinci[0-7]"
    } > "$PDIR/gres.conf"
    # slurmdbd refuses a config that others can read (it holds the database password).
    cat > "$PDIR/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=$PROD_DBD_PORT
SlurmUser=slurm
PidFile=$PDIR/run/slurmdbd.pid
LogFile=$PDIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$PROD_DB_PORT
StorageUser=slurm
StoragePass=rlaunch-test-only
StorageLoc=slurm_acct_db
CONF
    chown slurm:slurm "$PDIR/slurmdbd.conf"
    chmod 0600 "$PDIR/slurmdbd.conf"
}

start_mariadb() {
    # Its own data dir, socket, port and log (owned by Debian's mysql user): the packaged
    # server stays untouched.
    local db="$PDIR/db" sock="$PDIR/db/mysqld.sock"
    mkdir -p "$db"; chown mysql:mysql "$db"
    if [ ! -d "$db/data/mysql" ]; then
        mariadb-install-db --no-defaults --datadir="$db/data" --user=mysql \
            --auth-root-authentication-method=socket --skip-test-db >"$PDIR/log/mariadb-install.log" 2>&1 \
            || { log "mariadb-install-db failed: $(tail -n 3 "$PDIR/log/mariadb-install.log")"; exit 1; }
    fi
    if ! daemon_running "$db/mysqld.pid"; then
        (detached /usr/sbin/mariadbd --no-defaults --datadir="$db/data" --socket="$sock" --port="$PROD_DB_PORT" \
            --bind-address=127.0.0.1 --user=mysql --pid-file="$db/mysqld.pid" \
            --log-error="$db/mariadb.log" --skip-log-bin >/dev/null 2>&1 &)
    fi
    local _
    for _ in $(seq 150); do
        mariadb --no-defaults --socket="$sock" -e 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.1
    done
    mariadb --no-defaults --socket="$sock" <<'SQL' || { log "mariadb did not start: $(tail -n 5 "$db/mariadb.log")"; exit 1; }
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'rlaunch-test-only';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'rlaunch-test-only';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
}

# The cgroup each node's slurmd sees as the root: <caller's cgroup>/rlaunch-prod/<node>, per
# controller. The parents are recorded so that `down` finds them from another process.
prod_cgroup_dir() {  # $1: controller, $2: node name
    echo "/sys/fs/cgroup/$1$(cat "$PDIR/run/cgroup-base-$1")/rlaunch-prod/$2"
}

prod_cgroups() {  # $1: node name
    local c base dir parent
    for c in "${PROD_CONTROLLERS[@]}"; do
        [ -f "$PDIR/run/cgroup-base-$c" ] || {
            base=$(awk -F: -v c="$c" '$2 == c { print $3 }' /proc/self/cgroup)
            [ "$base" = / ] && base=""
            echo "$base" > "$PDIR/run/cgroup-base-$c"
        }
        dir=$(prod_cgroup_dir "$c" "$1")
        mkdir -p "$dir"
        if [ "$c" = cpuset ]; then
            # A cpuset takes no task before it has CPUs and memory nodes: copy them down.
            parent=$(dirname "$dir")
            cat "$(dirname "$parent")/cpuset.cpus" > "$parent/cpuset.cpus"
            cat "$(dirname "$parent")/cpuset.mems" > "$parent/cpuset.mems"
            cat "$parent/cpuset.cpus" > "$dir/cpuset.cpus"
            cat "$parent/cpuset.mems" > "$dir/cpuset.mems"
        fi
    done
}

prod_node_files() {  # $1: node index
    local name host files j
    name=${PROD_NAMES[$1]}; host=${PROD_HOSTS[$1]}; files="$PDIR/nodes/$name"
    mkdir -p "$files" "$PDIR/spool/$name"
    {
        echo "127.0.0.1 localhost"
        # Debian's installer maps the machine's own host name to 127.0.1.1.
        [ "$1" = 0 ] && echo "127.0.1.1 $host"
        echo "$PROD_CTL_ADDR $NODE"
        for j in "${!PROD_NAMES[@]}"; do
            [ "$1" = 0 ] && [ "$j" = 0 ] && continue
            echo "$(prod_addr "$j") ${PROD_HOSTS[$j]}"
        done
    } > "$files/hosts"
    for card in 0 1 2 3 4 5 6 7; do echo "address_$card=192.168.$((110 + $1)).$((card + 1))"; done \
        > "$files/hccn.conf"
}

prod_netns_up() {  # $1: node index
    local ns="$PROD_NS_PREFIX${PROD_NAMES[$1]}" veth="rlp$1"
    ip netns list | grep -qw "$ns" || ip netns add "$ns"
    if ! ip link show "$veth" >/dev/null 2>&1; then
        ip link add "$veth" type veth peer name eth0 netns "$ns"
        ip link set "$veth" master "$PROD_BRIDGE" up
    fi
    ip -n "$ns" link set lo up
    ip -n "$ns" addr replace "$(prod_addr "$1")/24" dev eth0
    ip -n "$ns" link set eth0 up
}

start_prod_slurmd() {  # $1: node index
    local name=${PROD_NAMES[$1]} c dirs=()
    for c in "${PROD_CONTROLLERS[@]}"; do dirs+=("$c=$(prod_cgroup_dir "$c" "$name")"); done
    if [ ! -e /etc/hccn.conf ]; then : > /etc/hccn.conf; : > "$PDIR/run/created-etc-hccn.conf"; fi
    # Join the node's cgroups, then a new cgroup namespace rooted there, network (netns), host
    # name and mounts: the node's subtree is bind-mounted over each controller's mount point,
    # its /etc/hosts and /etc/hccn.conf over the machine's.
    detached nsenter --net="/run/netns/$PROD_NS_PREFIX$name" sh -c '
        for d in $4; do echo $$ > "${d#*=}/cgroup.procs" || exit 1; done
        exec unshare --uts --mount --cgroup --propagation private sh -c "
            for d in \$4; do mount --bind \"\${d#*=}\" \"/sys/fs/cgroup/\${d%%=*}\" || exit 1; done
            mount --bind \"\$2/hosts\" /etc/hosts && mount --bind \"\$2/hccn.conf\" /etc/hccn.conf &&
            hostname \"\$3\" && exec slurmd -N \"\$1\" -f \"\$5\"" "$0" "$@"' \
        rlaunch-node "$name" "$PDIR/nodes/$name" "${PROD_HOSTS[$1]}" "${dirs[*]}" "$PDIR/slurm.conf"
}

prod_accounts() {
    local cluster_known
    cluster_known=$(sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -cx rlaunch-prod || true)
    [ "$cluster_known" -ge 1 ] || sacctmgr -i add cluster rlaunch-prod >/dev/null
    sacctmgr -i add qos long >/dev/null 2>&1 || true
    sacctmgr -i add account "$PROD_ACCOUNT" cluster=rlaunch-prod description=rlaunch-tests \
        organization=rlaunch >/dev/null 2>&1 || true
    sacctmgr -i add user "$PROD_USER" account="$PROD_ACCOUNT" cluster=rlaunch-prod >/dev/null 2>&1 || true
    sacctmgr -i add user root account="$PROD_ACCOUNT" cluster=rlaunch-prod >/dev/null 2>&1 || true
    sacctmgr -i modify user where name="$PROD_USER" set qos=normal,long defaultqos=normal >/dev/null 2>&1 || true
}

up_production() {
    install_packages
    for p in slurmdbd mariadb-server; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
            || { log "needs $p (scripts/setup.sh installs it)"; exit 1; }
    done
    command -v ip >/dev/null || { log "needs iproute2 (ip)"; exit 1; }
    start_munge
    prod_user
    prod_devices
    npu_gres_plugin
    write_prod_config
    export SLURM_CONF="$PDIR/slurm.conf"
    ip link show "$PROD_BRIDGE" >/dev/null 2>&1 || ip link add "$PROD_BRIDGE" type bridge
    ip addr replace "$PROD_CTL_ADDR/24" dev "$PROD_BRIDGE"
    ip link set "$PROD_BRIDGE" up
    start_mariadb
    # slurmdbd reads slurmdbd.conf next to $SLURM_CONF.
    daemon_running "$PDIR/run/slurmdbd.pid" || (detached slurmdbd)
    for _ in $(seq 200); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.1; done
    prod_accounts
    local i
    for i in "${!PROD_NAMES[@]}"; do prod_node_files "$i"; prod_netns_up "$i"; prod_cgroups "${PROD_NAMES[$i]}"; done
    daemon_running "$PDIR/run/slurmctld.pid" || (detached slurmctld -f "$PDIR/slurm.conf")
    for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
    for i in "${!PROD_NAMES[@]}"; do
        daemon_running "$PDIR/run/slurmd-${PROD_NAMES[$i]}.pid" || (start_prod_slurmd "$i")
    done
    for k in $(seq 150); do
        if prod_ready; then
            log "up: $(sinfo -h -N -p low -o '%N %T cpus=%c mem=%m gres=%G' | tr '\n' ';') SLURM_CONF=$PDIR/slurm.conf"
            echo "$PDIR/slurm.conf"
            return 0
        fi
        if (( k % 10 == 0 )); then
            for i in "${!PROD_NAMES[@]}"; do
                scontrol update nodename="${PROD_NAMES[$i]}" state=resume >/dev/null 2>&1 || true
            done
        fi
        sleep 0.2
    done
    log "nodes did not become ready: $(sinfo -h -N -o '%N %T %E' 2>&1 | tr '\n' ';')"
    tail -n 20 "$PDIR/log/"*.log >&2 || true
    exit 1
}

prod_ready() {
    local ready
    ready=$(SLURM_CONF="$PDIR/slurm.conf" sinfo -h -N -p low -o '%N %T' 2>/dev/null \
        | awk '$2 ~ /^(idle|mixed|allocated|completing)$/' | wc -l)
    [ "$ready" -ge "${#PROD_NAMES[@]}" ]
}

down_production() {
    export SLURM_CONF="$PDIR/slurm.conf"
    local i name ns c
    if daemon_running "$PDIR/run/slurmctld.pid"; then
        scancel --user="$PROD_USER" >/dev/null 2>&1 || true
        scancel --user=root >/dev/null 2>&1 || true
    fi
    for name in "${PROD_NAMES[@]}"; do stop_daemon "$PDIR/run/slurmd-$name.pid" "slurmd $name"; done
    stop_daemon "$PDIR/run/slurmctld.pid" "slurmctld (production-shaped)"
    stop_daemon "$PDIR/run/slurmdbd.pid" slurmdbd
    stop_daemon "$PDIR/db/mysqld.pid" mariadb
    for name in "${PROD_NAMES[@]}"; do
        ns="$PROD_NS_PREFIX$name"
        if ip netns list | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
            ip netns del "$ns"
        fi
    done
    ip link show "$PROD_BRIDGE" >/dev/null 2>&1 && ip link del "$PROD_BRIDGE"
    # The nodes' cgroup subtrees, deepest first (slurmstepd leaves empty job dirs when killed).
    for c in "${PROD_CONTROLLERS[@]}"; do
        [ -f "$PDIR/run/cgroup-base-$c" ] || continue
        local top; top="/sys/fs/cgroup/$c$(cat "$PDIR/run/cgroup-base-$c")/rlaunch-prod"
        [ -d "$top" ] && find "$top" -depth -type d -exec rmdir {} + 2>/dev/null
        [ -d "$top" ] && log "cgroup $top still has tasks: $(find "$top" -name cgroup.procs -exec cat {} + | tr '\n' ' ')"
        rm -f "$PDIR/run/cgroup-base-$c"
    done
    if [ -f "$PDIR/run/created-etc-hccn.conf" ] && [ ! -s /etc/hccn.conf ]; then
        rm -f /etc/hccn.conf "$PDIR/run/created-etc-hccn.conf"
    fi
    # Job ids restart at 1 with a new state dir: the accounting database goes with it, so that
    # sacct never answers for a job of an earlier cluster.
    rm -rf "$PDIR/state" "$PDIR/db"
    log "production-shaped cluster removed (logs kept in $PDIR/log)"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) node_ready && log "node $NODE ready" ;;
    up-multi) up_multi ;;
    down-multi) down_multi ;;
    status-multi) multi_ready && log "$MNODES nodes ready; SLURM_CONF=$MDIR/slurm.conf" ;;
    up-production) up_production ;;
    down-production) down_production ;;
    status-production) prod_ready && log "${#PROD_NAMES[@]} nodes ready; SLURM_CONF=$PDIR/slurm.conf" ;;
    *) echo "usage: $0 up|down|status|up-multi|down-multi|status-multi|up-production|down-production|status-production" >&2
       exit 2 ;;
esac
