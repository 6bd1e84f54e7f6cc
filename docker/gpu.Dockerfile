# syntax=docker/dockerfile:1
# GPU image: MindSpore 2.10 on CUDA for training and evaluation on NVIDIA GPUs.
# Build with `rlaunch build --target gpu` (context: the repository root, see /.dockerignore).
# The PyPI mindspore wheel carries GPU plugins for CUDA 11.1 and 11.6; the CUDA 11.8 runtime
# (same libcudart.so.11 ABI) with cuDNN 8 serves them, on Ubuntu 22.04, whose universe
# component has Python 3.11, the wheel's Python. Not built in this project's CI: the base
# lives on a registry the CI machines cannot reach.
ARG BASE_IMAGE=docker.io/nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04

# ---- runtime: what the builder and the final image share ---------------------------------
FROM ${BASE_IMAGE} AS runtime
# DL3008 ignored (apt pins): versions come from the base's Ubuntu release; exact pins break
# with every security update, and BASE_IMAGE is where the version is chosen.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       python3.11 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# ---- builder: venv + pip live only here -------------------------------------------------
FROM runtime AS builder
# DL3008 ignored for the reason given in the runtime stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
COPY docker/requirements.txt /tmp/requirements.txt
# pip_ca (optional): the CA bundle of a TLS-intercepting proxy, mounted for this step only so
# it never lands in a layer. /wheelhouse is a cache mount: wheels downloaded once are reused by
# later builds (`pip download` skips files it already has), so a rebuild does not fetch the
# 800 MB mindspore wheel again. Last, the Ascend plugin goes: it never loads on a GPU host.
RUN --mount=type=secret,id=pip_ca --mount=type=cache,target=/wheelhouse \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && /opt/venv/bin/pip download --disable-pip-version-check --only-binary=:all: \
       --dest /wheelhouse -r /tmp/requirements.txt \
    && /opt/venv/bin/pip install --disable-pip-version-check --no-index \
       --find-links /wheelhouse -r /tmp/requirements.txt \
    && rm -rf /opt/venv/lib/python3*/site-packages/mindspore/lib/plugin/*ascend*
COPY pyproject.toml README.md /src/
COPY resnest /src/resnest
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && /opt/venv/bin/pip install --disable-pip-version-check --no-deps /src \
    && /opt/venv/bin/pip uninstall --disable-pip-version-check -y pip \
    && rm /opt/venv/bin/rlaunch \
    && ln -s "$(/opt/venv/bin/python -c 'import os, resnest; print(os.path.dirname(resnest.__file__))')" /opt/venv/resnest

# ---- final image ------------------------------------------------------------------------
FROM runtime
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="rlaunch-gpu" \
      org.opencontainers.image.description="ResNeSt train/eval/export with MindSpore 2.10 (CUDA 11)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --create-home --uid 1000 --user-group --shell /bin/sh rlaunch
COPY --from=builder /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/rlaunch-entrypoint
ENV PATH=/opt/venv/bin:$PATH \
    RESNEST_DIR=/opt/venv/resnest \
    PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 1000:1000
WORKDIR /home/rlaunch
ENTRYPOINT ["/usr/local/bin/rlaunch-entrypoint"]
CMD ["--help"]
