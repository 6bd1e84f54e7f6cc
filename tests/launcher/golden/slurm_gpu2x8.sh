#!/bin/bash
# Rendered by rlaunch (slurm backend). Edit the job spec, not this file.
# Submitted with `sbatch --parsable --chdir=JOB_DIR --output=JOB_DIR/slurm-%j.out`: the job
# directory (rendered files, logs) is the working directory when this script starts.
#SBATCH --job-name=rn50
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=32
#SBATCH --gpus-per-node=8
#SBATCH --qos=high
#SBATCH --constraint=a100&ib
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@120
set -uo pipefail

JOB_DIR=$PWD
RESTARTS=${SLURM_RESTART_COUNT:-0}
MAX_RESTARTS=5
LOG_DIR="$JOB_DIR/logs/restart-$RESTARTS"
mkdir -p "$LOG_DIR"
export PATH=/opt/venv/bin:"$PATH"
export RLAUNCH_DEVICE_KIND=gpu
# Each srun step gets the CPUs asked for above: Slurm 22.05 to 23.02 srun does not inherit
# --cpus-per-task from the allocation (it would bind every rank of a node to one CPU) but reads
# SRUN_CPUS_PER_TASK; 23.11 reads SLURM_CPUS_PER_TASK again. Every srun also passes -c itself.
export SRUN_CPUS_PER_TASK=32
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
    fi
    echo "$name ${addr:-none}"
done > "$NODES_FILE.tmp" && mv "$NODES_FILE.tmp" "$NODES_FILE"
# msrun's scheduler runs on this (the batch) host: its port is chosen here.
MASTER_HOST=$SLURMD_NODENAME
MASTER_ADDR=$(awk -v node="$MASTER_HOST" '$1 == node { print $2 }' "$NODES_FILE")
if [ -z "$MASTER_ADDR" ] || [ "$MASTER_ADDR" = none ] || [[ $MASTER_ADDR == 127.* ]]; then
    echo "rlaunch: no address other nodes can reach for $MASTER_HOST (NodeAddr '${MASTER_ADDR:-}' from scontrol show node)" >&2
    exit 1
fi
MASTER_PORT=29500
echo "rlaunch: job $SLURM_JOB_ID restart $RESTARTS/$MAX_RESTARTS on $SLURM_JOB_NODELIST, master $MASTER_ADDR:$MASTER_PORT" >&2

# Before the time limit Slurm sends USR1 to this shell (--signal=B:USR1@...): pass it on to
# every rank, which saves a checkpoint and exits 75; then requeue if restarts are left.
# (scancel and `scontrol requeue` send TERM to the ranks directly: they save the same way.)
preempted=0
on_signal() {
    preempted=1
    echo "rlaunch: $1 received, asking every rank to checkpoint" >&2
    scancel --signal=USR1 "$SLURM_JOB_ID"
}
trap 'on_signal USR1' USR1

# The code as it was at submit (`rlaunch submit` copied /opt/rlaunch/resnest here), so
# that a requeued run resumes with what was submitted, not with what the checkout holds now.
cd "$JOB_DIR/code" || exit 1
export PYTHONPATH="$JOB_DIR/code${PYTHONPATH:+:$PYTHONPATH}"
# One msrun per node (one srun task each, holding the CPUs of its 8 ranks) starts the ranks
# there. msrun itself ignores TERM/USR1 so that only the ranks react (msrun would otherwise die
# and take them down unsaved). A node whose msrun fails ends the step (--kill-on-bad-exit)
# instead of leaving the others blocked in collectives; once one node's msrun has ended, the
# others get --wait seconds to finish (ranks exit 75 only after the checkpoint barrier, so a
# requeue is not cut short).
srun --ntasks-per-node=1 --cpus-per-task=32 --kill-on-bad-exit=1 --wait=120 bash -c 'echo "rlaunch: node $SLURMD_NODENAME (node rank $SLURM_NODEID) runs ranks $((SLURM_NODEID * $1))-$((SLURM_NODEID * $1 + $1 - 1)) on CPUs $(grep Cpus_allowed_list /proc/self/status | cut -f2)" >&2; msrun=$2; shift 2; trap "" TERM USR1; exec "$msrun" --node_rank="$SLURM_NODEID" "$@"' rlaunch-node 8 msrun --worker_num=16 --local_worker_num=8 --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" --log_dir="$LOG_DIR" --join=True resnest/train.py --data-dir /data/imagenet --output-dir '/scratch/run 1' --set epochs=270 --set net_name=resnest50 &
step=$!
wait "$step"; rc=$?
# `wait` returns early when a trapped signal arrives: keep waiting for the step to finish.
while kill -0 "$step" 2>/dev/null; do wait "$step"; rc=$?; done
if [ "$preempted" = 1 ]; then
    if [ "$RESTARTS" -lt "$MAX_RESTARTS" ]; then
        echo "rlaunch: ranks saved (step exit $rc); requeueing job $SLURM_JOB_ID" >&2
        scontrol requeue "$SLURM_JOB_ID"
        sleep 60
    fi
    echo "rlaunch: preempted with no restarts left ($RESTARTS/$MAX_RESTARTS)" >&2
    rc=75
fi
echo "rlaunch: step finished with exit code $rc" >&2
echo "$rc" > "$JOB_DIR/exit_code.tmp" && mv "$JOB_DIR/exit_code.tmp" "$JOB_DIR/exit_code"
exit "$rc"
