#!/bin/bash
# Rendered by rlaunch (slurm backend). Edit the job spec, not this file.
# Submitted with `sbatch --parsable --chdir=JOB_DIR --output=JOB_DIR/slurm-%j.out`: the job
# directory (rendered files, logs) is the working directory when this script starts.
#SBATCH --job-name=rn50-npu
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=4
#SBATCH --exclusive
#SBATCH --gres=davinci:8
#SBATCH --mem=0
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@300
set -uo pipefail

# What submit wrote (the code snapshot, the rank helper); a sweep's task keeps its own JOB_DIR.
SUBMITTED=$PWD
JOB_DIR=$PWD
RESTARTS=${SLURM_RESTART_COUNT:-0}
MAX_RESTARTS=3
LOG_DIR="$JOB_DIR/logs/restart-$RESTARTS"
mkdir -p "$LOG_DIR"
export PATH=/opt/venv/bin:"$PATH"
export RLAUNCH_DEVICE_KIND=ascend
# Each srun step gets the CPUs asked for above: Slurm 22.05 to 23.02 srun does not inherit
# --cpus-per-task from the allocation (it would bind every rank of a node to one CPU) but reads
# SRUN_CPUS_PER_TASK; 23.11 reads SLURM_CPUS_PER_TASK again. Every srun also passes -c itself.
export SRUN_CPUS_PER_TASK=4
export OMP_NUM_THREADS=4
# The user's ~/.local site-packages stay out of the ranks' Python (the job's venv or the image's).
export PYTHONNOUSERSITE=1
# Every node's address as Slurm reaches it (NodeAddr): a node name need not be a host name, and
# Debian's /etc/hosts maps a host name to 127.0.1.1, where no other node can reach it.
NODES_FILE="$JOB_DIR/nodes-$RESTARTS"
scontrol show node -o "$SLURM_JOB_NODELIST" | awk '{
    name = addr = ""
    for (i = 1; i <= NF; i++) {
        if ($i ~ /^NodeName=/) name = substr($i, 10)
        if ($i ~ /^NodeAddr=/) addr = substr($i, 10)
    }
    if (name != "") print name, addr
}' | while read -r name addr; do
    if ! [[ $addr =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
        addr=$(getent ahostsv4 "$addr" | awk '$1 !~ /^127\./ { print $1; exit }')
        # A one-node job talks to itself only: loopback will do.
        if [ -z "$addr" ] && [ "${SLURM_JOB_NUM_NODES:-1}" = 1 ]; then addr=127.0.0.1; fi
    fi
    echo "$name ${addr:-none}"
done > "$NODES_FILE.tmp" && mv "$NODES_FILE.tmp" "$NODES_FILE"
# msrun's scheduler runs on this (the batch) host: its port is chosen here.
MASTER_HOST=$SLURMD_NODENAME
MASTER_ADDR=$(awk -v node="$MASTER_HOST" '$1 == node { print $2 }' "$NODES_FILE")
if [ -z "$MASTER_ADDR" ] || [ "$MASTER_ADDR" = none ] ||
        { [[ $MASTER_ADDR == 127.* ]] && [ "${SLURM_JOB_NUM_NODES:-1}" != 1 ]; }; then
    echo "rlaunch: no address other nodes can reach for $MASTER_HOST (NodeAddr '${MASTER_ADDR:-}' from scontrol show node)" >&2
    exit 1
fi
# Below the ephemeral port range (where NCCL's and the data loaders' sockets land), and not in
# use on this host.
{ read -r ephemeral_low _ < /proc/sys/net/ipv4/ip_local_port_range; } 2>/dev/null || ephemeral_low=32768
span=$(( ephemeral_low > 21024 ? ephemeral_low - 20000 : 1024 ))
MASTER_PORT=$(( 20000 + SLURM_JOB_ID % span ))
for _ in $(seq 100); do
    ss -Htln "sport = :$MASTER_PORT" 2>/dev/null | grep -q . || break
    MASTER_PORT=$(( 20000 + (MASTER_PORT - 20000 + 1) % span ))
done
echo "rlaunch: job $SLURM_JOB_ID restart $RESTARTS/$MAX_RESTARTS on $SLURM_JOB_NODELIST, master $MASTER_ADDR:$MASTER_PORT" >&2

# Rank 0 creates this file once the stop's checkpoint is published: it, not the
# step's exit code, says "requeue me" (msrun turns a rank's exit 75 into its own exit 1).
export RLAUNCH_REQUEUE_MARKER="$LOG_DIR/requeue-requested"
# Before the time limit Slurm sends USR1 to this shell (--signal=B:USR1@...): pass it on to
# every rank, which saves a checkpoint and exits. TERM comes from the scheduler itself
# (preemption, with or without GraceTime, and scancel) and reaches the ranks directly.
stop_signal=
stop_time=
on_signal() {
    stop_signal=$1
    stop_time=$(date +%s)
    echo "rlaunch: $1 received, every rank checkpoints" >&2
    if [ "$1" = USR1 ]; then scancel --signal=USR1 "$SLURM_JOB_ID"; fi
}
trap 'on_signal USR1' USR1
trap 'on_signal TERM' TERM

# The code as it was at submit (`rlaunch submit` copied /opt/rlaunch/resnest here), so
# that a requeued run resumes with what was submitted, not with what the checkout holds now.
cd "$SUBMITTED/code" || exit 1
export PYTHONPATH="$SUBMITTED/code${PYTHONPATH:+:$PYTHONPATH}"
# Ascend: each node registers its device IPs (hccn.conf) under its address, the rank table is
# built from them, then one process per card. Each takes RANK_ID and DEVICE_ID from its own
# server's entry of the table (the table's server order need not be Slurm's node order); one
# failing card ends the step (--kill-on-bad-exit) instead of leaving the others blocked in HCCL.
# These steps run the job dir's copy of slurm_rank.py with the Python of the ranks.
mkdir -p "$JOB_DIR/hccn-$RESTARTS"
srun --ntasks-per-node=1 --cpus-per-task=1 /opt/venv/bin/python "$SUBMITTED/slurm_rank.py" register "$JOB_DIR/hccn-$RESTARTS" /etc/hccn.conf "$NODES_FILE" || exit 1
/opt/venv/bin/python "$SUBMITTED/slurm_rank.py" table "$JOB_DIR/hccn-$RESTARTS" 4,5,6,7 "$SLURM_JOB_NUM_NODES" "$JOB_DIR/rank_table.json" || exit 1
export RANK_TABLE_FILE="$JOB_DIR/rank_table.json" RANK_SIZE=4 LOG_DIR
srun --ntasks-per-node=4 --cpus-per-task=4 --distribution=block:block --kill-on-bad-exit=1 /opt/venv/bin/python "$SUBMITTED/slurm_rank.py" run "$RANK_TABLE_FILE" "$LOG_DIR" "$NODES_FILE" -- /opt/venv/bin/python resnest/train.py --data-dir /data/imagenet --output-dir '/scratch/run 1' --set epochs=270 --set net_name=resnest50 &
step=$!
wait "$step"; rc=$?
# `wait` returns early when a trapped signal arrives: keep waiting for the step to finish.
while kill -0 "$step" 2>/dev/null; do wait "$step"; rc=$?; done
# The user's --max-restarts counts the requeues this script makes after the time-limit signal
# (or a stop it was not told about); a preemption or node failure is the scheduler's doing and
# SLURM_RESTART_COUNT counts those too, so the script keeps its own count.
own_requeues=$(cat "$JOB_DIR/requeues" 2>/dev/null)
[[ $own_requeues =~ ^[0-9]+$ ]] || own_requeues=0
if [ -f "$RLAUNCH_REQUEUE_MARKER" ]; then
    if [ -n "$stop_time" ]; then
        echo "rlaunch: the ranks saved and ended $(( $(date +%s) - stop_time )) s after $stop_signal" >&2
    fi
    # Who stopped the ranks, as slurmctld tells it (src/slurmctld/preempt.c, job_mgr.c). A
    # preemption sets PreemptTime; with GraceTime (PreemptMode=CANCEL) it signals the steps
    # only, never this shell. PreemptMode=REQUEUE requeues the job at once (Restarts grows past
    # this run's SLURM_RESTART_COUNT, PreemptTime is cleared). A TERM with neither is a plain
    # `scancel`, which `scontrol requeue` would undo ("a running, suspended or finished" job,
    # scontrol.1).
    job_view=$(scontrol show job -o "$SLURM_JOB_ID" 2>/dev/null)
    preempted=; [[ $job_view =~ PreemptTime=[0-9] ]] && preempted=1
    requeued_by_slurm=
    if [[ $job_view =~ Restarts=([0-9]{1,6}) ]] && (( BASH_REMATCH[1] > ${SLURM_RESTART_COUNT:-0} )); then
        requeued_by_slurm=1
    fi
    if [ -z "$stop_signal" ] && [ -n "$preempted" ]; then
        stop_signal=TERM
        echo "rlaunch: preempted (TERM to the ranks only)" >&2
    fi
    if [ "$stop_signal" != TERM ] && [ "$own_requeues" -ge "$MAX_RESTARTS" ]; then
        echo "rlaunch: stopped with no restarts left ($own_requeues/$MAX_RESTARTS)" >&2
    elif [ -e "$SUBMITTED/cancelled" ] || [ -e "$JOB_DIR/cancelled" ]; then
        # `rlaunch cancel` marks the folder before its scancel: a stop, never a requeue.
        echo "rlaunch: cancelled by the user; not requeued" >&2
    elif [ "$stop_signal" = TERM ] && [ -n "$job_view" ] && [ -z "$preempted$requeued_by_slurm" ]; then
        echo "rlaunch: cancelled with scancel; not requeued" >&2
    else
        [ "$stop_signal" = TERM ] || echo $(( own_requeues + 1 )) > "$JOB_DIR/requeues"
        echo "rlaunch: ranks saved (step exit $rc); requeueing job $SLURM_JOB_ID" >&2
        if scontrol requeue "$SLURM_JOB_ID"; then
            sleep 60
        fi
        # Not requeued: a cancelled job, or a site that forbids requeues (job_submit plugins).
        echo "rlaunch: scontrol requeue did not requeue job $SLURM_JOB_ID; it ends here" >&2
    fi
    rc=75
fi
echo "rlaunch: step finished with exit code $rc" >&2
echo "$rc" > "$JOB_DIR/exit_code.tmp" && mv "$JOB_DIR/exit_code.tmp" "$JOB_DIR/exit_code"
exit "$rc"
