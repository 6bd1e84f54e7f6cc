"""A real multi-node Slurm on this machine (scripts/slurm_cluster.sh up-multi): one slurmctld and
two slurmd, each node in its own network namespace, task/affinity binding real CPUs. Brought up
once per session for the tests that use `multinode_cluster` and removed at the end (daemons,
namespaces, bridge), so a CI run leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.launcher.conftest import REPO, rlaunch, state_dir, synthetic_data, wait_for  # noqa: F401

CLUSTER_SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
NODES = ("rlnode0", "rlnode1")


@pytest.fixture(scope="session")
def multinode_cluster() -> Iterator[dict[str, str]]:
    """The environment a client of the 2-node cluster needs (its SLURM_CONF)."""
    if os.geteuid() != 0:
        pytest.fail("the multi-node Slurm needs root (network namespaces, SlurmUser=root)")
    up = subprocess.run(["bash", str(CLUSTER_SCRIPT), "up-multi"], capture_output=True,
                        text=True, timeout=300, check=False)
    try:
        assert up.returncode == 0, f"could not start the multi-node Slurm:\n{up.stderr}"
        yield {"SLURM_CONF": up.stdout.strip().splitlines()[-1]}
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "down-multi"], capture_output=True,
                       timeout=300, check=False)



def scontrol_job(slurm_id: str, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True,
                         text=True, check=True, env={**os.environ, **env}).stdout
    return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)


def job_status(job_id: str, env: dict[str, str]) -> dict:
    return json.loads(rlaunch("status", job_id, "--json", env=env).stdout)


def wait_finished(job_id: str, env: dict[str, str], timeout: float) -> dict:
    return wait_for(lambda: (s := job_status(job_id, env))["state"] in
                    ("COMPLETED", "FAILED", "CANCELLED") and s, timeout, f"job {job_id} to end")


def submit(*args: str, env: dict[str, str]) -> str:
    """`rlaunch submit --backend slurm ARGS`; returns the job id."""
    done = rlaunch("submit", "--backend", "slurm", *args, env=env)
    return done.stdout.strip().splitlines()[-1]


def slurm_id_of(job_id: str, state: Path) -> str:
    return json.loads((state / "jobs" / job_id / "record.json").read_text())["backend_id"]


def job_output(job_id: str, state: Path) -> str:
    return "".join(p.read_text(errors="replace")
                   for p in sorted((state / "jobs" / job_id).glob("slurm-*.out")))
