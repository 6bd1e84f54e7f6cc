"""Where ranks land on the real multi-node Slurm: the CPUs each rank may use (task/affinity) and
the Ascend rank and card each process takes from the rank table.

The rank program is a stand-in for resnest/train.py (a job file's `code_dir` points at it): it
reports what the launcher gave it and exits, so these tests take seconds, not a training run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from .conftest import NODES, job_output, scontrol_job, slurm_id_of, submit, wait_finished, wait_for

pytestmark = pytest.mark.integration

REPORTER = textwrap.dedent('''\
    """Stand-in rank: writes what it was given to <output-dir>/report-<pid>.json."""
    import json, os, socket, sys
    out = sys.argv[sys.argv.index("--output-dir") + 1]
    os.makedirs(out, exist_ok=True)
    report = {
        "host": socket.gethostname(),
        "cpus": sorted(os.sched_getaffinity(0)),
        "env": {k: os.environ.get(k) for k in ("RANK_ID", "DEVICE_ID", "SLURM_PROCID",
                                               "SLURM_LOCALID", "RANK_TABLE_FILE", "MS_ROLE")},
    }
    with open(os.path.join(out, f"report-{socket.gethostname()}-{os.getpid()}.json"), "w") as fh:
        json.dump(report, fh)
''')


def stand_in_job(tmp_path: Path, data_dir: Path, **fields: object) -> Path:
    """A job file whose code dir holds the reporting stand-in as resnest/train.py."""
    for split in ("train", "val"):  # the layout submit's preflight checks look for
        (data_dir / split / "c").mkdir(parents=True, exist_ok=True)
        (data_dir / split / "c" / "x.jpg").write_bytes(b"")
    code = tmp_path / "code"
    (code / "resnest").mkdir(parents=True)
    (code / "resnest" / "train.py").write_text(REPORTER)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"code_dir": str(code), "data_dir": str(data_dir),
                                   "output_dir": str(tmp_path / "out"), **fields}))
    return job


def reports(out: Path) -> list[dict]:
    """The ranks' reports (msrun also runs the script as its scheduler process: left out)."""
    found = [json.loads(p.read_text()) for p in sorted(out.glob("report-*.json"))]
    return [r for r in found if r["env"]["MS_ROLE"] != "MS_SCHED"]


@pytest.mark.timeout(300)
def test_multinode_gpu_ranks_get_more_than_one_cpu(
    multinode_cluster: dict[str, str], tmp_path: Path, state_dir: Path
) -> None:
    """`--gpus 2 --nodes 2`: 2 CPUs per node (sinfo: 2 CPUs / 8 GPUs -> at least 1 per GPU),
    asked for in the allocation and handed to srun; each rank may use both."""
    env = {**multinode_cluster, "RLAUNCH_STATE_DIR": str(state_dir)}
    job = stand_in_job(tmp_path, tmp_path)
    dry = subprocess.run([str(Path(sys.executable).parent / "rlaunch"), "submit", "--backend",
                          "slurm", "--file", str(job), "--nodes", "2", "--gpus", "2", "--dry-run"],
                         capture_output=True, text=True, env={**os.environ, **env}, check=True)
    assert "#SBATCH --cpus-per-task=2" in dry.stdout
    assert "export SRUN_CPUS_PER_TASK=2" in dry.stdout
    job_id = submit("--file", str(job), "--nodes", "2", "--gpus", "2", "--name", "multinode-cpus",
                    "--env", "RESNEST_CPU_STANDS_IN_FOR_DEVICES=1", env=env)
    assert scontrol_job(slurm_id_of(job_id, state_dir), env)["CPUs/Task"] == "2"
    final = wait_finished(job_id, env, 240)
    assert final["state"] == "COMPLETED", job_output(job_id, state_dir)[-3000:]
    found = reports(tmp_path / "out")
    assert sorted(r["env"]["RANK_ID"] for r in found) == ["0", "1", "2", "3"]
    assert {r["host"] for r in found} == set(NODES)
    for report in found:
        assert len(report["cpus"]) > 1, report


@pytest.mark.timeout(300)
def test_multinode_old_request_without_cpus_binds_ranks_to_one_cpu(
    multinode_cluster: dict[str, str], tmp_path: Path
) -> None:
    """The request rlaunch rendered before (one task per node, GPUs, no CPUs): Slurm gives one
    CPU per task, task/affinity binds to it, and every rank of the node shares that CPU."""
    env = {**os.environ, **multinode_cluster}
    job = stand_in_job(tmp_path, tmp_path)
    code = yaml.safe_load(job.read_text())["code_dir"]
    out = tmp_path / "out"
    script = tmp_path / "old.sh"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/bash
        #SBATCH --nodes=2
        #SBATCH --ntasks-per-node=1
        #SBATCH --gpus-per-node=2
        cd {code}
        export PATH={Path(sys.executable).parent}:"$PATH"
        srun --ntasks-per-node=1 bash -c 'for i in 0 1; do python resnest/train.py --output-dir {out} & done; wait'
        """))
    slurm_id = subprocess.run(["sbatch", "--parsable", f"--output={tmp_path}/old-%j.out",
                               str(script)], capture_output=True, text=True, env=env,
                              check=True).stdout.strip()
    wait_for(lambda: scontrol_job(slurm_id, multinode_cluster)["JobState"] in
             ("COMPLETED", "FAILED"), 240, "the old-style job")
    assert scontrol_job(slurm_id, multinode_cluster)["JobState"] == "COMPLETED"
    found = reports(out)
    assert len(found) == 4 and {r["host"] for r in found} == set(NODES)
    for report in found:
        assert len(report["cpus"]) == 1, report


@pytest.mark.timeout(300)
def test_multinode_ascend_ranks_follow_the_rank_table_not_slurm_order(
    multinode_cluster: dict[str, str], tmp_path: Path, state_dir: Path
) -> None:
    """2 nodes x 2 cards. The nodes' addresses sort against their names (rlnode0 = .12,
    rlnode1 = .11), so the rank table (server order by server_id) lists rlnode1 first while
    Slurm numbers rlnode0's tasks 0-1. Every process must take the rank and card of its own
    server's entry: RANK_ID = SLURM_PROCID would give rlnode0 the ranks of rlnode1's cards."""
    env = {**multinode_cluster, "RLAUNCH_STATE_DIR": str(state_dir)}
    job = stand_in_job(tmp_path, tmp_path)
    job_id = submit("--file", str(job), "--nodes", "2", "--ascend", "2", "--name",
                    "multinode-ascend", env=env)
    final = wait_finished(job_id, env, 240)
    assert final["state"] == "COMPLETED", job_output(job_id, state_dir)[-3000:]
    table = json.loads((state_dir / "jobs" / job_id / "rank_table.json").read_text())
    hosts = (Path("/var/tmp/rlaunch-slurm-multi/nodes"))
    address = {}
    for node in NODES:  # the node's address as its stand-in /etc/hosts gives it
        for line in (hosts / node / "hosts").read_text().splitlines():
            ip, name = line.split()
            address[name] = ip
    entry_of = {server["server_id"]: server for server in table["server_list"]}
    found = reports(tmp_path / "out")
    assert len(found) == 4
    assert sorted(r["env"]["RANK_ID"] for r in found) == ["0", "1", "2", "3"]
    procid_differs = False
    for report in found:
        server = entry_of[address[report["host"]]]
        mine = {d["rank_id"]: d["device_id"] for d in server["device"]}
        rank, card = report["env"]["RANK_ID"], report["env"]["DEVICE_ID"]
        assert mine.get(rank) == card, (report, server)
        assert card == report["env"]["SLURM_LOCALID"]  # cards 0-1, in the table's order
        procid_differs |= rank != report["env"]["SLURM_PROCID"]
    assert procid_differs, "the cluster's node order should differ from the table's"
    assert [s["server_id"] for s in table["server_list"]] == sorted(entry_of)
    assert "--exclusive" in (state_dir / "jobs" / job_id / "sbatch.sh").read_text()
