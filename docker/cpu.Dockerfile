# syntax=docker/dockerfile:1
# CPU image: MindSpore CPU training, evaluation, export, and the base of the inference server.
# Build with `rlaunch build --target cpu` (context: the repository root, see /.dockerignore).
# BASE_IMAGE must be Debian bookworm or a derivative: its python3 (3.11) is what the pinned
# MindSpore wheel is built for. Where no registry is reachable, `rlaunch build --local-base`
# makes one with debootstrap and passes it here.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

# ---- runtime: what every later stage and the final image share --------------------------
FROM ${BASE_IMAGE} AS runtime
# DL3008 ignored (apt pins): versions come from the base's Debian release; exact pins break at
# every point release, and BASE_IMAGE is where the version is chosen.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# ---- builder: venv + pip live only here -------------------------------------------------
FROM runtime AS builder
# DL3008 ignored for the reason given in the runtime stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
COPY docker/requirements.txt /tmp/requirements.txt
# pip_ca (optional): the CA bundle of a TLS-intercepting proxy, mounted for this step only so
# it never lands in a layer. /wheelhouse is a cache mount: wheels downloaded once are reused by
# later builds (`pip download` skips files it already has), so a rebuild does not fetch the
# 800 MB mindspore wheel again. Last, the plugins for other devices go: the GPU and
# Ascend ones are 1.8 GB of the wheel's 2.4 GB and never load on CPU.
RUN --mount=type=secret,id=pip_ca --mount=type=cache,target=/wheelhouse \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && /opt/venv/bin/pip download --disable-pip-version-check --only-binary=:all: \
       --dest /wheelhouse -r /tmp/requirements.txt \
    && /opt/venv/bin/pip install --disable-pip-version-check --no-index \
       --find-links /wheelhouse -r /tmp/requirements.txt \
    && rm -rf /opt/venv/lib/python3*/site-packages/mindspore/lib/plugin/*gpu* \
       /opt/venv/lib/python3*/site-packages/mindspore/lib/plugin/*ascend*
COPY pyproject.toml README.md /src/
COPY resnest /src/resnest
# The project goes in with --no-deps: requirements.txt above is the image's dependency set.
# pip itself is removed afterwards: the final image has no installer; so is the `rlaunch`
# console script, whose launcher package (the CLI) is not part of the image.
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
LABEL org.opencontainers.image.title="rlaunch-cpu" \
      org.opencontainers.image.description="ResNeSt train/eval/export/serve with MindSpore 2.10 (CPU)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --create-home --uid 1000 --user-group --shell /bin/sh rlaunch
COPY --from=builder /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/rlaunch-entrypoint
# RESNEST_DIR: the installed package, for msrun which takes script paths (train.py).
ENV PATH=/opt/venv/bin:$PATH \
    RESNEST_DIR=/opt/venv/resnest \
    PYTHONUNBUFFERED=1
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 1000:1000
WORKDIR /home/rlaunch
ENTRYPOINT ["/usr/local/bin/rlaunch-entrypoint"]
CMD ["--help"]
