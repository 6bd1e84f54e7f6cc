"""Fixtures for the launcher tests: a private job store, a CliRunner, hostile strings, and for
integration tests a real one-node Slurm (scripts/slurm_cluster.sh) and a synthetic data set."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from resnest.contract import EVENT_STEP, metrics_file, read_events

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

# What submitit's tests feed through the whole path, plus command substitution and spaces.
HOSTILE = [
    "a'; touch PWNED; echo '",
    'a"=0"; touch PWNED',
    "$(touch PWNED)",
    "`touch PWNED`",
    "x; touch PWNED",
    "sp ace && touch PWNED",
    "new\nline",
]

# A tiny, fast training recipe for real runs on 2 shared cores.
TINY_TRAIN_SETS = [
    "net_name=resnest14d", "num_classes=4", "crop_size=32", "base_size=32", "batch_size=2",
    "test_batch_size=4", "epochs=1", "num_workers=1", "autoaugment=false", "log_every_steps=1",
    "warmup_epochs=0",
]


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private job store for the test (the CLI reads RLAUNCH_STATE_DIR)."""
    path = tmp_path / "state"
    monkeypatch.setenv("RLAUNCH_STATE_DIR", str(path))
    return path


@pytest.fixture
def runner(state_dir: Path) -> CliRunner:
    return CliRunner()


def rlaunch(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the installed `rlaunch` as a user would (a separate process)."""
    result = subprocess.run(
        [str(VENV_BIN / "rlaunch"), *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"rlaunch {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes x 8 train / 3 val JPEGs of 32 px: 32 train images, an odd 12-image val set."""
    return write_synthetic_data(tmp_path_factory.mktemp("data") / "syn set", val_per_class=3)


def write_synthetic_data(out: Path, val_per_class: int) -> Path:
    """4 classes x 8 train / `val_per_class` val JPEGs of 32 px in `out`."""
    subprocess.run(
        [sys.executable, "-m", "resnest.data.synthetic", str(out), "--classes", "4",
         "--train-per-class", "8", "--val-per-class", str(val_per_class), "--image-size", "32"],
        check=True, cwd=REPO, capture_output=True, timeout=300,
    )
    return out


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """Bring up the one-node Slurm (idempotent) and return the node name. Left running: other
    sessions and CI steps reuse it; `scripts/slurm_cluster.sh down` stops it."""
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm_cluster.sh"), "up"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, f"could not start Slurm:\n{result.stderr}"
    return subprocess.run(["hostname"], capture_output=True, text=True, check=True).stdout.strip()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 1.0) -> Any:
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def step_events(output_dir: Path) -> list[dict[str, Any]]:
    """Rank 0's training steps so far, from the contract's metrics file."""
    return [e for e in read_events(output_dir / metrics_file(0)) if e.get("event") == EVENT_STEP]
