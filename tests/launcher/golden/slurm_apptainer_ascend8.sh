#!/bin/bash
# Rendered by rlaunch (slurm backend). Edit the job spec, not this file.
# Submitted with `sbatch --parsable --chdir=JOB_DIR --output=JOB_DIR/slurm-%j.out`: the job
# directory (rendered files, logs) is the working directory when this script starts.
#SBATCH --job-name=rn50-npu
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --cpus-per-task=24
#SBATCH --gres=npu:8
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
export RLAUNCH_DEVICE_KIND=ascend
# Each srun step gets the CPUs asked for above: since Slurm 22.05 srun no longer inherits
# --cpus-per-task from the allocation (it would bind every rank of a node to one CPU).
export SRUN_CPUS_PER_TASK=24
export OMP_NUM_THREADS=24
MASTER_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
# msrun's scheduler address as an IP (the workers on other nodes connect to it).
MASTER_ADDR=$(getent ahostsv4 "$MASTER_HOST" | awk 'NR == 1 { print $1 }')
MASTER_ADDR=${MASTER_ADDR:-$MASTER_HOST}
MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
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
# Ascend: each node registers its device IPs (hccn.conf), the rank table is built from them,
# then one process per card. Each takes RANK_ID and DEVICE_ID from its own server's entry of
# the table (the table's server order need not be Slurm's node order); one failing card ends
# the step (--kill-on-bad-exit) instead of leaving the others blocked in HCCL.
mkdir -p "$JOB_DIR/hccn-$RESTARTS"
srun --ntasks-per-node=1 --cpus-per-task=1 /opt/venv/bin/python -m launcher.ranktable register "$JOB_DIR/hccn-$RESTARTS" /etc/hccn.conf || exit 1
/opt/venv/bin/python -m launcher.cli ranktable --hccn-dir "$JOB_DIR/hccn-$RESTARTS" --devices 0,1,2,3,4,5,6,7 -o "$JOB_DIR/rank_table.json" || exit 1
export RANK_TABLE_FILE="$JOB_DIR/rank_table.json" RANK_SIZE=16 LOG_DIR
srun --ntasks-per-node=8 --cpus-per-task=24 --kill-on-bad-exit=1 /opt/venv/bin/python -m launcher.backends.slurm_rank "$RANK_TABLE_FILE" "$LOG_DIR" -- apptainer exec --bind '/data/imagenet,/scratch/run 1,/usr/local/Ascend/driver,/usr/local/sbin/npu-smi,/etc/ascend_install.info,/dev/davinci_manager,/dev/devmm_svm,/dev/hisi_hdc,/etc/hccn.conf,/dev/davinci0,/dev/davinci1,/dev/davinci2,/dev/davinci3,/dev/davinci4,/dev/davinci5,/dev/davinci6,/dev/davinci7,'"$JOB_DIR" --pwd /opt/venv /shared/images/rlaunch-ascend.sif python resnest/train.py --data-dir /data/imagenet --output-dir '/scratch/run 1' --set epochs=270 --set net_name=resnest50 &
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
