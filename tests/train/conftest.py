"""Shared fixtures for the real (integration) training tests: a tiny learnable data set and
the command lines that run resnest14d on 32 px crops, small enough for 2 shared CPU cores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent  # msrun lives next to the interpreter running the tests

NUM_CLASSES = 5
TRAIN_PER_CLASS = 24
VAL_PER_CLASS = 7  # 35 val images: odd, and not a multiple of the batch or of the world size

TINY_SETTINGS = {
    "net_name": "resnest14d",
    "num_classes": NUM_CLASSES,
    "crop_size": 32,
    "batch_size": 8,
    "test_batch_size": 8,
    "autoaugment": "off",
    "num_workers": 1,
    "warmup_epochs": 1,
    "lr": 0.01,  # per rank; x2 under 2-rank msrun (scale_lr_by_world_size)
    "weight_decay": 0.0001,
    "log_every_steps": 1,
}


def set_args(**extra: object) -> list[str]:
    """`--set k=v` arguments for the tiny run, with `extra` overriding."""
    args: list[str] = []
    for key, value in {**TINY_SETTINGS, **extra}.items():
        args += ["--set", f"{key}={value}"]
    return args


def run_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env["GLOG_v"] = "3"  # MindSpore: errors only, keeps the logs readable
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_checked(cmd: list[str], timeout: float, **kwargs: object) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=run_env(), capture_output=True, text=True,
                            timeout=timeout, check=False, **kwargs)
    assert result.returncode == 0, f"{cmd} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from resnest.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic")
    generate(root, NUM_CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS, image_size=40, seed=0)
    return root


@pytest.fixture
def timm14d_state() -> dict:
    """timm-named synthetic resnest14d weights, 1000 classes (tests/models' recorded fixture)."""
    from tests.models.conftest import TIMM_FIXTURE
    from tests.models.synthetic_weights import synthetic_state_dict

    fixture = json.loads(TIMM_FIXTURE.read_text())
    return synthetic_state_dict(fixture["seed"], fixture["tensors"])
