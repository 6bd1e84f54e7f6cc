"""The device handshake: RLAUNCH_DEVICE_KIND picks the device; absent or contradicting is clear."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from resnest.contract import DEVICE_KIND_ENV
from resnest.distributed import DeviceRequestError, requested_device_target
from tests.train.conftest import REPO_ROOT, run_env


@pytest.mark.parametrize(
    ("kind", "config_target", "expected"),
    [("", "auto", "auto"), ("", "GPU", "GPU"), ("cpu", "auto", "CPU"), ("gpu", "auto", "GPU"),
     ("ascend", "Ascend", "Ascend"), ("cpu", "CPU", "CPU")],
)
def test_kind_from_the_launcher_wins_over_auto(kind: str, config_target: str, expected: str) -> None:
    env = {DEVICE_KIND_ENV: kind} if kind else {}
    assert requested_device_target(config_target, env) == expected


@pytest.mark.parametrize(
    ("kind", "config_target", "message"),
    [("tpu", "auto", "RLAUNCH_DEVICE_KIND='tpu': allowed values are gpu, ascend, cpu"),
     ("GPU", "auto", "RLAUNCH_DEVICE_KIND='GPU'"),
     ("cpu", "GPU", "device_target=GPU contradicts the job's device kind cpu")],
)
def test_bad_or_contradicting_request(kind: str, config_target: str, message: str) -> None:
    with pytest.raises(DeviceRequestError, match=message):
        requested_device_target(config_target, {DEVICE_KIND_ENV: kind})


def _train(tmp_path: Path, kind: str, *sets: str) -> subprocess.CompletedProcess:
    from resnest.data.synthetic import generate

    data = tmp_path / "data"
    if not data.exists():
        generate(data, 2, 4, 2, image_size=40, seed=0)
    args = [sys.executable, str(REPO_ROOT / "resnest" / "train.py"), "--data-dir", str(data),
            "--output-dir", str(tmp_path / "out"), "--set", "num_classes=2",
            "--set", "net_name=resnest14d", "--set", "crop_size=32", "--set", "batch_size=2"]
    for item in sets:
        args += ["--set", item]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False,
                          env={**run_env(), DEVICE_KIND_ENV: kind})


@pytest.mark.parametrize(
    ("kind", "sets", "code", "message"),
    [("gpu", (), 1, ("error: device GPU (asked for by RLAUNCH_DEVICE_KIND) is not available "
      "here: this MindSpore build or node has no GPU backend")),
     ("ascend", (), 1, "error: device Ascend (asked for by RLAUNCH_DEVICE_KIND) is not available"),
     ("quantum", (), 2, "error: RLAUNCH_DEVICE_KIND='quantum': allowed values are gpu, ascend, cpu"),
     ("cpu", ("device_target=Ascend",), 2, "error: device_target=Ascend contradicts")],
)
def test_trainer_fails_in_one_line_when_the_device_is_not_there(
        tmp_path: Path, kind: str, sets: tuple[str, ...], code: int, message: str) -> None:
    proc = _train(tmp_path, kind, *sets)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written before the device is known
