"""End to end on the local backend: real 2-rank msrun training on this machine (the README demo's
path), then logs, gather and cancel through the installed `rlaunch`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.backends.local import descendants

from .conftest import TINY_TRAIN_SETS, rlaunch
from .test_slurm_e2e import SLOW_CHECKPOINTS, job_status, step_events, wait_for

pytestmark = pytest.mark.integration


def submit_local(data: Path, output_dir: Path, name: str, env: dict[str, str],
                 *extra: str, options: tuple[str, ...] = ()) -> str:
    sets = [a for s in [*TINY_TRAIN_SETS, *extra] for a in ("--set", s)]
    result = rlaunch("submit", "--backend", "local", "--cpus", "2", "--name", name,
                     "--data-dir", str(data), "--output-dir", str(output_dir), *sets, *options,
                     env=env)
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.timeout(600)
def test_local_submit_follow_logs_gather(synthetic_data: Path, tmp_path: Path,
                                         state_dir: Path) -> None:
    env = {"RLAUNCH_STATE_DIR": str(state_dir)}
    job_id = submit_local(synthetic_data, tmp_path / "out", "local-e2e", env)
    followed = rlaunch("logs", "-f", job_id, env=env, timeout=540).stdout
    assert "[rank 0] " in followed and "[rank 1] " in followed
    assert "training finished" in followed
    assert "after allreduce eval: top1_correct=" in followed
    status = job_status(job_id, env)
    assert status["state"] == "COMPLETED" and status["exit_code"] == 0
    assert status["progress"]["epoch"] == 0 and status["progress"]["epochs_total"] == 1

    gathered = rlaunch("gather", job_id, "--dest", str(tmp_path / "g"), env=env).stdout
    assert "allreduced accuracy: top-1" in gathered
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["state"] == "COMPLETED" and summary["final"]["total"] == 12
    assert len(summary["epochs"]) == 1 and summary["epochs"][0]["top1"] is not None
    assert (tmp_path / "g" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "g" / "checkpoints" / "best.ckpt").is_file()
    listed = rlaunch("list", env=env).stdout
    assert job_id in listed and "COMPLETED" in listed


@pytest.mark.timeout(600)
def test_local_cancel_saves_and_stops_every_process(synthetic_data: Path, tmp_path: Path,
                                                    state_dir: Path) -> None:
    env = {"RLAUNCH_STATE_DIR": str(state_dir)}
    output_dir = tmp_path / "out"
    # Tiny steps take milliseconds: slow each epoch's checkpoint write so the job is surely
    # still running when cancelled.
    job_id = submit_local(synthetic_data, output_dir, "local-cancel", env, "batch_size=1",
                          "epochs=3", options=SLOW_CHECKPOINTS)
    pid = int((state_dir / "jobs" / job_id / "pid").read_text().split()[0])
    wait_for(lambda: step_events(output_dir), 400, "the first training step")
    rlaunch("cancel", job_id, env=env)
    assert job_status(job_id, env)["state"] == "CANCELLED"
    assert descendants(pid) == []
    logs = rlaunch("logs", job_id, env=env).stdout
    assert "stopping on SIGTERM" in logs
    assert (output_dir / "checkpoints" / "last.ckpt").is_file()
