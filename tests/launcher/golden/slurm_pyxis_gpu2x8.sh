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

JOB_DIR=$PWD
RESTARTS=${SLURM_RESTART_COUNT:-0}
MAX_RESTARTS=3
LOG_DIR="$JOB_DIR/logs/restart-$RESTARTS"
mkdir -p "$LOG_DIR"
export PATH=/opt/venv/bin:"$PATH"
export RLAUNCH_DEVICE_KIND=gpu
# Each srun step gets the CPUs asked for above: since Slurm 22.05 srun no longer inherits
# --cpus-per-task from the allocation (it would bind every rank of a node to one CPU).
export SRUN_CPUS_PER_TASK=64
export OMP_NUM_THREADS=8
MASTER_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
# msrun's scheduler address as an IP (the workers on other nodes connect to it).
MASTER_ADDR=$(getent ahostsv4 "$MASTER_HOST" | awk 'NR == 1 { print $1 }')
MASTER_ADDR=${MASTER_ADDR:-$MASTER_HOST}
MASTER_PORT=29500
echo "rlaunch: job $SLURM_JOB_ID restart $RESTARTS/$MAX_RESTARTS on $SLURM_JOB_NODELIST, master $MASTER_ADDR:$MASTER_PORT" >&2

# Rank 0 creates this file once every rank has saved its checkpoint after a stop: it, not the
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
# and take them down unsaved).
srun --ntasks-per-node=1 --cpus-per-task=64 --kill-on-bad-exit=0 '--container-image=nvcr.io#myorg/rlaunch-gpu:0.1.0' '--container-mounts=/data/imagenet:/data/imagenet,/scratch/run 1:/scratch/run 1,'"$JOB_DIR:$JOB_DIR" --container-workdir=/opt/venv bash -c 'echo "rlaunch: node $SLURMD_NODENAME (node rank $SLURM_NODEID) runs ranks $((SLURM_NODEID * $1))-$((SLURM_NODEID * $1 + $1 - 1)) on CPUs $(grep Cpus_allowed_list /proc/self/status | cut -f2)" >&2; msrun=$2; shift 2; trap "" TERM USR1; exec "$msrun" --node_rank="$SLURM_NODEID" "$@"' rlaunch-node 8 /opt/venv/bin/msrun --worker_num=16 --local_worker_num=8 --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" --log_dir="$LOG_DIR" --join=True resnest/train.py --data-dir /data/imagenet --output-dir '/scratch/run 1' --set epochs=270 --set net_name=resnest50 &
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
    if [ "$stop_signal" != TERM ] && [ "$own_requeues" -ge "$MAX_RESTARTS" ]; then
        echo "rlaunch: stopped with no restarts left ($own_requeues/$MAX_RESTARTS)" >&2
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
