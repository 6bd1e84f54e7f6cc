#!/usr/bin/env bash
# The whole test suite, unit and integration (real Slurm, msrun, image build), as CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
