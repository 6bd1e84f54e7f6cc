"""The Dockerfiles, .dockerignore and entrypoint, checked without building (fast)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.images import PROJECT_ROOT
from launcher.images.context import context_files
from launcher.images.targets import TARGETS, copy_sources, dockerfile_for, missing_from_context

HADOLINT = Path(sys.executable).parent / "hadolint"
ENTRYPOINT = PROJECT_ROOT / "docker" / "entrypoint.sh"


@pytest.mark.parametrize("target", TARGETS)
def test_hadolint_reports_nothing(target: str) -> None:
    done = subprocess.run(
        [str(HADOLINT), "--no-color", str(dockerfile_for(PROJECT_ROOT, target))],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_every_ignored_hadolint_rule_says_why(target: str) -> None:
    lines = dockerfile_for(PROJECT_ROOT, target).read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            start = i
            while start > 0 and lines[start - 1].startswith("#"):
                start -= 1
            explained = "\n".join(lines[start:i])  # the comment block right above the pragma
            for rule in line.split("ignore=", 1)[1].split(","):
                assert f"{rule.strip()} ignored" in explained, (target, i + 1, rule)


@pytest.mark.parametrize("target", TARGETS)
def test_build_context_holds_every_copy_source(target: str) -> None:
    """The ascend/gpu images cannot be built here, so this is what proves their context."""
    assert copy_sources(dockerfile_for(PROJECT_ROOT, target))  # the parser found the COPYs
    assert missing_from_context(PROJECT_ROOT, target) == []


@pytest.mark.parametrize("target", TARGETS)
def test_dockerfile_conventions(target: str) -> None:
    text = dockerfile_for(PROJECT_ROOT, target).read_text()
    first_from = text.index("\nFROM ")
    assert re.search(r"^ARG BASE_IMAGE=\S+", text[:first_from], re.MULTILINE), "BASE_IMAGE arg with default"
    assert "COPY --from=builder /opt/venv /opt/venv" in text  # multi-stage: pip stays behind
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert "apt-get install" not in final_stage and "pip install" not in final_stage
    for label in ("org.opencontainers.image.version=\"${VERSION}\"",
                  "org.opencontainers.image.revision=\"${REVISION}\""):
        assert label in final_stage
    users = re.findall(r"^USER (\S+)", final_stage, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["/usr/local/bin/rlaunch-entrypoint"]' in final_stage
    requirements = (PROJECT_ROOT / "docker" / "requirements.txt").read_text()
    assert "mindspore==2.10.0" in requirements
    assert "onnxruntime==" in requirements and "onnx==" in requirements  # the cpu serving engine


def test_dockerignore_keeps_the_context_small() -> None:
    files = context_files(PROJECT_ROOT)
    assert "pyproject.toml" in files and "docker/entrypoint.sh" in files
    assert any(f.startswith("resnest/models/") for f in files)
    for unwanted in (".venv/", ".git/", "tests/", "launcher/"):
        assert not any(f.startswith(unwanted) for f in files), unwanted
    assert not any("__pycache__" in f for f in files)


def _fake_python(tmp_path: Path) -> dict[str, str]:
    """A PATH whose `python` and `msrun` print their argv, to see what the entrypoint runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "msrun"):
        exe = bin_dir / name
        exe.write_text(f'#!/bin/sh\nprintf "{name}"; printf " [%s]" "$@"; echo\n')
        exe.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}


@pytest.mark.parametrize("command", ["train", "eval", "export", "serve"])
def test_entrypoint_runs_the_module_with_its_arguments(tmp_path: Path, command: str) -> None:
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), command, "--data-dir", "/d ir", "--set", "a=b;c"],
        env=_fake_python(tmp_path), capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"python [-m] [resnest.{command}] [--data-dir] [/d ir] [--set] [a=b;c]"
    )


def test_entrypoint_passes_msrun_through(tmp_path: Path) -> None:
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), "msrun", "--worker_num=2", "/opt/venv/resnest/train.py"],
        env=_fake_python(tmp_path), capture_output=True, text=True, check=False,
    )
    assert done.stdout.strip() == "msrun [--worker_num=2] [/opt/venv/resnest/train.py]"


def test_entrypoint_rejects_unknown_commands(tmp_path: Path) -> None:
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), "trian", "x"],
        env=_fake_python(tmp_path), capture_output=True, text=True, check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "rlaunch-entrypoint: unknown command 'trian' (allowed: train, eval, export, serve, msrun)"
    )
    assert done.stdout == ""


def test_entrypoint_is_executable_and_has_usage(tmp_path: Path) -> None:
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR
    done = subprocess.run(["sh", str(ENTRYPOINT)], env=_fake_python(tmp_path),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("usage: rlaunch-entrypoint")
