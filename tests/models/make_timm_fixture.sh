#!/usr/bin/env bash
# Regenerate tests/models/fixtures/resnest14d_timm.json: timm's resnest14d, run in PyTorch on the
# seeded synthetic weights of synthetic_weights.py, on an odd, non-square batch (2x3x97x75, so the
# ceil-mode shortcut pools see partial windows). The fixture holds tensor names, shapes and
# logits only (no weights: the test redraws them from the seed), so it stays a few tens of KB.
# timm is not a dependency of the project or its CI; it goes into the reference venv only here.
# torchvision is NOT installed: its wheels do not load with torch 2.13, and torch_reference.py
# replaces it with inert placeholders (timm imports it only for data transforms).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .venv-ref/bin/python ] || bash scripts/setup.sh
.venv-ref/bin/pip install -q --disable-pip-version-check --no-deps "timm==${TIMM_VERSION:-1.0.31}"
.venv-ref/bin/pip install -q --disable-pip-version-check pillow
.venv-ref/bin/python tests/models/torch_reference.py timm resnest14d /tmp/unused \
    --seed 14 --batch 2 --height 97 --width 75 --num-classes 1000 \
    --fixture tests/models/fixtures/resnest14d_timm.json
echo "wrote tests/models/fixtures/resnest14d_timm.json"
