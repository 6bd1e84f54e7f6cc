"""Preemption and crashes, for real: SIGTERM mid-epoch -> checkpoint + exit 75 -> resume;
kill -9 while a checkpoint is being written -> the previous checkpoint is the one resumed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resnest.checkpoint import WRITE_DELAY_ENV
from resnest.contract import REQUEUE_EXIT_CODE as EXIT_REQUEUE
from tests.train.conftest import REPO_ROOT, read_metrics, run_env, set_args

pytestmark = pytest.mark.integration


def start_training(data: Path, out: Path, env_extra: dict[str, str] | None = None,
                   **settings: object) -> subprocess.Popen:
    env = run_env()
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "resnest.train", "--data-dir", str(data), "--output-dir", str(out),
           *set_args(epochs=1, T_max=1, **settings)]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"training exited {proc.returncode} before {what}:\n{proc.stdout.read()[-4000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def steps_done(out: Path) -> list[dict]:
    path = out / "metrics" / "rank0.jsonl"
    return [e for e in read_metrics(path) if e["event"] == "step"] if path.exists() else []


def manifest(out: Path) -> dict:
    return json.loads((out / "checkpoints" / "manifest.json").read_text())


def test_sigterm_checkpoint_requeue_then_crash_during_write_then_resume(
        synthetic_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"

    # 1. SIGTERM in the middle of the epoch: checkpoint, exit 75
    proc = start_training(synthetic_data, out)
    wait_for(lambda: len(steps_done(out)) >= 2, proc, 300, "two training steps")
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == EXIT_REQUEUE, log[-3000:]
    assert "stopping on SIGTERM" in log
    saved = manifest(out)
    first = saved["checkpoints"][-1]
    steps_per_epoch = 5 * 24 // 8
    assert first["epoch"] == 0 and 2 <= first["step"] < steps_per_epoch
    assert first["global_step"] == steps_done(out)[-1]["global_step"] == first["step"]
    assert (out / "checkpoints" / first["file"]).exists()

    # 2. resume, and kill -9 while the next checkpoint is being written
    proc = start_training(synthetic_data, out, {WRITE_DELAY_ENV: "120"}, ckpt_every_steps=1)
    tmp_files = lambda: list((out / "checkpoints").glob(".*.ckpt.tmp*"))
    wait_for(lambda: bool(tmp_files()), proc, 300, "a checkpoint write to start")
    proc.kill()
    log = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGKILL
    assert f"resumed from {first['file']}: epoch 1 step {first['step']}" in log
    assert manifest(out)["last"] == first["file"]  # the half-written one was never published

    # 3. the next start resumes from the last complete checkpoint and finishes the epoch
    before = len(steps_done(out))
    proc = start_training(synthetic_data, out)
    log = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, log[-3000:]
    assert f"resumed from {first['file']}: epoch 1 step {first['step']}" in log
    resumed_steps = steps_done(out)[before:]
    assert resumed_steps[0]["step"] == first["step"] + 1
    assert resumed_steps[0]["global_step"] == first["global_step"] + 1
    assert resumed_steps[-1]["step"] == steps_per_epoch
    assert "after allreduce eval: top1_correct=" in log
    assert json.loads((out / "eval.json").read_text())["total"] == 35
    assert not tmp_files(), "stale temporary checkpoint left behind"
