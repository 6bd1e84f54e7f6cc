"""`rlaunch check` against a real Slurm (scripts/slurm_cluster.sh: one node, 16 CPUs, 8 GPUs),
each failing check made to fail by the cluster itself: a partition that does not exist, a time
over a real partition's MaxTime, more GPUs than the node has, an account the partition does not
allow, a data folder without val/. The `--deep` srun probe runs for real. The cluster is brought
up for this module and down at its end (run it under `flock /tmp/rlaunch-slurm.lock`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.launcher.conftest import REPO, rlaunch

pytestmark = pytest.mark.integration

CLUSTER = ["bash", str(REPO / "scripts" / "slurm_cluster.sh")]
SLURM_CONF = "/var/tmp/rlaunch-slurm/slurm.conf"
SHORT_MAX_TIME = "00:10:00"


@pytest.fixture(scope="module")
def slurm_env() -> Iterator[dict[str, str]]:
    """The one-node cluster plus partitions `short` (MaxTime 10 min) and `vision` (only the
    account vision may use it)."""
    up = subprocess.run([*CLUSTER, "up"], capture_output=True, text=True, timeout=300,
                        check=False)
    env = {"SLURM_CONF": SLURM_CONF}
    try:
        assert up.returncode == 0, up.stderr
        node = socket.gethostname()
        scontrol("create", "PartitionName=short", f"Nodes={node}", f"MaxTime={SHORT_MAX_TIME}",
                 "State=UP")
        scontrol("create", "PartitionName=vision", f"Nodes={node}", "AllowAccounts=vision",
                 "State=UP")
        yield env
    finally:
        subprocess.run([*CLUSTER, "down"], capture_output=True, timeout=300, check=False)


def scontrol(*args: str) -> str:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, check=True,
                          env={**os.environ, "SLURM_CONF": SLURM_CONF}).stdout


def check(env: dict[str, str], *args: str, state: Path) -> tuple[int, dict[str, dict]]:
    done = rlaunch("check", "--backend", "slurm", *args, "--json", check=False,
                   env={**env, "RLAUNCH_STATE_DIR": str(state)})
    assert done.returncode in (0, 2), done.stderr
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)["checks"]}


@pytest.fixture
def job(synthetic_data: Path, tmp_path: Path) -> list[str]:
    return ["--gpus", "8", "--data-dir", str(synthetic_data), "--output-dir",
            str(tmp_path / "out"), "--set", "num_classes=4", "--set", "net_name=resnest14d"]


def test_a_good_job_passes_every_check_including_the_srun_probe(
        slurm_env: dict[str, str], job: list[str], tmp_path: Path) -> None:
    code, checks = check(slurm_env, *job, "--deep", state=tmp_path / "state")
    assert code == 0, checks
    assert {n: c["status"] for n, c in checks.items()} == {
        "job.device": "pass", "job.memory": "pass", "job.checkpoint": "pass",
        "data.layout": "pass", "data.output": "pass", "slurm.partition": "pass",
        "slurm.devices": "pass", "slurm.time": "pass", "slurm.image": "pass",
        "data.shared": "pass"}
    assert "1 node(s)" in checks["data.shared"]["message"]


def test_a_missing_partition_fails(slurm_env: dict[str, str], job: list[str],
                                   tmp_path: Path) -> None:
    code, checks = check(slurm_env, *job, "--partition", "gpux", state=tmp_path)
    assert code == 2
    assert "'gpux' does not exist: use one of debug, short, vision" in \
        checks["slurm.partition"]["message"]


def test_a_time_over_maxtime_fails_where_slurm_would_leave_the_job_pending(
        slurm_env: dict[str, str], job: list[str], tmp_path: Path) -> None:
    code, checks = check(slurm_env, *job, "--partition", "short", "--time", "00:30:00",
                         state=tmp_path)
    assert code == 2 and checks["slurm.time"]["status"] == "fail"
    assert f"partition 'short' ({SHORT_MAX_TIME})" in checks["slurm.time"]["message"]
    # What the message says Slurm does with such a job, seen on this cluster.
    env = {**os.environ, "SLURM_CONF": SLURM_CONF}
    job_id = subprocess.run(["sbatch", "--parsable", "--partition=short", "--time=00:30:00",
                             "--wrap=true"], capture_output=True, text=True,
                            check=True, env=env).stdout.strip()
    try:
        # The first scheduling pass may show another reason (PartitionConfig) before the
        # time limit one settles.
        for _ in range(100):
            fields = dict(t.split("=", 1) for t in scontrol("show", "job", "-o", job_id).split()
                          if "=" in t)
            reason = fields.get("Reason", "")
            if reason == "PartitionTimeLimit":
                break
            time.sleep(0.2)
        assert fields["JobState"] == "PENDING" and reason == "PartitionTimeLimit"
    finally:
        subprocess.run(["scancel", job_id], env=env, check=False)
    assert check(slurm_env, *job, "--partition", "short", "--time", "00:09:00",
                 state=tmp_path)[0] == 0


def test_more_gpus_than_the_node_has_fails(slurm_env: dict[str, str], job: list[str],
                                           tmp_path: Path) -> None:
    code, checks = check(slurm_env, *job, "--gpus", "16", state=tmp_path)
    assert code == 2
    assert "16 gpu per node on 1 node(s): 0 node(s) of 'debug' have that many " \
           "(most per node: 8)" in checks["slurm.devices"]["message"]


def test_an_account_the_partition_does_not_allow_fails(slurm_env: dict[str, str],
                                                       job: list[str], tmp_path: Path) -> None:
    code, checks = check(slurm_env, *job, "--partition", "vision", "--account", "physics",
                         state=tmp_path)
    assert code == 2
    assert "--account 'physics' may not use this partition (AllowAccounts=vision)" in \
        checks["slurm.account"]["message"]


def test_an_account_cannot_be_looked_up_without_accounting(
        slurm_env: dict[str, str], job: list[str], tmp_path: Path) -> None:
    # This cluster runs without slurmdbd: the check says so instead of passing.
    code, checks = check(slurm_env, *job, "--account", "nobody", state=tmp_path)
    assert code == 0 and checks["slurm.account"]["status"] == "skip"
    assert "sacctmgr cannot answer" in checks["slurm.account"]["message"]


def test_a_data_dir_without_val_fails_and_submit_queues_nothing(
        slurm_env: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "train" / "cat").mkdir(parents=True)
    (data / "train" / "cat" / "a.JPEG").write_bytes(b"")
    args = ["--cpus", "2", "--data-dir", str(data), "--output-dir", str(tmp_path / "o")]
    code, checks = check(slurm_env, *args, state=tmp_path / "state")
    assert code == 2 and "has no val/ folder" in checks["data.layout"]["message"]
    env = {**os.environ, "SLURM_CONF": SLURM_CONF}
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                            env=env, check=True).stdout
    submitted = rlaunch("submit", "--backend", "slurm", *args, check=False,
                        env={**slurm_env, "RLAUNCH_STATE_DIR": str(tmp_path / "state")})
    assert submitted.returncode == 2 and "FAIL  data.layout" in submitted.stderr
    after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                           env=env, check=True).stdout
    assert after == before and not (tmp_path / "state").exists()


def test_a_sweep_to_a_missing_partition_queues_no_array(slurm_env: dict[str, str], job: list[str],
                                                         tmp_path: Path) -> None:
    env = {**os.environ, "SLURM_CONF": SLURM_CONF}
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                            env=env, check=True).stdout
    swept = rlaunch("sweep", "--backend", "slurm", *job, "--partition", "gpux",
                    "--grid", "lr=0.1,0.2,0.4", check=False,
                    env={**slurm_env, "RLAUNCH_STATE_DIR": str(tmp_path / "state")})
    assert swept.returncode == 2, swept.stdout + swept.stderr
    # One set of checks for the whole sweep, not one per trial.
    assert swept.stderr.count("FAIL  slurm.partition") == 1
    assert "'gpux' does not exist" in swept.stderr and swept.stdout == ""
    after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                           env=env, check=True).stdout
    assert after == before and not (tmp_path / "state").exists()
