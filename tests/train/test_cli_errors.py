"""Entry points: run as script paths, fail fast with one clear line and exit 2 on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.conftest import REPO_ROOT


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "resnest" / script), *args],
                          capture_output=True, text=True, timeout=60, check=False, cwd="/")


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("train.py", ["--data-dir", "/nonexistent", "--output-dir", "/tmp/x"], "has no train/ folder"),
        ("train.py", ["--data-dir", "/tmp", "--output-dir", "/tmp/x", "--set", "lr=abc"],
         "lr='abc': must be a finite number"),
        ("train.py", ["--data-dir", "/tmp", "--output-dir", "/tmp/x", "--set", "bogus=1"],
         "unknown config key 'bogus'"),
        ("eval.py", ["--data-dir", "/nonexistent", "--checkpoint", "/x.ckpt"], "has no val/ folder"),
        ("export.py", ["--checkpoint", "/x.ckpt", "--format", "PNG", "--out", "m"],
         "--format 'PNG': allowed values are MINDIR, ONNX, AIR"),
        ("export.py", ["--checkpoint", "/nonexistent.ckpt", "--format", "MINDIR", "--out", "m"],
         "is not a .ckpt file nor a run folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(script: str, args: list[str], message: str) -> None:
    result = run(script, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("script", ["train.py", "eval.py", "export.py"])
def test_help_works_from_any_folder_without_importing_mindspore(script: str) -> None:
    code = (f"import runpy, sys; sys.argv = ['{script}', '--help']\n"
            f"try:\n    runpy.run_path({str(REPO_ROOT / 'resnest' / script)!r}, run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "assert 'mindspore' not in sys.modules, 'mindspore imported by --help'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False, cwd="/")
    assert result.returncode == 0, result.stderr
    assert "--set KEY=VALUE" in result.stdout


def test_config_file_path_is_shipped() -> None:
    assert Path(REPO_ROOT / "resnest" / "configs" / "resnest50-imagenet.yaml").is_file()
