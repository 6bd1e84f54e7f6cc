#!/usr/bin/env bash
# The main job, end to end on this machine: generate a small learnable image set, train ResNeSt-14d
# data-parallel on 2 CPU ranks with `rlaunch submit --backend local` (msrun underneath), follow
# the logs of both ranks, then gather checkpoints, the allreduced accuracy, a summary and curves.
# Everything lands in ./demo (or $DEMO_DIR). Takes about half a minute on 2 idle cores once set up.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
DEMO=${DEMO_DIR:-demo}
RLAUNCH=.venv/bin/rlaunch
mkdir -p "$DEMO"
rm -rf "$DEMO/run" "$DEMO/results"   # a fresh run (an existing output dir would be resumed)

if [ ! -d "$DEMO/data/train" ]; then
    .venv/bin/python -m resnest.data.synthetic "$DEMO/data" --classes 4 --train-per-class 16 \
        --val-per-class 5 --image-size 64
fi

job=$("$RLAUNCH" submit --backend local --cpus 2 --name demo \
    --data-dir "$DEMO/data" --output-dir "$DEMO/run" \
    --set net_name=resnest14d --set num_classes=4 --set crop_size=64 --set base_size=64 \
    --set batch_size=8 --set test_batch_size=10 --set epochs=4 --set warmup_epochs=0 \
    --set lr=0.01 --set autoaugment=false --set num_workers=1 --set eval_every_epochs=1 \
    --set log_every_steps=2)
echo "demo: job $job; following its logs (Ctrl-C stops following, not the job)" >&2

"$RLAUNCH" logs -f "$job" | grep --line-buffered -E "^\[rank [0-9]+\] (world_size|epoch|after allreduce|saved|training)" || true
"$RLAUNCH" status "$job"
"$RLAUNCH" gather "$job" --dest "$DEMO/results"
state=$("$RLAUNCH" status "$job" --json | .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)['state'])")
[ "$state" = COMPLETED ] || { echo "demo: job ended $state" >&2; exit 1; }
