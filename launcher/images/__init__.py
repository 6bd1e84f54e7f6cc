"""Container images: which targets exist, what their build context holds, how to build them.

`targets` (the Dockerfiles), `context` (.dockerignore, content versions), `builders` (docker,
podman or buildah: plan, run, report) and `base_image` (a Debian base made here when no registry
can be pulled from). Errors are `ImageUsageError` (bad input, exit 2) and `ImageBuildError` (a
build step failed, exit 1); `rlaunch build` (launcher/commands/build.py) maps them to click.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ImageUsageError(ValueError):
    """A build was asked for wrongly (bad tag, target, flag combination); one line."""


class ImageBuildError(RuntimeError):
    """A builder or a helper tool failed; the message names the step."""
