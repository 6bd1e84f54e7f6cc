#!/usr/bin/env bash
# The whole test suite, unit and integration (real Slurm, msrun, image build, a real Kubernetes),
# as CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The real Kubernetes of the `realk8s` tests: built once from Go modules (cold: about half an
# hour), then found in /var/cache/rlaunch-k8s; the tests' fixture starts and stops the cluster.
bash scripts/k8s_build.sh >/dev/null
exec .venv/bin/python -m pytest "$@"
