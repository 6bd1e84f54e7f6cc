"""`rlaunch usage`: sacct rows (every requeued attempt, every array task), pod times, local wall
time; prices and --since; gather's summary.json carries the job's usage."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import cli
from launcher.spec import JobSpec
from launcher.store import JobStore
from launcher.usage import parse_prices, parse_sacct, pod_attempts, tres_devices

# `sacct -n -P -X --duplicates -o JobID,State,Start,End,ElapsedRaw,AllocTRES` for a job requeued
# once (the first attempt REQUEUED), as Slurm 22.05 prints it; then an array of two tasks.
SACCT_REQUEUED = (
    "41|REQUEUED|2026-12-03T10:00:00|2026-12-03T10:05:00|300|"
    "billing=32,cpu=32,gres/gpu:a100=8,gres/gpu=8,mem=64G,node=1\n"
    "41|COMPLETED|2026-12-03T10:07:00|2026-12-03T10:37:00|1800|"
    "billing=32,cpu=32,gres/gpu:a100=8,gres/gpu=8,mem=64G,node=1\n"
)
SACCT_ARRAY = (
    "50_0|COMPLETED|2026-12-03T11:00:00|2026-12-03T11:10:00|600|cpu=4,gres/npu=4,node=1\n"
    "50_1|CANCELLED by 0|2026-12-03T11:00:00|2026-12-03T11:02:00|120|cpu=4,gres/npu=4,node=1\n"
    "garbage line\n"
)


def test_every_requeued_attempt_counts_and_typed_gres_is_not_double_counted() -> None:
    attempts = parse_sacct(SACCT_REQUEUED)
    assert [a.state for a in attempts] == ["REQUEUED", "COMPLETED"]
    assert all(a.devices == {"cpu": 32, "gpu": 8} for a in attempts)
    hours = sum(a.seconds * a.devices["gpu"] for a in attempts) / 3600
    assert hours == pytest.approx(8 * 2100 / 3600)


def test_array_tasks_are_trials_and_npus_are_counted() -> None:
    attempts = parse_sacct(SACCT_ARRAY)
    assert [(a.trial, a.state, a.devices.get("npu")) for a in attempts] == [
        (0, "COMPLETED", 4), (1, "CANCELLED", 4)]
    assert tres_devices("cpu=2,gres/davinci=8", npu_gres="davinci") == {"cpu": 2, "npu": 8}


def test_pods_count_from_start_to_finish_times_requested_devices() -> None:
    pods = [
        {"metadata": {"name": "j-node-0"}, "spec": {"containers": [
            {"resources": {"limits": {"nvidia.com/gpu": "8", "cpu": "31500m"}}}]},
         "status": {"phase": "Succeeded", "startTime": "2026-12-03T10:00:00Z",
                    "containerStatuses": [{"state": {"terminated": {
                        "finishedAt": "2026-12-03T11:30:00Z"}}}]}},
        {"metadata": {"name": "j-node-1"}, "spec": {"containers": [
            {"resources": {"requests": {"nvidia.com/gpu": 8}}}]},
         "status": {"phase": "Running", "startTime": "2026-12-03T10:00:00Z",
                    "containerStatuses": [{"state": {"running": {}}}]}},
        {"metadata": {"name": "j-node-2"}, "status": {"phase": "Pending"}},
    ]
    now = time.mktime(time.strptime("2026-12-03T12:00:00", "%Y-%m-%dT%H:%M:%S")) - time.timezone
    attempts = pod_attempts(pods, now)
    assert [(a.label, a.seconds, a.devices) for a in attempts] == [
        ("j-node-0", 5400.0, {"gpu": 8.0, "cpu": 31.5}),
        ("j-node-1", 7200.0, {"gpu": 8.0})]


def test_prices_are_checked() -> None:
    assert parse_prices(("gpu=2.1", "npu=1.4", "cpu=0.02")) == {"gpu": 2.1, "npu": 1.4,
                                                                  "cpu": 0.02}
    for bad in ("tpu=1", "gpu", "gpu=-1", "gpu=nan", "gpu=x"):
        result = CliRunner().invoke(cli, ["usage", "--price", bad])
        assert result.exit_code == 2 and "--price" in result.output, bad


def local_job(store: JobStore, started: float | None, finished: float | None,
              cpus: int = 2) -> str:
    record = store.create(JobSpec(devices_per_node=cpus, data_dir="/d", output_dir="/o"))
    if started is not None:
        (Path(record.job_dir) / "started_at").write_text(f"{started}\n")
    if finished is not None:
        (Path(record.job_dir) / "finished_at").write_text(f"{finished}\n")
    store.save(record)
    return record.id


def test_local_usage_is_wall_time_times_cpus_with_prices_and_json(state_dir: Path) -> None:
    store = JobStore()
    job = local_job(store, 1000.0, 1000.0 + 1800, cpus=4)
    result = CliRunner().invoke(cli, ["usage", job, "--price", "cpu=0.5", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["device_hours"] == {"cpu": 2.0}
    assert data["cost"] == 1.0
    assert data["jobs"][0]["attempts"][0]["seconds"] == 1800.0


def test_since_leaves_out_older_jobs(state_dir: Path) -> None:
    store = JobStore()
    old = local_job(store, 1.0, 3601.0)
    record = store.load(old)
    record.created = time.time() - 5 * 86400
    store.save(record)
    new = local_job(store, 1.0, 7201.0)
    result = CliRunner().invoke(cli, ["usage", "--since", "2d", "--json"])
    assert [j["job_id"] for j in json.loads(result.output)["jobs"]] == [new]
    bad = CliRunner().invoke(cli, ["usage", "--since", "yesterday"])
    assert bad.exit_code == 2 and "'yesterday' is not a date" in bad.output


def test_a_job_that_never_started_says_so(state_dir: Path) -> None:
    job = local_job(JobStore(), None, None)
    result = CliRunner().invoke(cli, ["usage", job, "--json"])
    assert "no start time recorded" in json.loads(result.output)["jobs"][0]["note"]


def test_a_local_sweep_adds_up_its_trials(state_dir: Path) -> None:
    store = JobStore()
    record = store.create(JobSpec(devices_per_node=2, data_dir="/d", output_dir="/o"))
    record.extra["sweep"] = {"trials": []}  # what marks a sweep's record; trials in trial-<i>/
    for index, seconds in enumerate((600.0, 1200.0, 1800.0)):
        trial = Path(record.job_dir) / f"trial-{index}"
        trial.mkdir()
        (trial / "started_at").write_text("100.0\n")
        (trial / "finished_at").write_text(f"{100.0 + seconds}\n")
    store.save(record)
    result = CliRunner().invoke(cli, ["usage", record.id, "--json"])
    job = json.loads(result.output)["jobs"][0]
    assert [(a["trial"], a["seconds"]) for a in job["attempts"]] == [
        (0, 600.0), (1, 1200.0), (2, 1800.0)]
    assert job["device_hours"] == {"cpu": 2.0}  # 3600 s x 2 CPUs
