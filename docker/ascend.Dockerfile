# syntax=docker/dockerfile:1
# Ascend image: MindSpore 2.10 on CANN for Ascend 910 training and Ascend 310/310P inference.
# Build with `rlaunch build --target ascend` (context: the repository root, see /.dockerignore).
# BASE_IMAGE is an Ascend CANN image with Python 3.11 (the mindspore wheel's Python), whose
# PyPI wheel carries the Ascend plugin. For 310P inference hosts pick the matching CANN tag,
# e.g. --base-image quay.io/ascend/cann:8.5.0-310p-ubuntu22.04-py3.11. The NPU driver is not
# in the image: the Ascend device plugin (or `docker run -v /usr/local/Ascend/driver:...`)
# mounts it from the host. Not built in this project's CI: the base lives on a registry the CI
# machines cannot reach.
ARG BASE_IMAGE=quay.io/ascend/cann:8.5.0-910b-ubuntu22.04-py3.11

# ---- builder: venv + pip live only here -------------------------------------------------
FROM ${BASE_IMAGE} AS builder
# The CANN image's Python is built with venv support; no system packages are needed here.
RUN python3 -m venv /opt/venv
COPY docker/requirements.txt /tmp/requirements.txt
# pip_ca (optional): the CA bundle of a TLS-intercepting proxy, mounted for this step only so
# it never lands in a layer. /wheelhouse is a cache mount: wheels downloaded once are reused by
# later builds (`pip download` skips files it already has), so a rebuild does not fetch the
# 800 MB mindspore wheel again. Last, the CUDA plugins go: they never load on Ascend.
RUN --mount=type=secret,id=pip_ca --mount=type=cache,target=/wheelhouse \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && /opt/venv/bin/pip download --disable-pip-version-check --only-binary=:all: \
       --dest /wheelhouse -r /tmp/requirements.txt \
    && /opt/venv/bin/pip install --disable-pip-version-check --no-index \
       --find-links /wheelhouse -r /tmp/requirements.txt \
    && rm -rf /opt/venv/lib/python3*/site-packages/mindspore/lib/plugin/*gpu*
COPY pyproject.toml README.md /src/
COPY resnest /src/resnest
RUN --mount=type=secret,id=pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && /opt/venv/bin/pip install --disable-pip-version-check --no-deps /src \
    && /opt/venv/bin/pip uninstall --disable-pip-version-check -y pip \
    && rm /opt/venv/bin/rlaunch \
    && ln -s "$(/opt/venv/bin/python -c 'import os, resnest; print(os.path.dirname(resnest.__file__))')" /opt/venv/resnest

# ---- final image ------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="rlaunch-ascend" \
      org.opencontainers.image.description="ResNeSt train/eval/export with MindSpore 2.10 on Ascend CANN" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# HwHiAiUser's group (1000 on Ascend hosts) is what the driver's device files belong to. Some
# CANN images already have a uid 1000 (HwHiAiUser): then that account is the image's user.
RUN (getent group 1000 >/dev/null || groupadd --gid 1000 HwHiAiUser) \
    && (getent passwd 1000 >/dev/null || useradd --create-home --uid 1000 --gid 1000 --shell /bin/sh rlaunch) \
    && mkdir -p /home/rlaunch \
    && chown 1000:1000 /home/rlaunch
COPY --from=builder /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/rlaunch-entrypoint
ENV PATH=/opt/venv/bin:$PATH \
    RESNEST_DIR=/opt/venv/resnest \
    PYTHONUNBUFFERED=1
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 1000:1000
WORKDIR /home/rlaunch
ENTRYPOINT ["/usr/local/bin/rlaunch-entrypoint"]
CMD ["--help"]
