"""`rlaunch build`: build the training/serving images in docker/ with whichever builder works.

The tag defaults to a version derived from the build context's content (the files the
.dockerignore lets through, the Dockerfile and the base image), so a job that names an image
names exactly the code it ran. Docker, podman and buildah take the same Dockerfiles; buildah
needs no daemon, which is how the CPU image is built in this project's tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import click

TARGETS = ("ascend", "gpu", "cpu")
BUILDERS = ("auto", "docker", "podman", "buildah")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# A TLS-intercepting proxy's CA must reach pip inside the build without landing in a layer.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# buildah without a daemon or kernel overlay support: plain copies and chroot isolation.
BUILDAH_DEFAULT_ENV = {"STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
# One image reference: [registry[:port]/]path[:tag], lower-case path components.
_IMAGE_REF = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"
)
# Where a builder announces a step: buildah/podman "[2/3] STEP 3/9: RUN ..." (stage prefix only
# in multi-stage builds),
# docker BuildKit "#7 [builder 3/6] RUN ...", the classic docker builder "Step 3/9 : RUN ...".
_STEP_LINE = re.compile(r"^(?:(?:\[\d+/\d+\] )?STEP \d+/\d+: .*|#\d+ \[[^\]]*\d+/\d+\] .*|Step \d+/\d+ : .*)$")

Runner = Callable[..., subprocess.CompletedProcess]


# ---- build context -------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnoreRule:
    """One .dockerignore line: a path pattern, `!` re-includes."""

    pattern: str
    negated: bool
    regex: re.Pattern[str]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's matching: `*` and `?` stay inside one path component, `**` crosses them."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c)))
        i += 1
    return re.compile("".join(out) + r"\Z")


def read_dockerignore(context: Path) -> list[IgnoreRule]:
    """Parse CONTEXT/.dockerignore (absent: nothing is ignored)."""
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if negated else line).lstrip("/")
        rules.append(IgnoreRule(pattern, negated, _pattern_regex(pattern)))
    return rules


def is_ignored(relpath: str, rules: Iterable[IgnoreRule]) -> bool:
    """A path is ignored if the last rule matching it (or a folder above it) excludes it."""
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for rule in rules:
        if any(rule.regex.match(p) for p in prefixes):
            ignored = not rule.negated
    return ignored


def _may_reinclude(dir_relpath: str, rules: list[IgnoreRule]) -> bool:
    """Whether some `!` rule could bring back a path under an ignored folder (else prune it)."""
    for rule in rules:
        if not rule.negated:
            continue
        literal = re.split(r"[*?\[]", rule.pattern, maxsplit=1)[0]
        if literal.startswith(dir_relpath + "/") or dir_relpath.startswith(literal.rstrip("/")):
            return True
        if not literal or rule.pattern.startswith("**"):
            return True
    return False


def context_files(context: Path) -> list[str]:
    """Relative paths (sorted, '/'-separated) of the files the builder would receive."""
    rules = read_dockerignore(context)
    found = []
    for dirpath, dirnames, filenames in os.walk(context):
        rel_dir = os.path.relpath(dirpath, context)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        kept = []
        for name in sorted(dirnames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if not is_ignored(rel, rules) or _may_reinclude(rel, rules):
                kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if not is_ignored(rel, rules):
                found.append(rel)
    return sorted(found)


def content_version(
    context: Path, dockerfile: Path, build_args: Mapping[str, str], prefix: str = ""
) -> str:
    """`<prefix>-<12 hex>` over the context files, the Dockerfile and the build arguments."""
    digest = hashlib.sha256()
    for rel in context_files(context):
        digest.update(rel.encode() + b"\0")
        digest.update(hashlib.sha256((context / rel).read_bytes()).digest())
    digest.update(b"dockerfile\0" + dockerfile.read_bytes())
    digest.update(json.dumps(dict(sorted(build_args.items()))).encode())
    short = digest.hexdigest()[:12]
    return f"{prefix}-{short}" if prefix else short


def dockerfile_for(context: Path, target: str) -> Path:
    return context / "docker" / f"{target}.Dockerfile"


def copy_sources(dockerfile: Path) -> list[str]:
    """The context paths that COPY/ADD lines (not `--from=` another stage) read."""
    sources = []
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for line in text.splitlines():
        words = line.strip().split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]) or len(args) < 2:
            continue
        sources.extend(args[:-1])
    return sources


def missing_from_context(context: Path, target: str) -> list[str]:
    """COPY sources of a target's Dockerfile that the context lacks or .dockerignore drops."""
    rules = read_dockerignore(context)
    missing = []
    for src in copy_sources(dockerfile_for(context, target)):
        rel = os.path.normpath(src).lstrip("/")
        path = context / rel
        files = context_files(context)
        usable = path.exists() and not is_ignored(rel, rules)
        if not usable or not any(f == rel or f.startswith(rel + "/") for f in files):
            missing.append(src)
    return missing


def git_revision(context: Path) -> str:
    """The commit the context comes from, `-dirty` when the image's files differ from it."""
    try:
        rev = subprocess.run(
            ["git", "-C", str(context), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()
        tops = sorted({f.split("/")[0] for f in context_files(context)})
        dirty = subprocess.run(
            ["git", "-C", str(context), "status", "--porcelain", "--", *tops],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else rev


# ---- builders ------------------------------------------------------------------------------


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
    raise click.ClickException(
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


def _has_registry(tag: str) -> bool:
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
        raise click.ClickException(f"no Dockerfile for target {target!r}: {dockerfile} is missing")
    content_args = {"BASE_IMAGE": base_image} if base_image else {}
    version = content_version(context, dockerfile, content_args, prefix=_project_version())
    if tag is None:
        tag = f"rlaunch-{target}:{version}"
    elif not _IMAGE_REF.match(tag):
        raise click.BadParameter(
            f"{tag!r} is not an image reference ([registry/]name[:tag], lower-case name)",
            param_hint="--tag",
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
        if _STEP_LINE.match(stripped):
            now = clock()
            if last_step is not None:
                timings.append((now - started, last_step))
            last_step, started = stripped, now
    code = proc.wait()
    if last_step is not None:
        timings.append((clock() - started, last_step))  # the last step includes the commit
    return BuildOutcome(code, last_step, timings)


# ---- local base image (no registry reachable) ----------------------------------------------

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"


def cache_dir() -> Path:
    """RLAUNCH_CACHE_DIR, else /var/cache/rlaunch for root, else $XDG_CACHE_HOME/rlaunch."""
    if os.environ.get("RLAUNCH_CACHE_DIR"):
        return Path(os.environ["RLAUNCH_CACHE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/cache/rlaunch")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "rlaunch"


def local_base_name(suite: str = DEBIAN_SUITE, mirror: str = DEBIAN_MIRROR) -> str:
    """Image name keyed by the recipe, so a changed recipe never reuses a stale base."""
    recipe = {"tool": "debootstrap", "variant": "minbase", "suite": suite, "mirror": mirror,
              "arch": os.uname().machine, "recipe": 1}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return f"localhost/rlaunch-base:debian-{suite}-minbase-{key}"


def _image_exists(builder: str, name: str, env: Mapping[str, str]) -> bool:
    argv = ([builder, "image", "inspect", name] if builder in ("docker", "podman")
            else ["buildah", "inspect", "--type", "image", name])
    done = subprocess.run(argv, check=False, capture_output=True, env={**os.environ, **env})
    return done.returncode == 0


def ensure_local_base(builder: str, log: Callable[[str], None] = click.echo) -> str:
    """A Debian bookworm minbase image made with debootstrap, cached in the builder's storage
    and as a rootfs tarball under cache_dir(); returns its name. Needs root (debootstrap)."""
    name = local_base_name()
    env = ({k: os.environ.get(k, v) for k, v in BUILDAH_DEFAULT_ENV.items()}
           if builder == "buildah" else {})
    if _image_exists(builder, name, env):
        log(f"local base: {name} (cached)")
        return name
    tarball = cache_dir() / f"{name.split(':', 1)[1]}.tar"
    if not tarball.is_file():
        if shutil.which("debootstrap") is None:
            raise click.ClickException("--local-base needs debootstrap (apt-get install debootstrap)")
        tarball.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tarball.parent) as tmp:
            rootfs = Path(tmp) / "rootfs"
            log(f"local base: debootstrap --variant=minbase {DEBIAN_SUITE} (about a minute)")
            _check_run(["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs),
                        DEBIAN_MIRROR], "debootstrap")
            partial = Path(tmp) / "rootfs.tar"
            _check_run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
                       "tar")
            partial.replace(tarball)
    log(f"local base: importing {tarball} as {name}")
    if builder == "buildah":
        full_env = {**os.environ, **env}
        ctr = subprocess.run(["buildah", "from", "scratch"], capture_output=True, text=True,
                             env=full_env, check=True).stdout.strip()
        try:
            _check_run(["buildah", "add", ctr, str(tarball), "/"], "buildah add", full_env)
            _check_run(["buildah", "config", "--cmd", "/bin/bash", ctr], "buildah config",
                       full_env)
            _check_run(["buildah", "commit", "--rm", ctr, name], "buildah commit", full_env)
        except click.ClickException:
            subprocess.run(["buildah", "rm", ctr], check=False, capture_output=True,
                           env=full_env)
            raise
    else:
        _check_run([builder, "import", str(tarball), name], f"{builder} import")
    return name


def _check_run(argv: list[str], what: str, env: Mapping[str, str] | None = None) -> None:
    done = subprocess.run(argv, check=False, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise click.ClickException(f"{what} failed (exit {done.returncode}):\n{tail}")


# ---- the command ---------------------------------------------------------------------------


@click.command("build")
@click.option("--target", required=True, type=click.Choice(TARGETS),
              help="Which image: ascend (910/310), gpu (CUDA) or cpu (also the serving base).")
@click.option("--tag", default=None,
              help="Image reference. Default rlaunch-<target>:<content version>; a reference "
                   "without ':tag' gets the content version appended.")
@click.option("--builder", default="auto", show_default=True, type=click.Choice(BUILDERS),
              help="auto: a Docker daemon if reachable, else podman, else buildah.")
@click.option("--base-image", default=None,
              help="Override the Dockerfile's BASE_IMAGE (e.g. a mirror of the public default).")
@click.option("--local-base", is_flag=True,
              help="cpu only: build on a Debian bookworm base made here with debootstrap "
                   "(cached), for machines that cannot pull from a registry.")
@click.option("--context", "context", type=click.Path(file_okay=False, path_type=Path),
              default=PROJECT_ROOT, show_default="the rlaunch checkout",
              help="Build context holding docker/ and .dockerignore.")
@click.option("--push", is_flag=True, help="Push the tag after a successful build.")
@click.option("--dry-run", is_flag=True, help="Print the build (and push) command; run nothing.")
def build(target: str, tag: str | None, builder: str, base_image: str | None, local_base: bool,
          context: Path, push: bool, dry_run: bool) -> None:
    """Build a training/serving image from docker/<target>.Dockerfile."""
    if local_base and target != "cpu":
        raise click.BadParameter(
            f"--local-base makes a Debian base, which fits only --target cpu (got {target!r})",
            param_hint="--local-base")
    if local_base and base_image:
        raise click.BadParameter("give either --base-image or --local-base, not both",
                                 param_hint="--base-image")
    context = context.resolve()
    chosen = detect_builder() if builder == "auto" else builder
    if local_base:
        base_image = (local_base_name() if dry_run
                      else ensure_local_base(chosen, log=lambda m: click.echo(m, err=True)))
    plan = plan_build(target, chosen, context, tag=tag, base_image=base_image)
    if push and not _has_registry(plan.tag):
        raise click.BadParameter(
            f"--push needs a tag that names a registry (host/name:tag), got {plan.tag!r}",
            param_hint="--tag")
    if dry_run:
        click.echo(plan.shell_line(plan.command()))
        if push:
            click.echo(plan.shell_line(plan.push_command()))
        return
    click.echo(f"building {plan.tag} with {chosen}: {plan.shell_line(plan.command())}", err=True)
    outcome = stream_build(plan.command(), plan.env)
    if outcome.returncode != 0:
        where = f" at {outcome.last_step}" if outcome.last_step else " before its first step"
        raise click.ClickException(
            f"build of {plan.tag} failed (exit {outcome.returncode}){where}")
    click.echo("slowest steps: " + "; ".join(
        f"{seconds:.0f}s {step[:70]}" for seconds, step in outcome.slowest(3)), err=True)
    if push:
        pushed = stream_build(plan.push_command(), plan.env)
        if pushed.returncode != 0:
            raise click.ClickException(f"push of {plan.tag} failed (exit {pushed.returncode})")
    click.echo(plan.tag)
