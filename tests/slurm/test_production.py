"""rlaunch on a Slurm cluster shaped like a site's (scripts/slurm_cluster.sh up-production).

Everything here runs as an unprivileged user, under proctrack/cgroup and task/cgroup (cores,
memory and devices confined), with memory a consumable resource, accounting (sacct), preemption
between partitions, and node names (gpu-a01, gpu-a02) that are not host names; gpu-a01 maps its
own host name to 127.0.1.1, as Debian does. The 2-node training needs the master address from
NodeAddr (the slurm-backend branch's B2 fix).
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from tests.launcher.conftest import TINY_TRAIN_SETS, step_events

from .conftest import PRODUCTION_NODES, PRODUCTION_USER, ProductionCluster, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slurm_production]

# Per node, for two tiny MindSpore ranks and msrun's scheduler process (the cluster's default,
# DefMemPerCPU=256 MB, is what a job that asks for nothing gets, and not enough).
TRAINING_MEMORY = "--opt=mem=2500M"
SLOW_CHECKPOINTS = ("--env", "RESNEST_FAULT_CKPT_WRITE_DELAY_S=3")

DEVICE_PROBE = textwrap.dedent("""\
    import errno, glob, json, os, sys
    seen = {}
    for path in sorted(glob.glob(sys.argv[1])):
        try:
            os.close(os.open(path, os.O_RDONLY))
            seen[os.path.basename(path)] = "opened"
        except OSError as err:
            seen[os.path.basename(path)] = errno.errorcode[err.errno]
    cgroup = [l.split(":")[2] for l in open("/proc/self/cgroup").read().splitlines()
              if l.split(":")[1] == "devices"][0]
    allowed = open(f"/sys/fs/cgroup/devices{cgroup}/devices.list").read().splitlines()
    print(json.dumps({"uid": os.getuid(), "devices": seen, "cgroup": cgroup, "allowed": allowed,
                      "visible": os.environ.get(sys.argv[2])}))
""")


def probe_devices(cluster: ProductionCluster, gres: str, pattern: str, visible_env: str) -> dict:
    dev_dir = Path(cluster.slurm_conf).parent / "dev"
    done = cluster.run(["srun", "-N1", "-n1", f"--gres={gres}", "--mem=64M", "python3", "-c",
                        DEVICE_PROBE, str(dev_dir / pattern), visible_env], timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(300)
def test_a_step_opens_only_the_devices_slurm_gave_it(
    production_cluster: ProductionCluster,
) -> None:
    # ENXIO: the device cgroup let the open through to a device file with no driver behind it;
    # EPERM: the device cgroup (ConstrainDevices) refused it.
    gpus = probe_devices(production_cluster, "gpu:2", "nvidia*", "CUDA_VISIBLE_DEVICES")
    assert gpus["uid"] != 0, gpus
    assert sorted(d for d, r in gpus["devices"].items() if r == "ENXIO") == ["nvidia0", "nvidia1"], gpus
    assert sorted(r for r in gpus["devices"].values()) == ["ENXIO"] * 2 + ["EPERM"] * 6, gpus
    assert gpus["visible"] == "0,1"


@pytest.mark.timeout(300)
def test_a_step_given_one_npu_opens_only_that_card(production_cluster: ProductionCluster) -> None:
    # Slurm 22.05 confines only gres with a plugin; the cluster's gres/npu plugin (see
    # scripts/slurm_cluster.sh) gives the NPUs what Slurm 23.02 gives plugin-less gres.
    npus = probe_devices(production_cluster, "npu:1", "davinci*", "ASCEND_VISIBLE_DEVICES")
    assert npus["devices"] == {"davinci0": "ENXIO", **{f"davinci{i}": "EPERM" for i in range(1, 8)}}, npus
    assert npus["visible"] == "0"


def submit_training(cluster: ProductionCluster, data: Path, work: Path, *extra: str) -> str:
    sets = [*TINY_TRAIN_SETS, "epochs=2"]
    submitted = cluster.rlaunch(
        "submit", "--backend", "slurm", "--nodes", "2", "--cpus", "2", "--partition", "low",
        "--data-dir", str(data), "--output-dir", str(work / "out"), TRAINING_MEMORY,
        *[a for s in sets for a in ("--set", s)], *SLOW_CHECKPOINTS, *extra,
        RLAUNCH_STATE_DIR=str(work / "state"))
    return submitted.stdout.strip().splitlines()[-1]


def start_now(cluster: ProductionCluster, slurm_id: str) -> None:
    """A requeued job waits ~2 min (BeginTime) before it may start again; a real cluster just
    waits, the test does not. Not within the requeue's own second: slurmd revokes the old run's
    credential with 1 s resolution and kills a start in that second."""
    wait_for(lambda: cluster.scontrol_job(slurm_id)["JobState"] == "PENDING", 120,
             "the requeued job to be pending")
    time.sleep(2)
    wait_for(lambda: cluster.run(["scontrol", "update", f"jobid={slurm_id}", "starttime=now"],
                                 check=False).returncode == 0
             or cluster.scontrol_job(slurm_id)["JobState"] != "PENDING", 60, "scontrol update")


@pytest.mark.timeout(900)
def test_preempted_by_a_higher_priority_job_it_saves_requeues_and_resumes(
    production_cluster: ProductionCluster, production_data: Path,
) -> None:
    cluster = production_cluster
    work = cluster.workspace("preempt")
    state = str(work / "state")
    # --max-restarts 0: a preemption is the scheduler's decision and does not spend the budget
    # the user gave for the job's own requeues.
    job_id = submit_training(cluster, production_data, work, "--name", "preempted",
                             "--max-restarts", "0")
    record = json.loads((work / "state" / "jobs" / job_id / "record.json").read_text())
    slurm_id = record["backend_id"]
    wait_for(lambda: step_events(work / "out"), 600, "the first training step")
    shown = cluster.scontrol_job(slurm_id)
    assert shown["UserId"].startswith(PRODUCTION_USER) and shown["Partition"] == "low"
    assert shown["NodeList"] == "gpu-a[01-02]"
    assert shown["MinMemoryNode"] == "2500M"  # --opt mem, in place of DefMemPerCPU
    # A job of the high-priority partition needs one of the CPUs ours holds: Slurm preempts ours
    # (PreemptMode=REQUEUE), its ranks get SIGTERM, save and stop; Slurm requeues it.
    cluster.run(["sbatch", "-p", "high", "-N1", "-n1", "--mem=64M", "-o", "/dev/null",
                 "--wrap", "sleep 2"])
    wait_for(lambda: int(cluster.scontrol_job(slurm_id).get("Restarts", "0")) >= 1, 300,
             "the preempted job to be requeued")
    start_now(cluster, slurm_id)
    followed = cluster.rlaunch("logs", "-f", job_id, RLAUNCH_STATE_DIR=state)
    final = json.loads(cluster.rlaunch("status", job_id, "--json", RLAUNCH_STATE_DIR=state).stdout)
    assert final["state"] == "COMPLETED", (final, followed.stdout[-3000:])
    assert final["restarts"] == 1

    logs = work / "state" / "jobs" / job_id / "logs"
    for rank in range(4):
        assert "stopping on SIGTERM" in (logs / "restart-0" / f"worker_{rank}.log").read_text()
        assert "resumed from" in (logs / "restart-1" / f"worker_{rank}.log").read_text()
    # Accounting keeps both runs: the preempted one and the one that finished.
    assert [r[1] for r in cluster.sacct(slurm_id)] == ["PREEMPTED", "COMPLETED"]
    for node in PRODUCTION_NODES:
        assert f"node {node}" in followed.stdout


@pytest.mark.timeout(900)
def test_the_time_limit_signal_saves_and_requeues_before_the_limit(
    production_cluster: ProductionCluster, production_data: Path,
) -> None:
    """A real --time: Slurm sends USR1 `signal_seconds` before the limit (up to 60 s earlier),
    the ranks save, the script requeues the job before Slurm's TIMEOUT, once (the user's
    --max-restarts 1); the second run's signal finds no restarts left and the job ends FAILED
    with the requeue exit code, still before its limit, instead of being killed."""
    cluster = production_cluster
    work = cluster.workspace("timelimit")
    state = str(work / "state")
    sets = [*TINY_TRAIN_SETS, "epochs=400"]  # more than two runs of the limit can train, on an idle machine too
    submitted = cluster.rlaunch(
        "submit", "--backend", "slurm", "--nodes", "1", "--cpus", "2", "--name", "time-limit",
        "--time", "3", "--opt", "signal_seconds=100", "--max-restarts", "1",
        "--data-dir", str(production_data), "--output-dir", str(work / "out"), TRAINING_MEMORY,
        *[a for s in sets for a in ("--set", s)], RLAUNCH_STATE_DIR=state)
    job_id = submitted.stdout.strip().splitlines()[-1]
    slurm_id = json.loads((work / "state" / "jobs" / job_id / "record.json").read_text())[
        "backend_id"]
    wait_for(lambda: int(cluster.scontrol_job(slurm_id).get("Restarts", "0")) >= 1, 400,
             "the job to requeue itself on the time-limit signal")
    start_now(cluster, slurm_id)
    cluster.rlaunch("logs", "-f", job_id, RLAUNCH_STATE_DIR=state)
    final = json.loads(cluster.rlaunch("status", job_id, "--json", RLAUNCH_STATE_DIR=state).stdout)
    assert final["state"] == "FAILED" and final["exit_code"] == 75, final
    # Neither run reached TIMEOUT: the first was requeued, the second ended by itself.
    assert [r[1] for r in cluster.sacct(slurm_id)] == ["REQUEUED", "FAILED"]
    out = "".join(p.read_text() for p in (work / "state" / "jobs" / job_id).glob("slurm-*.out"))
    assert out.count("rlaunch: USR1 received") == 2
    assert "requeueing job" in out and "stopped with no restarts left (1/1)" in out
    logs = work / "state" / "jobs" / job_id / "logs"
    assert "resumed from" in (logs / "restart-1" / "worker_0.log").read_text()


def submit_one_node(cluster: ProductionCluster, data: Path, work: Path, *extra: str) -> tuple[str, str]:
    """A 1-node, 2-rank training far longer than the test waits; (rlaunch id, slurm id)."""
    sets = [*TINY_TRAIN_SETS, "epochs=400"]
    submitted = cluster.rlaunch(
        "submit", "--backend", "slurm", "--nodes", "1", "--cpus", "2",
        "--data-dir", str(data), "--output-dir", str(work / "out"),
        *[a for s in sets for a in ("--set", s)], *extra, RLAUNCH_STATE_DIR=str(work / "state"))
    job_id = submitted.stdout.strip().splitlines()[-1]
    record = json.loads((work / "state" / "jobs" / job_id / "record.json").read_text())
    return job_id, record["backend_id"]


@pytest.mark.timeout(600)
def test_a_job_that_asks_for_no_memory_is_killed_out_of_memory(
    production_cluster: ProductionCluster, production_data: Path,
) -> None:
    """No `--opt mem`: the job gets DefMemPerCPU x 2 CPUs, MindSpore's ranks need more, and the
    memory cgroup (ConstrainRAMSpace, swap held to the same limit) kills them: Slurm records the
    rank step OUT_OF_MEMORY and the job FAILED (its batch script was not the one killed), and
    `logs -f` ends showing srun's "Out Of Memory". The other tests ask `--opt mem` and run."""
    cluster = production_cluster
    work = cluster.workspace("oom")
    state = str(work / "state")
    job_id, slurm_id = submit_one_node(cluster, production_data, work, "--name", "no-memory")
    assert cluster.scontrol_job(slurm_id)["MinMemoryCPU"] == "256M"
    followed = cluster.rlaunch("logs", "-f", job_id, RLAUNCH_STATE_DIR=state, check=False)
    final = json.loads(cluster.rlaunch("status", job_id, "--json", RLAUNCH_STATE_DIR=state).stdout)
    assert final["state"] == "FAILED", (final, followed.stdout[-2000:])
    assert "task 0: Out Of Memory" in followed.stdout, followed.stdout[-3000:]
    assert "oom-kill event" in job_output_of(work, job_id)
    steps = cluster.run(["sacct", "-n", "-P", "-j", slurm_id, "-o", "JobID,State"]).stdout
    assert f"{slurm_id}.0|OUT_OF_MEMORY" in steps.split(), steps


def job_output_of(work: Path, job_id: str) -> str:
    return "".join(p.read_text(errors="replace")
                   for p in sorted((work / "state" / "jobs" / job_id).glob("slurm-*.out")))


def checkpoints(work: Path) -> list[str]:
    return sorted(p.name for p in (work / "out").rglob("epoch*.ckpt"))


@pytest.mark.timeout(600)
def test_a_plain_scancel_saves_a_checkpoint_and_ends_cancelled(
    production_cluster: ProductionCluster, production_data: Path,
) -> None:
    """The user's own `scancel` (not `rlaunch cancel`): Slurm sends TERM, then KILL after
    KillWait (30 s); the ranks save within that, and the job is not requeued (`scontrol
    requeue` would have brought it back: it did, before the batch script told the cases apart)."""
    cluster = production_cluster
    work = cluster.workspace("scancel")
    state = str(work / "state")
    job_id, slurm_id = submit_one_node(cluster, production_data, work, "--name", "scancelled",
                                       TRAINING_MEMORY, *SLOW_CHECKPOINTS)
    wait_for(lambda: step_events(work / "out"), 600, "the first training step")
    cluster.run(["scancel", slurm_id])
    followed = cluster.rlaunch("logs", "-f", job_id, RLAUNCH_STATE_DIR=state, check=False)
    final = json.loads(cluster.rlaunch("status", job_id, "--json", RLAUNCH_STATE_DIR=state).stdout)
    assert final["state"] == "CANCELLED" and final["restarts"] == 0, (final, followed.stdout[-2000:])
    logs = work / "state" / "jobs" / job_id / "logs" / "restart-0"
    for rank in range(2):
        assert "stopping on SIGTERM" in (logs / f"worker_{rank}.log").read_text()
    assert checkpoints(work), "no checkpoint saved within the kill wait"
    # The script says so unless msrun's teardown outlasts KillWait and the shell is killed first
    # (both seen); it never requeues (the stand-in test in test_slurm_render pins the decision).
    assert "requeueing job" not in job_output_of(work, job_id)
    assert [r[1].split()[0] for r in cluster.sacct(slurm_id)] == ["CANCELLED"]
    assert cluster.scontrol_job(slurm_id).get("Restarts", "0") == "0"


@pytest.mark.timeout(600)
def test_preempted_in_a_cancel_partition_it_saves_in_the_grace_time_and_requeues(
    production_cluster: ProductionCluster, production_data: Path,
) -> None:
    """`scavenger` has PreemptMode=CANCEL, GraceTime=30: Slurm sends TERM to the job's steps
    only (not to the batch shell) and would cancel the job after the grace time. The ranks save
    within it, the batch script learns of the preemption from PreemptTime and requeues the job
    while it still runs, without spending --max-restarts: the work is not lost."""
    cluster = production_cluster
    work = cluster.workspace("scavenger")
    state = str(work / "state")
    job_id, slurm_id = submit_one_node(cluster, production_data, work, "--name", "scavenged",
                                       "--partition", "scavenger", "--max-restarts", "0",
                                       TRAINING_MEMORY, *SLOW_CHECKPOINTS)
    wait_for(lambda: step_events(work / "out"), 600, "the first training step")
    node = cluster.scontrol_job(slurm_id)["NodeList"]
    cluster.run(["sbatch", "-p", "high", "-w", node, "-N1", "-n1", "--mem=64M", "-o", "/dev/null",
                 "--wrap", "sleep 2"])
    wait_for(lambda: int(cluster.scontrol_job(slurm_id).get("Restarts", "0")) >= 1, 300,
             "the preempted job to be requeued")
    logs = work / "state" / "jobs" / job_id / "logs" / "restart-0"
    for rank in range(2):
        assert "stopping on SIGTERM" in (logs / f"worker_{rank}.log").read_text()
    assert checkpoints(work)
    out = job_output_of(work, job_id)
    assert "rlaunch: preempted (TERM to the ranks only)" in out and "requeueing job" in out, out[-3000:]
    status = json.loads(cluster.rlaunch("status", job_id, "--json", RLAUNCH_STATE_DIR=state).stdout)
    assert status["state"] not in ("COMPLETED", "FAILED", "CANCELLED"), status  # it will run again
    cluster.rlaunch("cancel", job_id, RLAUNCH_STATE_DIR=state)


def admin(cluster: ProductionCluster, *argv: str) -> bool:
    """A Slurm command as the cluster's administrator (root), e.g. to take a node down."""
    import os
    import subprocess

    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "SLURM_CONF": cluster.slurm_conf}).returncode == 0


@pytest.mark.timeout(600)
def test_a_node_failure_requeues_the_job_without_spending_its_budget(
    production_cluster: ProductionCluster, production_data: Path,
) -> None:
    """The second node of a running 2-node job goes DOWN: Slurm kills the job, records the run
    NODE_FAIL and requeues it (--requeue) although the user allowed no restarts; rlaunch shows
    it waiting, not ended."""
    cluster = production_cluster
    work = cluster.workspace("nodefail")
    state = str(work / "state")
    job_id = submit_training(cluster, production_data, work, "--name", "node-fail",
                             "--max-restarts", "0")
    slurm_id = json.loads((work / "state" / "jobs" / job_id / "record.json").read_text())[
        "backend_id"]
    wait_for(lambda: step_events(work / "out"), 600, "the first training step")
    try:
        assert admin(cluster, "scontrol", "update", "nodename=gpu-a02", "state=down",
                     "reason=rlaunch-test-node-failure")
        wait_for(lambda: int(cluster.scontrol_job(slurm_id).get("Restarts", "0")) >= 1, 300,
                 "the job to be requeued after the node failure")
        status = json.loads(cluster.rlaunch("status", job_id, "--json",
                                            RLAUNCH_STATE_DIR=state).stdout)
        # Requeued, its old run still COMPLETING (shown RUNNING) or already PENDING: not final.
        assert status["state"] in ("PENDING", "REQUEUED", "RUNNING"), status
        wait_for(lambda: cluster.scontrol_job(slurm_id)["JobState"] == "PENDING", 120,
                 "the requeued job to wait for its next run")
        wait_for(lambda: [r[1] for r in cluster.sacct(slurm_id)][:1] == ["NODE_FAIL"], 60,
                 "accounting to record the failed run")
        assert not (work / "state" / "jobs" / job_id / "requeues").exists()
    finally:
        # ReturnToService=2 brings the node back once its slurmd registers again; `resume` is
        # for a node still DOWN (and refused for one already back).
        wait_for(lambda: cluster.run(["sinfo", "-h", "-n", "gpu-a02", "-o", "%T"]).stdout.strip()
                 in ("idle", "mixed", "allocated")
                 or admin(cluster, "scontrol", "update", "nodename=gpu-a02", "state=resume"),
                 120, "gpu-a02 to be back", poll=5)
        cluster.rlaunch("cancel", job_id, RLAUNCH_STATE_DIR=state, check=False)
