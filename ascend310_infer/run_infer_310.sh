#!/usr/bin/env bash
# The seed's run_infer_310.sh: build rl310_infer, run the MINDIR over a validation folder on an
# Ascend 310, then score the results.
#
#   bash ascend310_infer/run_infer_310.sh MINDIR DATA_PATH [DEVICE_ID] [BATCH_SIZE]
#
# DATA_PATH is an ImageNet-layout val folder (DATA_PATH/<class>/<image>). BATCH_SIZE must be
# the batch the MINDIR was exported with (python -m resnest.export --batch-size B).
# Outputs go to $RL310_WORK_DIR (default ./infer_310): result_Files/, time_Result/,
# imagenet_label.json, infer.log, acc.log, acc.json. Needs MindSpore's C++ inference package
# (MS_PATH) and the Ascend environment (LD_LIBRARY_PATH etc.) set as MindSpore's C++ inference
# guide describes.
set -euo pipefail

usage() {
    echo "usage: bash $0 MINDIR DATA_PATH [DEVICE_ID] [BATCH_SIZE]" >&2
    exit 2
}
[[ $# -ge 2 && $# -le 4 ]] || usage
mindir=$1
data_path=$2
device_id=${3:-0}
batch_size=${4:-1}
[[ -f "$mindir" ]] || { echo "run_infer_310: MINDIR '$mindir' is not a file" >&2; exit 2; }
[[ -d "$data_path" ]] || { echo "run_infer_310: DATA_PATH '$data_path' is not a folder" >&2; exit 2; }
[[ "$device_id" =~ ^[0-9]+$ ]] || {
    echo "run_infer_310: DEVICE_ID '$device_id' must be a non-negative integer" >&2; exit 2; }
[[ "$batch_size" =~ ^[1-9][0-9]*$ ]] || {
    echo "run_infer_310: BATCH_SIZE '$batch_size' must be a positive integer" >&2; exit 2; }

src_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(dirname "$src_dir")"
build_dir=${RL310_BUILD_DIR:-$src_dir/build}
work_dir=${RL310_WORK_DIR:-$PWD/infer_310}
python=${PYTHON:-python3}

RL310_REQUIRE_MINDSPORE=1 bash "$src_dir/build.sh" "$build_dir"

mkdir -p "$work_dir"
PYTHONPATH="$repo_dir${PYTHONPATH:+:$PYTHONPATH}" "$python" -m resnest.imagenet_labels \
    "$data_path" -o "$work_dir/imagenet_label.json"

"$build_dir/rl310_infer" --mindir_path="$mindir" --dataset_path="$data_path" \
    --device_id="$device_id" --batch_size="$batch_size" \
    --output_dir="$work_dir/result_Files" \
    --timing_file="$work_dir/time_Result/test_perform_static.txt" 2>&1 | tee "$work_dir/infer.log"

PYTHONPATH="$repo_dir${PYTHONPATH:+:$PYTHONPATH}" "$python" -m resnest.postprocess \
    --result-dir "$work_dir/result_Files" --label-file "$work_dir/imagenet_label.json" \
    --output "$work_dir/acc.json" 2>&1 | tee "$work_dir/acc.log"
cat "$work_dir/time_Result/test_perform_static.txt"
