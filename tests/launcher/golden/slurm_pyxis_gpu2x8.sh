#!/bin/bash
# Rendered by rlaunch (slurm backend). Edit the job spec, not this file.
# Submitted with `sbatch --parsable --chdir=JOB_DIR --output=JOB_DIR/slurm-%j.out`: the job
# directory (rendered files, logs) is the working directory when this script starts.
#SBATCH --job-name=rn50
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=64
#SBATCH --gpus-per-node=8
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@120
set -uo pipefail

# What submit wrote (the code snapshot, the rank helper); a sweep's task keeps its own JOB_DIR.
SUBMITTED=$PWD
JOB_DIR=$PWD
RESTARTS=${SLURM_RESTART_COUNT:-0}
MAX_RESTARTS=3
LOG_DIR="$JOB_DIR/logs/restart-$RESTARTS"
mkdir -p "$LOG_DIR"
export PATH=/opt/venv/bin:"$PATH"
export RLAUNCH_DEVICE_KIND=gpu
# Each srun step gets the CPUs asked for above: Slurm 22.05 to 23.02 srun does not inherit
# --cpus-per-task from the allocation (it would bind every rank of a node to one CPU) but reads
# SRUN_CPUS_PER_TASK; 23.11 reads SLURM_CPUS_PER_TASK again. Every srun also passes -c itself.
export SRUN_CPUS_PER_TASK=64
export OMP_NUM_THREADS=8
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
MASTER_PORT=29500
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

mkdir -p '/scratch/run 1' || exit 1
# One msrun per node (one srun task each, holding the CPUs of its 8 ranks) starts the ranks
# there. msrun itself ignores TERM/USR1 so that only the ranks react (msrun would otherwise die
# and take them down unsaved). A node whose msrun fails ends the step (--kill-on-bad-exit)
# instead of leaving the others blocked in collectives; once one node's msrun has ended, the
# others get --wait seconds to finish (ranks exit 75 only after the checkpoint barrier, so a
# requeue is not cut short). The task's shell passes TERM/USR1 on to msrun's children: Slurm
# signals only the task itself (proctrack/cgroup signals the step's direct children for all but
# SIGKILL, proctrack_cgroup.c proctrack_p_signal), never the ranks msrun started.
srun --ntasks-per-node=1 --cpus-per-task=64 --kill-on-bad-exit=1 --wait=120 '--container-image=nvcr.io#myorg/rlaunch-gpu:0.1.0' '--container-mounts=/data/imagenet:/data/imagenet,/scratch/run 1:/scratch/run 1,'"$SUBMITTED:$SUBMITTED" --container-workdir=/opt/venv bash -c 'echo "rlaunch: node $SLURMD_NODENAME (node rank $SLURM_NODEID) runs ranks $((SLURM_NODEID * $1))-$((SLURM_NODEID * $1 + $1 - 1)) on CPUs $(grep Cpus_allowed_list /proc/self/status | cut -f2)" >&2; msrun=$2; shift 2; (trap "" TERM USR1; exec "$msrun" --node_rank="$SLURM_NODEID" "$@") & m=$!; trap "pkill -USR1 -P \$m" USR1; trap "pkill -TERM -P \$m" TERM; while kill -0 $m 2>/dev/null; do wait $m; done; wait $m' rlaunch-node 8 /opt/venv/bin/msrun --worker_num=16 --local_worker_num=8 --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" --log_dir="$LOG_DIR" --join=True --cluster_time_out=1800 resnest/train.py --data-dir /data/imagenet --output-dir '/scratch/run 1' --set epochs=270 --set net_name=resnest50 &
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
