#!/usr/bin/env bash
# Fetches a real MindSpore C++ inference API -- include/ and lib/libmindspore.so from the
# mindspore-ascend 1.10.0 wheel on PyPI, the last release that ships it -- so rl310_infer can
# be compiled and linked on a machine without an Ascend host. It cannot run here: libmindspore.so
# needs Python 3.9 and Huawei's CANN runtime at load time. On the Ascend host build against the
# MindSpore installed there instead. Prints the MS_PATH to hand to build.sh.
#
#   MS_PATH=$(bash ascend310_infer/fetch_mindspore_api.sh [DEST]) bash ascend310_infer/build.sh
#
# DEST defaults to ${XDG_CACHE_HOME:-~/.cache}/rlaunch/mindspore-ascend-1.10.0; a complete
# DEST is reused. PYTHON (default python3) must have pip.
set -euo pipefail
version=1.10.0
dest=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/rlaunch/mindspore-ascend-$version}
python=${PYTHON:-python3}

if [[ -f "$dest/mindspore/include/api/model.h" && -f "$dest/mindspore/lib/libmindspore.so" ]]; then
    echo "$dest/mindspore"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch_mindspore_api: downloading mindspore-ascend==$version (about 170 MB) from PyPI" >&2
"$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.9 --platform manylinux1_x86_64 -d "$tmp" "mindspore-ascend==$version" >&2
"$python" - "$tmp" "$tmp/out" <<'PY'
import sys
import zipfile
from pathlib import Path

wheel = next(Path(sys.argv[1]).glob("mindspore_ascend-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    wanted = [n for n in archive.namelist()
              if n.startswith("mindspore/include/") or n == "mindspore/lib/libmindspore.so"]
    archive.extractall(sys.argv[2], members=wanted)
PY
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$tmp/out" "$dest"
echo "$dest/mindspore"
