#!/usr/bin/env bash
# One-time (idempotent) set-up on a fresh Debian 12 machine with Python 3.11:
# system packages, the project venv (.venv) and the PyTorch reference venv (.venv-ref)
# used only by the equivalence tests and benchmarks (cached outside the clone).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
APT_PACKAGES=(
    slurm-wlm munge            # the local one-node Slurm the tests submit to
    slurmdbd mariadb-server    # accounting (sacct) on the production-shaped test Slurm
    gcc                        # ... and its gres/npu plugin (scripts/slurm_cluster.sh)
    iproute2 runc umoci        # multi-node Slurm in network namespaces; jobs in OCI bundles
    buildah debootstrap        # daemonless image builds (rlaunch build)
    libopencv-dev cmake g++    # ascend310_infer preprocessing library
    containerd busybox-static  # the real Kubernetes test cluster's nodes (scripts/k8s_cluster.sh)
    conntrack nftables curl    # ... and its kube-proxy
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp() { sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16; }

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if [ "$(cat .venv/.rlaunch-stamp 2>/dev/null)" != "$(stamp)" ]; then
    echo "setup: installing the project into .venv" >&2
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    stamp > .venv/.rlaunch-stamp
fi

# Official PyTorch ResNeSt, in its own venv: its top-level module is also called `resnest`. PyPI's
# torch wheel for Linux is the CUDA build (about 5 GB with its nvidia-* wheels; it runs on the CPU),
# so the venv lives in a cache outside the clone, keyed by its own requirements only: a fresh clone
# (CI) links it instead of unpacking it again.
REF_REQUIREMENTS="torch==2.13.0 numpy safetensors | --no-deps resnest==0.0.5"
ref_key=$(printf '%s %s' "$("$PYTHON" -c 'import sys; print(sys.version)')" "$REF_REQUIREMENTS" | sha256sum | cut -c1-12)
ref_dir=${RLAUNCH_CACHE:-/var/cache/rlaunch}/venv-ref-$ref_key
if [ ! -f "$ref_dir/.rlaunch-complete" ]; then
    echo "setup: installing the PyTorch reference into $ref_dir" >&2
    rm -rf "$ref_dir"
    mkdir -p "$(dirname "$ref_dir")"
    "$PYTHON" -m venv "$ref_dir"
    "$ref_dir/bin/pip" install -q --disable-pip-version-check ${REF_REQUIREMENTS%%|*}
    "$ref_dir/bin/pip" install -q --disable-pip-version-check ${REF_REQUIREMENTS##*|}
    touch "$ref_dir/.rlaunch-complete"
fi
if [ "$(readlink .venv-ref 2>/dev/null)" != "$ref_dir" ]; then
    rm -rf .venv-ref
    ln -s "$ref_dir" .venv-ref
fi
