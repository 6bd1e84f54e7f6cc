"""Sweeps end to end with real training: a three-trial learning-rate sweep on this machine and as
one job array on the real test Slurm, ranked and plotted by `gather`; `cancel` stops a running
sweep in one call. Through the installed `rlaunch`, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.backends.local import descendants, process_alive

from .conftest import TINY_TRAIN_SETS, rlaunch, step_events, wait_for
from .test_slurm_e2e import SLOW_CHECKPOINTS

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
