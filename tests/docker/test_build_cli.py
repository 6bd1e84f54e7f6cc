"""`rlaunch build` without a real build: commands, tags, builder choice, failure reports."""

from __future__ import annotations

import ast
import shlex
import shutil
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import cli
from launcher.commands.build import build
from launcher.images import PROJECT_ROOT, base_image, builders
from launcher.images.builders import plan_build
from launcher.images.context import content_version, context_files

# Imported by resnest/ but deliberately not in the images: the PyTorch weight converter reads
# .pth files on a workstation; the images only need the converted safetensors. scikit-learn is
# imported lazily by resnest/data/digits.py (train branch) to write a small real image set for
# tests and demos on a workstation, not by anything a job runs.
OPTIONAL_IMPORTS = {"torch", "sklearn"}


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture()
def small_context(tmp_path: Path) -> Path:
    """A copy of the build context (plus a tests/ folder the .dockerignore must drop)."""
    ctx = tmp_path / "ctx"
    for rel in context_files(PROJECT_ROOT):
        dst = ctx / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / rel, dst)
    shutil.copy2(PROJECT_ROOT / ".dockerignore", ctx / ".dockerignore")
    for target in ("cpu", "gpu", "ascend"):
        shutil.copy2(PROJECT_ROOT / "docker" / f"{target}.Dockerfile", ctx / "docker")
    (ctx / "tests").mkdir()
    (ctx / "tests" / "test_x.py").write_text("x = 1\n")
    return ctx


def test_help(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["build", "--help"])
    assert result.exit_code == 0
    for option in ("--target", "--tag", "--builder", "--push", "--dry-run", "--local-base"):
        assert option in result.output


def test_dry_run_prints_the_buildah_command(runner: CliRunner, small_context: Path) -> None:
    result = runner.invoke(build, ["--target", "cpu", "--builder", "buildah", "--dry-run",
                                   "--context", str(small_context)])
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert line.startswith("STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot buildah bud ")
    argv = shlex.split(line)[2:]
    version = content_version(small_context, small_context / "docker/cpu.Dockerfile", {},
                              prefix=builders._project_version())
    assert argv[argv.index("-t") + 1] == f"rlaunch-cpu:{version}"
    assert argv[argv.index("-f") + 1] == str(small_context / "docker" / "cpu.Dockerfile")
    assert f"VERSION={version}" in argv
    assert argv[-1] == str(small_context)
    assert "--pull=never" not in argv  # only for a local base


def test_dry_run_with_docker_and_push(runner: CliRunner, small_context: Path) -> None:
    result = runner.invoke(build, ["--target", "gpu", "--builder", "docker", "--dry-run",
                                   "--tag", "registry.example.com:5000/ml/rlaunch-gpu",
                                   "--push", "--context", str(small_context)])
    assert result.exit_code == 0, result.output
    build_line, push_line = result.output.strip().splitlines()
    assert build_line.startswith("DOCKER_BUILDKIT=1 docker build --progress=plain ")
    tag = shlex.split(build_line)[shlex.split(build_line).index("-t") + 1]
    # A repository without a tag gets the content version, so the job names what it ran.
    assert tag.startswith("registry.example.com:5000/ml/rlaunch-gpu:0.")
    assert push_line == f"DOCKER_BUILDKIT=1 docker push {tag}"


def test_local_base_dry_run_uses_the_cached_base_name(runner: CliRunner) -> None:
    result = runner.invoke(build, ["--target", "cpu", "--builder", "buildah", "--local-base",
                                   "--dry-run"])
    assert result.exit_code == 0, result.output
    argv = shlex.split(result.output)
    assert f"BASE_IMAGE={base_image.local_base_name()}" in argv
    assert "--pull=never" in argv


def test_content_version_follows_what_reaches_the_image(small_context: Path) -> None:
    dockerfile = small_context / "docker" / "cpu.Dockerfile"
    before = content_version(small_context, dockerfile, {})
    (small_context / "tests" / "test_x.py").write_text("x = 2\n")  # ignored by .dockerignore
    (small_context / "resnest" / "__pycache__").mkdir(exist_ok=True)
    (small_context / "resnest" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    assert content_version(small_context, dockerfile, {}) == before
    (small_context / "resnest" / "train.py").write_text("# changed\n")
    changed = content_version(small_context, dockerfile, {})
    assert changed != before
    assert content_version(small_context, dockerfile, {"BASE_IMAGE": "x"}) != changed


def test_hostile_values_stay_single_arguments(small_context: Path) -> None:
    plan = plan_build("cpu", "podman", small_context, tag="reg.io/a/b:c",
                      base_image="reg.io/base:1; rm -rf /", revision="abc")
    argv = shlex.split(plan.shell_line(plan.command()))
    assert "BASE_IMAGE=reg.io/base:1; rm -rf /" in argv


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "tpu"], "'tpu' is not one of 'ascend', 'gpu', 'cpu'"),
        (["--target", "cpu", "--builder", "kaniko"], "'kaniko' is not one of"),
        (["--target", "cpu", "--tag", "Bad Tag!"], "'Bad Tag!' is not an image reference"),
        (["--target", "cpu", "--tag", "rlaunch-cpu:x\n"], "'rlaunch-cpu:x\\n' is not an image reference"),
        (["--target", "cpu", "--tag", "rlaunch-cpu:x", "--push"],
         "--push needs a tag that names a registry"),
        (["--target", "gpu", "--local-base"], "fits only --target cpu (got 'gpu')"),
    ],
)
def test_bad_input_is_one_clear_line(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(build, [*args, "--builder", "buildah", "--dry-run"]
                           if "--builder" not in args else [*args, "--dry-run"])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_auto_prefers_docker_then_podman_then_buildah(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(available: set[str]):
        monkeypatch.setattr(builders.shutil, "which",
                            lambda name: f"/usr/bin/{name}" if name in available else None)
        return lambda argv, **_: subprocess.CompletedProcess(argv, 0)

    assert builders.detect_builder(fake({"docker", "podman", "buildah"})) == "docker"
    assert builders.detect_builder(fake({"podman", "buildah"})) == "podman"
    assert builders.detect_builder(fake({"buildah"})) == "buildah"
    # a docker client without a daemon (this machine) does not count
    fake({"docker", "buildah"})
    no_daemon = (lambda argv, **_: subprocess.CompletedProcess(argv, 1 if argv[0] == "docker"
                                                                else 0))
    assert builders.detect_builder(no_daemon) == "buildah"
    fake(set())
    with pytest.raises(Exception, match="no image builder works here"):
        builders.detect_builder(no_daemon)


def test_failed_build_names_the_failing_step(tmp_path: Path, small_context: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              runner: CliRunner) -> None:
    """A stand-in buildah that prints real buildah step lines, then fails like a RUN would."""
    fake = tmp_path / "bin" / "buildah"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        "echo '[1/3] STEP 1/2: FROM debian AS runtime'\n"
        "echo '[1/3] STEP 2/2: RUN apt-get install -y python3'\n"
        "echo 'E: Unable to locate package python3'\n"
        "echo 'error building at STEP \"RUN apt-get\": exit status 100' >&2\n"
        "exit 100\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    result = runner.invoke(build, ["--target", "cpu", "--builder", "buildah",
                                   "--context", str(small_context)])
    assert result.exit_code == 1
    assert "E: Unable to locate package python3" in result.output  # progress is streamed
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: build of rlaunch-cpu:")
    assert last.endswith("failed (exit 100) at [1/3] STEP 2/2: RUN apt-get install -y python3")


def test_image_requirements_cover_every_import_of_resnest() -> None:
    """What the code imports must be installed in the images (they use --no-deps)."""
    pinned = set()
    for line in (PROJECT_ROOT / "docker" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            pinned.add(line.split("==")[0].lower().replace("_", "-"))
    imported = set()
    for path in (PROJECT_ROOT / "resnest").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    first_party = {"resnest"}
    third_party = imported - set(sys.stdlib_module_names) - first_party - OPTIONAL_IMPORTS
    dists = packages_distributions()
    missing = {}
    for module in sorted(third_party):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & pinned:
            missing[module] = sorted(names)
    assert missing == {}


def test_local_base_is_made_once_then_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Stand-in debootstrap and buildah record their calls; the second run must hit the cache."""
    bin_dir, calls, store = tmp_path / "bin", tmp_path / "calls.log", tmp_path / "images"
    bin_dir.mkdir()
    store.mkdir()
    (bin_dir / "debootstrap").write_text(
        f'#!/bin/sh\necho "debootstrap $*" >> {calls}\nmkdir -p "$3/etc"\n'
        f'echo bookworm > "$3/etc/debian_version"\n')
    (bin_dir / "buildah").write_text(
        "#!/bin/sh\n"
        f'echo "buildah $*" >> {calls}\n'
        'case "$1" in\n'
        f'  inspect) test -f "{store}/$(echo "$4" | tr / _)" ;;\n'
        "  from) echo ctr-1 ;;\n"
        f'  commit) touch "{store}/$(echo "$4" | tr / _)" ;;\n'
        "esac\n")
    for exe in bin_dir.iterdir():
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("RLAUNCH_CACHE_DIR", str(tmp_path / "cache"))

    name = base_image.ensure_local_base("buildah", log=print)
    assert name == base_image.local_base_name()
    first = calls.read_text().splitlines()
    assert sum(c.startswith("debootstrap --variant=minbase bookworm ") for c in first) == 1
    tarball = tmp_path / "cache" / f"{name.split(':', 1)[1]}.tar"
    assert tarball.is_file()
    assert f"buildah add ctr-1 {tarball} /" in first
    assert f"buildah commit --rm ctr-1 {name}" in first

    calls.write_text("")
    assert base_image.ensure_local_base("buildah", log=print) == name
    assert calls.read_text().splitlines() == [f"buildah inspect --type image {name}"]
    assert "(cached)" in capsys.readouterr().out
