"""Builders (docker, podman, buildah): pick one that works, plan the build, run it and report.

Docker, podman and buildah take the same Dockerfiles; buildah needs no daemon, which is how the
CPU image is built in this project's tests.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from launcher.images import ImageBuildError, ImageUsageError
from launcher.images.context import content_version, git_revision
from launcher.images.targets import dockerfile_for
from launcher.spec import IMAGE_REF_RE

BUILDERS = ("auto", "docker", "podman", "buildah")
# A TLS-intercepting proxy's CA must reach pip inside the build without landing in a layer.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# buildah without a daemon or kernel overlay support: plain copies and chroot isolation.
BUILDAH_DEFAULT_ENV = {"STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
# Where a builder announces a step: buildah/podman "[2/3] STEP 3/9: RUN ..." (stage prefix only
# in multi-stage builds),
# docker BuildKit "#7 [builder 3/6] RUN ...", the classic docker builder "Step 3/9 : RUN ...".
_STEP_LINE = re.compile(r"(?:(?:\[\d+/\d+\] )?STEP \d+/\d+: .*|#\d+ \[[^\]]*\d+/\d+\] .*|Step \d+/\d+ : .*)")

Runner = Callable[..., subprocess.CompletedProcess]


def _works(argv: list[str], runner: Runner) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    try:
        return runner(argv, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def detect_builder(runner: Runner = subprocess.run) -> str:
    """A reachable Docker daemon, else podman, else buildah (both daemonless)."""
    if _works(["docker", "info"], runner):
        return "docker"
    if _works(["podman", "info"], runner):
        return "podman"
    if _works(["buildah", "--version"], runner):
        return "buildah"
    raise ImageBuildError(
        "no image builder works here: start a Docker daemon or install podman or buildah"
    )


@dataclass(frozen=True)
class BuildPlan:
    """Everything one build needs; `command()` is what --dry-run prints."""

    builder: str
    target: str
    tag: str
    context: Path
    dockerfile: Path
    build_args: dict[str, str]
    secrets: dict[str, Path] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    pull_never: bool = False

    def command(self) -> list[str]:
        argv = {"docker": ["docker", "build", "--progress=plain"],
                "podman": ["podman", "build"],
                "buildah": ["buildah", "bud"]}[self.builder]
        argv = [*argv, "-f", str(self.dockerfile), "-t", self.tag]
        if self.pull_never and self.builder != "docker":
            argv.append("--pull=never")
        for key, value in self.build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        for name, src in self.secrets.items():
            argv += ["--secret", f"id={name},src={src}"]
        return [*argv, str(self.context)]

    def push_command(self) -> list[str]:
        return [self.builder, "push", self.tag]

    def shell_line(self, argv: list[str]) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"{env} {shlex.join(argv)}" if env else shlex.join(argv)


def has_registry(tag: str) -> bool:
    first = tag.split("/")[0]
    return "/" in tag and ("." in first or ":" in first or first == "localhost")


def plan_build(
    target: str,
    builder: str,
    context: Path,
    tag: str | None = None,
    base_image: str | None = None,
    revision: str | None = None,
) -> BuildPlan:
    """Resolve tag, build arguments, secrets and environment for one build (no side effects
    beyond reading files and git)."""
    dockerfile = dockerfile_for(context, target)
    if not dockerfile.is_file():
        raise ImageUsageError(f"no Dockerfile for target {target!r}: {dockerfile} is missing")
    content_args = {"BASE_IMAGE": base_image} if base_image else {}
    version = content_version(context, dockerfile, content_args, prefix=_project_version())
    if tag is None:
        tag = f"rlaunch-{target}:{version}"
    elif not IMAGE_REF_RE.fullmatch(tag):
        raise ImageUsageError(
            f"--tag {tag!r} is not an image reference ([registry/]name[:tag], lower-case name)"
        )
    elif ":" not in tag.rsplit("/", 1)[-1]:
        tag = f"{tag}:{version}"  # a bare repository gets the content version as its tag
    build_args = {**content_args, "VERSION": version,
                  "REVISION": revision if revision is not None else git_revision(context)}
    secrets = {"pip_ca": HOST_CA_BUNDLE} if HOST_CA_BUNDLE.is_file() else {}
    env = {}
    if builder == "buildah":
        env = {k: os.environ.get(k, v) for k, v in BUILDAH_DEFAULT_ENV.items()}
    elif builder == "docker":
        env = {"DOCKER_BUILDKIT": "1"}  # RUN --mount needs BuildKit
    pull_never = bool(base_image and base_image.startswith("localhost/"))
    return BuildPlan(builder, target, tag, context, dockerfile, build_args, secrets, env,
                     pull_never)


def _project_version() -> str:
    try:
        from importlib.metadata import version

        return version("rlaunch")
    except Exception:  # noqa: BLE001 - an uninstalled checkout still builds
        return "0"


@dataclass
class BuildOutcome:
    """What a builder run left behind: exit code, the step it was on, and step durations."""

    returncode: int
    last_step: str | None
    step_seconds: list[tuple[float, str]]

    def slowest(self, n: int = 5) -> list[tuple[float, str]]:
        return sorted(self.step_seconds, reverse=True)[:n]


def stream_build(argv: list[str], env: Mapping[str, str],
                 clock: Callable[[], float] = time.monotonic) -> BuildOutcome:
    """Run the builder, echoing its output live to stderr (stdout is kept for the tag), and
    note when each step starts so the failing one and the slow ones can be named."""
    last_step = None
    started = clock()
    timings: list[tuple[float, str]] = []
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, **env}, text=True, errors="replace", bufsize=1,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stderr.write(line)
        sys.stderr.flush()
        stripped = line.rstrip("\n")
        if _STEP_LINE.fullmatch(stripped):
            now = clock()
            if last_step is not None:
                timings.append((now - started, last_step))
            last_step, started = stripped, now
    code = proc.wait()
    if last_step is not None:
        timings.append((clock() - started, last_step))  # the last step includes the commit
    return BuildOutcome(code, last_step, timings)
