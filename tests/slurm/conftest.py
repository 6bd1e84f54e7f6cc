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
from typing import ClassVar

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


# ---- the production-shaped cluster (scripts/slurm_cluster.sh up-production) -------------------

PRODUCTION_USER = "rlaunch-user"
PRODUCTION_NODES = ("gpu-a01", "gpu-a02")


class ProductionCluster:
    """The production-shaped cluster as its unprivileged user sees it: commands run as that user
    (`runuser`), in a clean environment that names the cluster's SLURM_CONF."""

    def __init__(self, slurm_conf: str) -> None:
        self.slurm_conf = slurm_conf
        self.home = Path(f"/home/{PRODUCTION_USER}")

    def env(self, **extra: str) -> dict[str, str]:
        # PYTHONPATH passes through: a checkout tested from outside its venv's editable install.
        passed = {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.home),
                "USER": PRODUCTION_USER, "LANG": "C.UTF-8", "SLURM_CONF": self.slurm_conf,
                **passed, **extra}

    def run(self, argv: list[str], *, check: bool = True, timeout: float = 600,
            **env: str) -> subprocess.CompletedProcess[str]:
        """`argv` as the unprivileged user."""
        pairs = [f"{k}={v}" for k, v in self.env(**env).items()]
        done = subprocess.run(["runuser", "-u", PRODUCTION_USER, "--", "env", "-i", *pairs, *argv],
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} as {PRODUCTION_USER} exited {done.returncode}\n"
                                 f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        return done

    def rlaunch(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        from tests.launcher.conftest import VENV_BIN

        return self.run([str(VENV_BIN / "rlaunch"), *args], check=check, **env)

    def scontrol_job(self, slurm_id: str) -> dict[str, str]:
        out = self.run(["scontrol", "show", "job", "-o", slurm_id]).stdout
        return dict(tok.split("=", 1) for tok in out.split() if "=" in tok)

    def sacct(self, slurm_id: str) -> list[list[str]]:
        out = self.run(["sacct", "-n", "-P", "-X", "--duplicates", "-j", slurm_id,
                        "-o", "JobIDRaw,State,ExitCode,Partition,Account,QOS,User"]).stdout
        return [line.split("|") for line in out.splitlines() if line.strip()]

    def workspace(self, name: str) -> Path:
        """A fresh directory the user owns (pytest's tmp dirs are private to root)."""
        import shutil
        import uuid

        path = self.home / "tests" / f"{name}-{uuid.uuid4().hex[:8]}"
        self.run(["mkdir", "-p", str(path)])
        self.cleanup.append(path)
        shutil.chown(path.parent, PRODUCTION_USER, PRODUCTION_USER)
        return path

    cleanup: ClassVar[list[Path]] = []


@pytest.fixture(scope="session")
def production_cluster() -> Iterator[ProductionCluster]:
    """Two nodes of a cluster shaped like a site's (see scripts/slurm_cluster.sh): an unprivileged
    user, cgroup confinement, memory as a consumable, accounting, preemption, node names that are
    not host names. Started once per session and removed at the end."""
    if os.geteuid() != 0:
        pytest.fail("starting the production-shaped Slurm needs root (its jobs then run as "
                    f"{PRODUCTION_USER})")
    up = subprocess.run(["bash", str(CLUSTER_SCRIPT), "up-production"], capture_output=True,
                        text=True, timeout=300, check=False)
    try:
        assert up.returncode == 0, f"could not start the production-shaped Slurm:\n{up.stderr}"
        yield ProductionCluster(up.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "down-production"], capture_output=True,
                       timeout=300, check=False)
        import shutil

        for path in ProductionCluster.cleanup:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def production_data(production_cluster: ProductionCluster,
                    synthetic_data: Path) -> Path:  # noqa: F811
    """The synthetic image set where the cluster's user can read it."""
    import shutil

    dest = production_cluster.workspace("data") / "syn set"
    shutil.copytree(synthetic_data, dest)
    subprocess.run(["chown", "-R", f"{PRODUCTION_USER}:{PRODUCTION_USER}", str(dest)], check=True)
    return dest
