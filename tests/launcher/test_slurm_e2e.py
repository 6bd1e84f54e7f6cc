"""End to end on a real one-node Slurm (scripts/slurm_cluster.sh): 8 ranks of real training.

One job covers the whole story: it is submitted with `--gpus 8` (GPUs declared for scheduling
only; the ranks train on CPU), preempted mid-run the way the time limit does it (USR1 to the batch
shell), saves, requeues itself, resumes from its checkpoint, finishes; then logs show all 8 ranks
and gather reports the allreduced accuracy. Its output dir has shell metacharacters in its name.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import TINY_TRAIN_SETS, rlaunch, step_events, wait_for

pytestmark = pytest.mark.integration

# Tiny training steps take milliseconds, so a job can finish before a test's signal lands:
# the training's fault-injection knob makes every checkpoint write last 3 s (the signal is
# still handled between steps, as in a real run).
SLOW_CHECKPOINTS = ("--env", "RESNEST_FAULT_CKPT_WRITE_DELAY_S=3")



def scontrol_job(slurm_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True,
                         text=True, check=True).stdout
    return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)


def job_status(job_id: str, env: dict[str, str]) -> dict:
    return json.loads(rlaunch("status", job_id, "--json", env=env).stdout)



@pytest.mark.timeout(900)
def test_slurm_gpus8_preempted_requeued_resumes_and_finishes(
    slurm_cluster: str, synthetic_data: Path, tmp_path: Path, state_dir: Path
) -> None:
    env = {"RLAUNCH_STATE_DIR": str(state_dir)}
    output_dir = tmp_path / "out $(touch PWNED); 'q'"
    # 32 images / 8 ranks / batch 1 = 4 steps per epoch, 2 epochs.
    sets = [*TINY_TRAIN_SETS, "batch_size=1", "epochs=2"]
    submitted = rlaunch(
        "submit", "--backend", "slurm", "--gpus", "8", "--name", "e2e-requeue",
        "--data-dir", str(synthetic_data), "--output-dir", str(output_dir),
        "--max-restarts", "2", *[a for s in sets for a in ("--set", s)], *SLOW_CHECKPOINTS,
        # the cluster's GPUs are empty files: the ranks opt in to training on CPU instead
        "--env", "RESNEST_CPU_STANDS_IN_FOR_DEVICES=1",
        env=env,
    )
    job_id = submitted.stdout.strip().splitlines()[-1]
    record = json.loads((state_dir / "jobs" / job_id / "record.json").read_text())
    slurm_id = record["backend_id"]
    assert "gpu:8" in scontrol_job(slurm_id)["TresPerNode"]

    # Preempt once training has stepped: USR1 to the batch shell is what --signal=B:USR1@T sends.
    wait_for(lambda: step_events(output_dir), 600, "the first training step")
    subprocess.run(["scancel", "--signal=USR1", "--batch", slurm_id], check=True)
    wait_for(lambda: int(scontrol_job(slurm_id).get("Restarts", "0")) >= 1, 300,
             "the job to requeue itself")
    # Slurm holds a requeued job ~2 minutes (BeginTime); a real cluster just waits, we don't.
    # But not within the requeue's own second: slurmd revokes the old run's credential with
    # 1 s resolution and kills a start in that second ("Job credential revoked", exit 1).
    wait_for(lambda: scontrol_job(slurm_id)["JobState"] == "PENDING", 60, "the requeued job")
    time.sleep(2)
    wait_for(lambda: subprocess.run(["scontrol", "update", f"jobid={slurm_id}", "starttime=now"],
                                    capture_output=True, check=False).returncode == 0
             or scontrol_job(slurm_id)["JobState"] != "PENDING", 60, "scontrol update")
    final = wait_for(lambda: (s := job_status(job_id, env))["state"] in
                     ("COMPLETED", "FAILED", "CANCELLED") and s, 700, "the job to finish")
    assert final["state"] == "COMPLETED", final
    assert final["restarts"] == 1

    logs = rlaunch("logs", job_id, env=env).stdout
    for rank in range(8):
        assert f"[rank {rank}] " in logs
    assert "stopping on SIGUSR1" in logs
    assert "resumed from" in logs
    assert (state_dir / "jobs" / job_id / "logs" / "restart-1" / "worker_7.log").is_file()
    rank3 = rlaunch("logs", job_id, "--rank", "3", env=env).stdout.splitlines()
    assert rank3 and all(line.startswith("[rank 3] ") for line in rank3)

    dest = tmp_path / "gathered"
    gathered = rlaunch("gather", job_id, "--dest", str(dest), env=env).stdout
    assert "allreduced accuracy: top-1" in gathered
    summary = json.loads((dest / "summary.json").read_text())
    assert summary["final"]["total"] == 12  # the whole (odd-sized) val set, counted once
    assert (dest / "checkpoints" / "last.ckpt").is_file() and (dest / "curves.png").is_file()
    assert (dest / "logs" / "restart-0" / "worker_0.log").is_file()
    assert not list(tmp_path.rglob("PWNED")) and not list(Path.cwd().glob("PWNED"))


@pytest.mark.timeout(300)
def test_slurm_cancel(slurm_cluster: str, synthetic_data: Path, tmp_path: Path,
                      state_dir: Path) -> None:
    env = {"RLAUNCH_STATE_DIR": str(state_dir)}
    job_id = rlaunch(
        "submit", "--backend", "slurm", "--cpus", "2", "--name", "e2e-cancel",
        "--data-dir", str(synthetic_data), "--output-dir", str(tmp_path / "out"),
        *[a for s in TINY_TRAIN_SETS for a in ("--set", s)], env=env,
    ).stdout.strip().splitlines()[-1]
    wait_for(lambda: job_status(job_id, env)["state"] == "RUNNING", 120, "RUNNING")
    rlaunch("cancel", job_id, env=env)
    wait_for(lambda: job_status(job_id, env)["state"] == "CANCELLED", 120, "CANCELLED")
    listed = json.loads(rlaunch("list", "--json", env=env).stdout)
    assert [r["last_state"] for r in listed if r["id"] == job_id] == ["CANCELLED"]
    # cancelling a finished job is not an error
    rlaunch("cancel", job_id, env=env)
