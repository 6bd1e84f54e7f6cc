#!/bin/bash
# Rendered by rlaunch (local backend). Edit the job spec, not this file.
# Started detached by `rlaunch` with the job directory as working directory; its exit code
# lands in JOB_DIR/exit_code. `rlaunch cancel` sends TERM to the ranks (not to msrun, which
# ignores it so it cannot kill them before they save).
set -uo pipefail

JOB_DIR=$PWD
LOG_DIR="$JOB_DIR/logs/restart-0"
mkdir -p "$LOG_DIR"
# Wall-clock start and end (epoch seconds) for `rlaunch usage`.
date +%s.%N > "$JOB_DIR/started_at"
export PATH=/opt/venv/bin:"$PATH"
export RLAUNCH_DEVICE_KIND=cpu
cd /opt/rlaunch || { echo 1 > "$JOB_DIR/exit_code"; exit 1; }
(
    trap "" TERM USR1
    exec msrun --worker_num=2 --local_worker_num=2 --master_addr=127.0.0.1 --master_port=29501 --log_dir="$LOG_DIR" --join=True resnest/train.py --data-dir /data/imagenet --output-dir '/scratch/run 1' --set epochs=270 --set net_name=resnest50
)
rc=$?
date +%s.%N > "$JOB_DIR/finished_at"
echo "rlaunch: msrun finished with exit code $rc" >&2
echo "$rc" > "$JOB_DIR/exit_code.tmp" && mv "$JOB_DIR/exit_code.tmp" "$JOB_DIR/exit_code"
exit "$rc"
