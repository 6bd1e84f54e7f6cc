"""`rlaunch check` and `rlaunch usage` on the production-shaped Slurm (accounting through
slurmdbd): an account or QOS that does not exist fails for real, and the device-hours of a job
that was requeued once match what Slurm itself accounts for the same job."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from launcher.spec import JobSpec
from launcher.store import JobStore
from tests.launcher.conftest import VENV_BIN

from .conftest import ProductionCluster, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slurm_production]

ACCOUNT = "research"  # scripts/slurm_cluster.sh PROD_ACCOUNT


def check(cluster: ProductionCluster, data: Path, *args: str) -> tuple[int, dict[str, dict]]:
    done = cluster.rlaunch("check", "--backend", "slurm", "--gpus", "2", "--data-dir", str(data),
                           "--output-dir", str(cluster.workspace("check-out")),
                           "--set", "num_classes=4", *args, "--json", check=False)
    assert done.returncode in (0, 2), done.stderr
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)["checks"]}


@pytest.mark.timeout(300)
def test_accounts_and_qos_are_looked_up_in_slurms_accounting(
        production_cluster: ProductionCluster, production_data: Path) -> None:
    code, checks = check(production_cluster, production_data, "--account", ACCOUNT,
                         "--qos", "long")
    assert code == 0, [c for c in checks.values() if c["status"] == "fail"]
    assert checks["slurm.account"]["status"] == "pass"
    assert checks["slurm.qos"]["status"] == "pass"
    code, checks = check(production_cluster, production_data, "--account", "nobody")
    assert code == 2
    assert "--account 'nobody' does not exist in Slurm's accounting" in \
        checks["slurm.account"]["message"]
    code, checks = check(production_cluster, production_data, "--qos", "platinum")
    assert code == 2 and "--qos 'platinum' does not exist" in checks["slurm.qos"]["message"]


def sacct_rows(cluster: ProductionCluster, job_id: str, fields: str) -> list[list[str]]:
    out = cluster.run(["sacct", "-n", "-P", "-X", "--duplicates", "-j", job_id, "-o",
                       fields]).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


@pytest.mark.timeout(400)
def test_usage_counts_every_attempt_as_slurm_accounts_it(
        production_cluster: ProductionCluster, tmp_path: Path) -> None:
    cluster = production_cluster
    folder = cluster.workspace("usage")
    job_id = cluster.run(["sbatch", "--parsable", "--requeue", "--gres=gpu:2", "-c", "1",
                          "--mem=64M", "--account", ACCOUNT, f"--chdir={folder}",
                          "--output=slurm-%j.out", "--wrap", "sleep 6"]).stdout.strip()
    seen: dict[str, str] = {}

    def running() -> bool:
        seen.update(cluster.scontrol_job(job_id))
        return seen["JobState"] == "RUNNING"

    try:
        wait_for(running, 120, "the job to run")
    except AssertionError as err:
        raise AssertionError(f"{err}: {seen.get('JobState')} {seen.get('Reason')}") from None
    time.sleep(2)
    cluster.run(["scontrol", "requeue", job_id])
    # A requeued job waits for its begin time; let it start again now.
    wait_for(lambda: cluster.scontrol_job(job_id)["JobState"] == "PENDING", 60, "the requeue")
    cluster.run(["scontrol", "update", f"jobid={job_id}", "starttime=now"])
    wait_for(lambda: [r[1].split()[0] for r in sacct_rows(cluster, job_id, "JobIDRaw,State")]
             == ["REQUEUED", "COMPLETED"], 120, "two accounted attempts")

    state = tmp_path / "state"
    store = JobStore(state)
    record = store.create(JobSpec(backend="slurm", device_kind="gpu", devices_per_node=2,
                                  data_dir="/d", output_dir="/o"))
    record.backend_id = job_id
    store.save(record)
    done = subprocess.run([str(VENV_BIN / "rlaunch"), "usage", record.id, "--json",
                           "--price", "gpu=2.1", "--price", "cpu=0.02"],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "RLAUNCH_STATE_DIR": str(state),
                               "SLURM_CONF": cluster.slurm_conf})
    usage = json.loads(done.stdout)
    attempts = usage["jobs"][0]["attempts"]
    assert [a["state"] for a in attempts] == ["REQUEUED", "COMPLETED"]

    # Slurm's own figures for the same attempts: CPUTimeRAW is its elapsed x allocated CPUs.
    rows = sacct_rows(cluster, job_id, "ElapsedRaw,CPUTimeRAW,AllocTRES")
    slurm_cpu_hours = sum(int(r[1]) for r in rows) / 3600
    slurm_gpu_hours = sum(int(r[0]) * 2 for r in rows) / 3600
    assert all("gres/gpu=2" in r[2] for r in rows)
    assert usage["device_hours"]["cpu"] == pytest.approx(slurm_cpu_hours, abs=1e-6)
    assert usage["device_hours"]["gpu"] == pytest.approx(slurm_gpu_hours, abs=1e-6)
    assert usage["cost"] == pytest.approx(2.1 * slurm_gpu_hours + 0.02 * slurm_cpu_hours,
                                          abs=1e-5)
    assert sum(int(r[0]) for r in rows) >= 8  # both attempts ran: 2 s + 6 s at least
