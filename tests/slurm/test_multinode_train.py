"""Two nodes x two ranks on the real multi-node Slurm (one slurmd per network namespace).

One job tells the whole multi-node story: msrun on each node, ranks on rlnode1 reaching the
scheduler on rlnode0 over the veth network, real MindSpore collectives between the namespaces,
preempted mid-run the way the time limit does it (USR1 to the batch shell), requeued, resumed
from the checkpoint on both nodes, finished; evaluation allreduced over the 4 ranks; `logs` shows
every rank and the node it ran on; `gather` brings the outputs home.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.launcher.conftest import TINY_TRAIN_SETS, rlaunch, step_events

from .conftest import (
    NODES,
    job_status,
    scontrol_job,
    slurm_id_of,
    submit,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.integration

# Checkpoint writes last 3 s (the trainer's fault-injection knob) so the signal lands mid-run.
SLOW_CHECKPOINTS = ("--env", "RESNEST_FAULT_CKPT_WRITE_DELAY_S=3")



@pytest.mark.timeout(900)
def test_multinode_2x2_trains_requeues_resumes_on_both_nodes_and_gathers(
    multinode_cluster: dict[str, str], synthetic_data: Path, tmp_path: Path, state_dir: Path
) -> None:
    env = {**multinode_cluster, "RLAUNCH_STATE_DIR": str(state_dir)}
    output_dir = tmp_path / "out 2x2"
    # 32 images / 4 ranks / batch 2 = 4 steps per epoch, 2 epochs.
    sets = [*TINY_TRAIN_SETS, "epochs=2"]
    job_id = submit("--nodes", "2", "--cpus", "2", "--name", "multinode",
                    "--data-dir", str(synthetic_data), "--output-dir", str(output_dir),
                    "--max-restarts", "1", *[a for s in sets for a in ("--set", s)],
                    *SLOW_CHECKPOINTS, env=env)
    slurm_id = slurm_id_of(job_id, state_dir)
    shown = scontrol_job(slurm_id, env)
    assert shown["NumNodes"].split("-")[0] == "2" and shown["CPUs/Task"] == "2"

    wait_for(lambda: step_events(output_dir), 600, "the first training step")
    subprocess.run(["scancel", "--signal=USR1", "--batch", slurm_id], check=True,
                   env={**os.environ, **env})
    wait_for(lambda: int(scontrol_job(slurm_id, env).get("Restarts", "0")) >= 1, 300,
             "the job to requeue itself")
    # A requeued job waits ~2 min (BeginTime); start it now, but not within the requeue's own
    # second (slurmd revokes the old credential with 1 s resolution).
    wait_for(lambda: scontrol_job(slurm_id, env)["JobState"] == "PENDING", 60, "PENDING")
    time.sleep(2)
    wait_for(lambda: subprocess.run(["scontrol", "update", f"jobid={slurm_id}", "starttime=now"],
                                    capture_output=True, check=False,
                                    env={**os.environ, **env}).returncode == 0
             or scontrol_job(slurm_id, env)["JobState"] != "PENDING", 60, "scontrol update")
    final = wait_finished(job_id, env, 700)
    assert final["state"] == "COMPLETED", final
    assert final["restarts"] == 1

    logs = rlaunch("logs", job_id, env=env).stdout
    for rank in range(4):
        assert f"[rank {rank}] " in logs
    # The node of every rank, from each node's own msrun task (both runs).
    for node_rank, node in enumerate(NODES):
        first = node_rank * 2
        assert re.search(rf"\[job\] rlaunch: node {node} \(node rank {node_rank}\) runs ranks "
                         rf"{first}-{first + 1} on CPUs 0-1", logs), logs[-3000:]
    # Resumed from the checkpoint on both nodes: every rank of the second run says so.
    job_logs = state_dir / "jobs" / job_id / "logs"
    for rank in range(4):
        assert "stopping on" in (job_logs / "restart-0" / f"worker_{rank}.log").read_text()
        assert "resumed from" in (job_logs / "restart-1" / f"worker_{rank}.log").read_text()
    rank2 = rlaunch("logs", job_id, "--rank", "2", env=env).stdout.splitlines()
    assert rank2 and all(line.startswith("[rank 2] ") for line in rank2)

    # Evaluation allreduced over the 4 ranks: the whole (odd-sized) val set, counted once.
    dest = tmp_path / "gathered"
    gathered = rlaunch("gather", job_id, "--dest", str(dest), env=env).stdout
    assert "allreduced accuracy: top-1" in gathered
    summary = json.loads((dest / "summary.json").read_text())
    assert summary["final"]["total"] == 12
    assert (dest / "checkpoints" / "last.ckpt").is_file()
    assert (dest / "logs" / "restart-1" / "worker_3.log").is_file()
    assert job_status(job_id, env)["state"] == "COMPLETED"
