#!/usr/bin/env bash
# Builds ascend310_infer/ with CMake: always the preprocessing library, rl310_preprocess_dump
# and the unit test; rl310_infer (the Ascend 310 program) only where the MindSpore C++
# inference API is installed. Prints what was built and what was skipped, and why.
#
#   bash ascend310_infer/build.sh [BUILD_DIR]        (default: ascend310_infer/build)
#
# Environment:
#   MS_PATH                 MindSpore inference package root (include/api/model.h,
#                           lib/libmindspore.so). Default: the `mindspore` Python package's
#                           folder, found without importing it.
#   RL310_REQUIRE_MINDSPORE=1  fail instead of skipping rl310_infer (use on the Ascend host).
#   PYTHON                  interpreter used to locate the mindspore package (python3).
#   JOBS                    parallel compile jobs (2).
set -euo pipefail
src_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build_dir="${1:-$src_dir/build}"

if [[ -z "${MS_PATH:-}" ]]; then
    MS_PATH="$("${PYTHON:-python3}" -c 'import importlib.util as u
s = u.find_spec("mindspore")
print(s.submodule_search_locations[0] if s and s.submodule_search_locations else "")' \
        2>/dev/null || true)"
fi
echo "build.sh: MindSpore location: ${MS_PATH:-<none found>}"

require=OFF
[[ "${RL310_REQUIRE_MINDSPORE:-0}" == 1 ]] && require=ON

mkdir -p "$build_dir"
cmake -S "$src_dir" -B "$build_dir" -DMINDSPORE_PATH="${MS_PATH:-}" \
    -DRL310_REQUIRE_MINDSPORE="$require" >"$build_dir/configure.log" 2>&1 || {
    cat "$build_dir/configure.log" >&2
    echo "build.sh: cmake configure failed (log above)" >&2
    exit 1
}
cmake --build "$build_dir" -j "${JOBS:-2}"

echo "build.sh: results in $build_dir:"
sed 's/^/  /' "$build_dir/rl310_build_status.txt"
if grep -q "rl310_infer: SKIPPED" "$build_dir/rl310_build_status.txt"; then
    echo "build.sh: rl310_infer was NOT built: it needs MindSpore's C++ inference package" \
         "(set MS_PATH on the Ascend host). Everything else was built."
fi
