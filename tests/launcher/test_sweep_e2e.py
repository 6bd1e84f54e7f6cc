"""Sweeps end to end with real training: a three-trial learning-rate sweep on this machine and as
one job array on the real test Slurm, ranked and plotted by `gather`; `cancel` stops a running
sweep in one call; one preempted array task requeues and resumes alone. Through the installed
`rlaunch`, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from launcher.backends.local import descendants, process_alive

from .conftest import TINY_TRAIN_SETS, rlaunch, step_events, wait_for
from .test_slurm_e2e import SLOW_CHECKPOINTS, scontrol_job

pytestmark = pytest.mark.integration

LEARNING_RATES = "lr=0.01,0.05,0.2"


def sweep(backend: str, data: Path, output_dir: Path, env: dict[str, str], *extra: str) -> str:
    sets = [a for s in TINY_TRAIN_SETS for a in ("--set", s)]
    result = rlaunch("sweep", "--backend", backend, "--cpus", "1", "--name", "lrs",
                     "--data-dir", str(data), "--output-dir", str(output_dir), *sets,
                     "--grid", LEARNING_RATES, *extra, env=env)
    return result.stdout.strip().splitlines()[-1]


def sweep_status(sweep_id: str, env: dict[str, str]) -> dict:
    return json.loads(rlaunch("status", sweep_id, "--json", env=env).stdout)


def no_nan(text: str) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"summary.json holds {name}")

    return json.loads(text, parse_constant=refuse)


def check_gathered(sweep_id: str, dest: Path, env: dict[str, str]) -> None:
    """gather: every trial's results, ranked by allreduced top-1 with lr as a column, a plot."""
    printed = rlaunch("gather", sweep_id, "--dest", str(dest), env=env).stdout
    assert "trials ranked by allreduced top-1" in printed and "lr" in printed
    summary = no_nan((dest / "summary.json").read_text())
    assert summary["state"] == "COMPLETED" and summary["parameters"] == ["lr"]
    tops = [t["final"]["top1"] for t in summary["trials"]]
    assert len(tops) == 3 and tops == sorted(tops, reverse=True)
    assert sorted(summary["ranking"]) == [0, 1, 2]
    assert {t["values"]["lr"] for t in summary["trials"]} == {"0.01", "0.05", "0.2"}
    assert all(t["final"]["total"] == 12 for t in summary["trials"])
    for index in range(3):
        assert (dest / f"trial-{index}" / "checkpoints" / "best.ckpt").is_file()
        assert (dest / f"trial-{index}" / "summary.json").is_file()
    assert (dest / "sweep.png").stat().st_size > 5000


@pytest.mark.timeout(900)
def test_local_three_trial_sweep_runs_and_gathers(synthetic_data: Path, tmp_path: Path,
                                                  state_dir: Path) -> None:
    env = {"RLAUNCH_STATE_DIR": str(state_dir)}
    sweep_id = sweep("local", synthetic_data, tmp_path / "out", env, "--max-parallel", "2")
    status = sweep_status(sweep_id, env)
    assert [t["values"]["lr"] for t in status["trials"]] == ["0.01", "0.05", "0.2"]
    # at most two trials at once: the third waits for a slot
    assert sum(t["state"] == "PENDING" for t in status["trials"]) >= 1
    wait_for(lambda: sweep_status(sweep_id, env)["state"] == "COMPLETED", 800,
             "every trial to complete")
    status = sweep_status(sweep_id, env)
    assert all(t["exit_code"] == 0 and t["best_top1"] is not None for t in status["trials"])
    assert all(t["progress"]["epochs_total"] == 1 for t in status["trials"])
    assert (tmp_path / "out" / "trial-2" / "eval.json").is_file()
    logs = rlaunch("logs", sweep_id, "--trial", "2", env=env).stdout
    assert "lr peak 0.2" in logs and "training finished" in logs
    check_gathered(sweep_id, tmp_path / "g", env)


@pytest.mark.timeout(600)
def test_local_cancel_stops_the_whole_sweep_in_one_call(synthetic_data: Path, tmp_path: Path,
                                                        state_dir: Path) -> None:
    env = {"RLAUNCH_STATE_DIR": str(state_dir)}
    output_dir = tmp_path / "out"
    sweep_id = sweep("local", synthetic_data, output_dir, env, "--set", "epochs=3",
                     "--set", "batch_size=1", *SLOW_CHECKPOINTS)
    job_dir = state_dir / "jobs" / sweep_id
    runner_pid = int((job_dir / "runner.pid").read_text().split()[0])
    wait_for(lambda: step_events(output_dir / "trial-0"), 400, "trial 0's first training step")
    trial_pid = int((job_dir / "trial-0" / "pid").read_text().split()[0])
    rlaunch("cancel", sweep_id, env=env)
    states = [t["state"] for t in sweep_status(sweep_id, env)["trials"]]
    assert states == ["CANCELLED"] * 3
    assert not process_alive(runner_pid, None) and descendants(trial_pid) == []
    assert not (job_dir / "trial-1" / "submitted").exists()  # never started
    assert (output_dir / "trial-0" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.timeout(1200)
def test_slurm_three_trial_sweep_is_one_array(slurm_cluster: str, synthetic_data: Path,
                                              tmp_path: Path, state_dir: Path) -> None:
    env = {"RLAUNCH_STATE_DIR": str(state_dir)}
    sweep_id = sweep("slurm", synthetic_data, tmp_path / "out", env, "--max-parallel", "2")
    record = json.loads((state_dir / "jobs" / sweep_id / "record.json").read_text())
    array_id = record["backend_id"]
    assert array_id.isdigit()
    wait_for(lambda: sweep_status(sweep_id, env)["state"] == "COMPLETED", 1100,
             "every array task to complete", poll=3)
    status = sweep_status(sweep_id, env)
    assert all(t["exit_code"] == 0 for t in status["trials"])
    for index in range(3):
        assert (state_dir / "jobs" / sweep_id / f"slurm-{array_id}_{index}.out").is_file()
        assert (tmp_path / "out" / f"trial-{index}" / "eval.json").is_file()
    logs = rlaunch("logs", sweep_id, "--trial", "1", env=env).stdout
    assert "lr peak 0.05" in logs and "[job] rlaunch: job" in logs
    check_gathered(sweep_id, tmp_path / "g", env)


@pytest.mark.timeout(600)
def test_slurm_cancel_stops_every_task_in_one_call(slurm_cluster: str, synthetic_data: Path,
                                                   tmp_path: Path, state_dir: Path) -> None:
    env = {"RLAUNCH_STATE_DIR": str(state_dir)}
    output_dir = tmp_path / "out"
    sweep_id = sweep("slurm", synthetic_data, output_dir, env, "--set", "epochs=3",
                     "--set", "batch_size=1", "--max-parallel", "1", *SLOW_CHECKPOINTS)
    wait_for(lambda: step_events(output_dir / "trial-0"), 400, "trial 0's first training step")
    rlaunch("cancel", sweep_id, env=env)
    wait_for(lambda: [t["state"] for t in sweep_status(sweep_id, env)["trials"]]
             == ["CANCELLED"] * 3, 120, "every task CANCELLED", poll=2)


@pytest.mark.timeout(1200)
def test_slurm_one_task_preempted_requeues_and_resumes_alone(
        slurm_cluster: str, synthetic_data: Path, tmp_path: Path, state_dir: Path) -> None:
    env = {"RLAUNCH_STATE_DIR": str(state_dir)}
    output_dir = tmp_path / "out"
    sets = [a for s in [*TINY_TRAIN_SETS, "batch_size=1", "epochs=2"] for a in ("--set", s)]
    sweep_id = rlaunch("sweep", "--backend", "slurm", "--cpus", "1", "--name", "preempt",
                       "--data-dir", str(synthetic_data), "--output-dir", str(output_dir),
                       *sets, "--grid", "lr=0.01,0.05", *SLOW_CHECKPOINTS,
                       env=env).stdout.strip().splitlines()[-1]
    record = json.loads((state_dir / "jobs" / sweep_id / "record.json").read_text())
    task = f"{record['backend_id']}_1"
    # USR1 to task 1's batch shell, as --signal=B:USR1@T does before its time limit
    wait_for(lambda: step_events(output_dir / "trial-1"), 600, "trial 1's first training step")
    subprocess.run(["scancel", "--signal=USR1", "--batch", task], check=True)
    wait_for(lambda: int(scontrol_job(task).get("Restarts", "0")) >= 1, 300,
             "task 1 to requeue itself")
    wait_for(lambda: scontrol_job(task)["JobState"] == "PENDING", 60, "the requeued task")
    time.sleep(2)  # not within the requeue's own second (see test_slurm_e2e.py)
    wait_for(lambda: subprocess.run(["scontrol", "update", f"jobid={task}", "starttime=now"],
                                    capture_output=True, check=False).returncode == 0
             or scontrol_job(task)["JobState"] != "PENDING", 60, "scontrol update")
    wait_for(lambda: sweep_status(sweep_id, env)["state"] in ("COMPLETED", "FAILED"), 900,
             "both trials to finish", poll=3)
    assert [t["state"] for t in sweep_status(sweep_id, env)["trials"]] == ["COMPLETED"] * 2
    trial_dirs = [state_dir / "jobs" / sweep_id / f"trial-{i}" for i in range(2)]
    assert (trial_dirs[1] / "logs" / "restart-1").is_dir()
    assert not (trial_dirs[0] / "logs" / "restart-1").exists()
    logs = rlaunch("logs", sweep_id, "--trial", "1", env=env).stdout
    assert "stopping on SIGUSR1" in logs and "resumed from" in logs
