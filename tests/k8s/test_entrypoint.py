"""The pod entrypoint script, run for real with bash and a stand-in for the training program.

The stand-in records the rank environment each process got, and can fail or wait for SIGTERM,
so these tests check rank assignment, rank-table waiting, failure and signal propagation.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher.backends.k8s import KubernetesBackend
from launcher.spec import JobSpec
from resnest.contract import REQUEUE_EXIT_CODE

pytestmark = pytest.mark.timeout(120)

FAKE_TRAIN = r"""#!/bin/bash
me="${RANK_ID:-${MS_NODE_ID:-sched}}"
trap 'kill $! 2>/dev/null; echo "term $me" >> "$FAKE_LOG"; exit 75' TERM
echo "role=${MS_ROLE:-} rank=${RANK_ID:-} dev=${DEVICE_ID:-} node=${MS_NODE_ID:-}" \
     "sched=${MS_SCHED_HOST:-}:${MS_SCHED_PORT:-} workers=${MS_WORKER_NUM:-}" \
     "size=${RANK_SIZE:-} args=$*" >> "$FAKE_LOG"
case "${FAKE_MODE:-ok}" in
  ok) exit 0 ;;
  fail) if [ "$me" = "$FAKE_FAIL_RANK" ]; then
          # Fail only once every rank is up (and has its TERM trap), like a real crash mid-run.
          for _ in $(seq 300); do
            [ "$(grep -c '^role=' "$FAKE_LOG")" -ge "$FAKE_RANKS" ] && break
            sleep 0.1
          done
          exit 3
        fi ;;
esac
sleep 60 & wait
"""


def render_entrypoint(spec: JobSpec) -> tuple[str, dict[str, Any]]:
    """The entrypoint script and the ConfigMap that carries it."""
    backend = KubernetesBackend()
    # The image's code dir does not exist here; the scripts run from /tmp.
    spec = spec.replace(code_dir=spec.code_dir or "/tmp")
    spec, opts = backend.prepare(spec, backend.options_of(spec))
    assert spec.problems() + backend.problems(spec, opts) == []
    docs = [d for d in yaml.safe_load_all(backend.render(spec, opts).files["manifests.yaml"]) if d]
    config = next(d for d in docs if d["metadata"]["name"].endswith("-rlaunch"))
    return config["data"]["entrypoint.sh"], config


@pytest.fixture()
def fake(tmp_path: Path) -> Path:
    path = tmp_path / "fake-train"
    path.write_text(FAKE_TRAIN)
    path.chmod(0o755)
    return path


def ascend_spec(tmp_path: Path, fake: Path, chip: str | None = None,
                **options: Any) -> JobSpec:
    ips = tmp_path / "ips.yaml"
    ips.write_text(yaml.safe_dump({f"10.0.0.{s}": [f"192.168.{s}.{c}" for c in range(8)]
                                   for s in (1, 2)}))
    return JobSpec(name="resnest", backend="k8s", device_kind="ascend", devices_per_node=8,
                   nodes=2, data_dir="/data", output_dir="/out", python=str(fake),
                   ascend_chip=chip, backend_options={"device_ips": str(ips), **options}).validate()


def prepare_script(script: str, tmp_path: Path, table: str | None,
                   config: dict[str, Any]) -> Path:
    """Point the script at local copies of the pod's mounts (the ConfigMap's files)."""
    table_path = tmp_path / "hccl.json"
    if table is not None:
        table_path.write_text(table)
    lookup = tmp_path / "rank_entry.py"
    lookup.write_text(config["data"]["rank_entry.py"])
    script = script.replace("/opt/rlaunch/hccl.json", str(table_path))
    script = script.replace("/user/serverid/devindex/config/hccl.json", str(table_path))
    script = script.replace("/opt/rlaunch/rank_entry.py", str(lookup))
    path = tmp_path / "entrypoint.sh"
    path.write_text(script)
    return path


def run(path: Path, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], str]:
    log = tmp_path / "fake.log"
    done = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=90,
                          check=False, env={**os.environ, "FAKE_LOG": str(log), **env})
    return done, log.read_text() if log.exists() else ""


def ranked(log: str) -> list[str]:
    return sorted(log.splitlines(), key=lambda line: int(line.split("rank=")[1].split()[0]))


def test_ascend_ranks_come_from_this_nodes_rank_table_entry(tmp_path: Path, fake: Path) -> None:
    script, config = render_entrypoint(ascend_spec(tmp_path, fake, workload="vcjob"))
    path = prepare_script(script, tmp_path, config["data"]["hccl.json"], config)
    done, log = run(path, tmp_path, HOST_IP="10.0.0.2")
    assert done.returncode == 0, done.stderr
    lines = ranked(log)
    assert len(lines) == 8
    for card, line in enumerate(lines):
        # Ranks from the table; DEVICE_ID is the card's index inside the container.
        assert f"role= rank={8 + card} dev={card} node= " in line
        assert "size=16 " in line
        assert "args=resnest/train.py --data-dir /data --output-dir /out" in line


def test_ascend_cards_4_to_7_are_devices_0_to_3_in_the_container(tmp_path: Path,
                                                                 fake: Path) -> None:
    spec = ascend_spec(tmp_path, fake, chip="910").replace(devices_per_node=4,
                                                           device_ids=[4, 5, 6, 7])
    script, config = render_entrypoint(spec)
    table = json.loads(config["data"]["hccl.json"])
    assert [d["device_id"] for d in table["server_list"][0]["device"]] == ["4", "5", "6", "7"]
    path = prepare_script(script, tmp_path, config["data"]["hccl.json"], config)
    done, log = run(path, tmp_path, HOST_IP="10.0.0.1",
                    ASCEND_VISIBLE_DEVICES="Ascend910-4,Ascend910-5,Ascend910-6,Ascend910-7")
    assert done.returncode == 0, done.stderr
    assert [line.split(" sched=")[0] for line in ranked(log)] == [
        f"role= rank={r} dev={r} node=" for r in range(4)]
    # The device plugin gave this pod the other ring: the table cannot be right for it.
    (tmp_path / "fake.log").unlink()
    done, log = run(path, tmp_path, HOST_IP="10.0.0.1",
                    ASCEND_VISIBLE_DEVICES="Ascend910-0,Ascend910-1,Ascend910-2,Ascend910-3")
    assert done.returncode == 1
    assert "given cards 0,1,2,3 but the rank table lists cards 4,5,6,7" in done.stderr
    assert log == ""


def test_ascendjob_worker_keeps_the_operators_mindspore_variables(tmp_path: Path,
                                                                  fake: Path) -> None:
    """What the operator injects (pkg/controllers/v1/env.go setMindSporeEnv) is used as is."""
    spec = ascend_spec(tmp_path, fake).replace(backend_options={"workload": "acjob"})
    script, config = render_entrypoint(spec)
    assert "hccl.json" not in config["data"] and "RANK_TABLE_FILE" not in script
    path = prepare_script(script, tmp_path, None, config)
    operator_env = {"MS_ROLE": "MS_WORKER", "MS_SCHED_HOST": "10.9.0.5", "MS_SCHED_PORT": "8118",
                    "MS_WORKER_NUM": "16", "MS_LOCAL_WORKER": "8", "MS_NODE_RANK": "1"}
    done, log = run(path, tmp_path, HOST_IP="10.0.0.2")
    assert done.returncode == 1
    assert "MS_NODE_RANK / MS_LOCAL_WORKER unset" in done.stderr
    done, log = run(path, tmp_path, HOST_IP="10.0.0.2", **operator_env)
    assert done.returncode == 0, done.stderr
    for card, line in enumerate(ranked(log)):
        assert line.startswith(f"role=MS_WORKER rank={8 + card} dev={card} node={8 + card} "
                               "sched=10.9.0.5:8118 workers=16 size=16 ")
    (tmp_path / "fake.log").unlink()
    # The Scheduler pod has no cards: it runs the scheduler process only.
    done, log = run(path, tmp_path, **{**operator_env, "MS_ROLE": "MS_SCHED"})
    assert done.returncode == 0, done.stderr
    assert log.startswith("role=MS_SCHED rank= dev= ") and len(log.splitlines()) == 1


def test_first_failure_stops_the_others_and_sets_the_exit_code(tmp_path: Path,
                                                               fake: Path) -> None:
    script, config = render_entrypoint(ascend_spec(tmp_path, fake))
    path = prepare_script(script, tmp_path, config["data"]["hccl.json"], config)
    done, log = run(path, tmp_path, HOST_IP="10.0.0.1",
                    FAKE_MODE="fail", FAKE_FAIL_RANK="3", FAKE_RANKS="8")
    assert done.returncode == 3
    assert "a process exited with 3; stopping the others" in done.stderr
    assert sorted(line for line in log.splitlines() if line.startswith("term")) == sorted(
        f"term {r}" for r in (0, 1, 2, 4, 5, 6, 7))


def test_sigterm_is_forwarded_and_the_requeue_code_comes_back(tmp_path: Path,
                                                              fake: Path) -> None:
    script, config = render_entrypoint(ascend_spec(tmp_path, fake))
    path = prepare_script(script, tmp_path, config["data"]["hccl.json"], config)
    log = tmp_path / "fake.log"
    proc = subprocess.Popen(["bash", str(path)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "FAKE_LOG": str(log), "FAKE_MODE": "wait",
                                 "HOST_IP": "10.0.0.1"})
    deadline = time.monotonic() + 60
    while (not log.exists() or len(log.read_text().splitlines()) < 8) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == REQUEUE_EXIT_CODE
    assert len([ln for ln in log.read_text().splitlines() if ln.startswith("term")]) == 8


def test_time_limit_asks_for_a_checkpoint_per_attempt(tmp_path: Path, fake: Path) -> None:
    """--time 1 (minute) with 55 s grace: the signal comes after 5 s, the pod exits 75."""
    spec = ascend_spec(tmp_path, fake, grace_seconds=55).replace(time_limit="1")
    script, config = render_entrypoint(spec)
    path = prepare_script(script, tmp_path, config["data"]["hccl.json"], config)
    done, log = run(path, tmp_path, HOST_IP="10.0.0.1", FAKE_MODE="wait")
    assert done.returncode == REQUEUE_EXIT_CODE, done.stderr
    assert "time limit: asking the processes to save and stop" in done.stderr
    assert len([ln for ln in log.splitlines() if ln.startswith("term")]) == 8


def test_node_missing_from_the_rank_table_is_a_clear_error(tmp_path: Path, fake: Path) -> None:
    script, config = render_entrypoint(ascend_spec(tmp_path, fake))
    path = prepare_script(script, tmp_path, config["data"]["hccl.json"], config)
    done, log = run(path, tmp_path, HOST_IP="10.9.9.9", POD_IP="172.16.0.4", POD_UID="u-1")
    assert done.returncode == 1
    assert "has no entry for host_ip=10.9.9.9 pod_ip=172.16.0.4 ids=u-1,10.9.9.9" in done.stderr
    assert log == ""


def test_operator_rank_table_wait_is_bounded(tmp_path: Path, fake: Path) -> None:
    spec = JobSpec(name="resnest", backend="k8s", device_kind="ascend", devices_per_node=8,
                   data_dir="/data", output_dir="/out", python=str(fake),
                   backend_options={"rank_table_timeout": 0, "workload": "vcjob"}).validate()
    script, config = render_entrypoint(spec)
    path = prepare_script(script, tmp_path, json.dumps({"status": "initializing"}), config)
    done, log = run(path, tmp_path, HOST_IP="10.0.0.1")
    assert done.returncode == 1
    assert "not completed for this pod (POD_IP=unset POD_UID=unset) after 0s" in done.stderr
    assert "is the MindX DL ascend-operator running and watching this vcjob?" in done.stderr
    assert log == ""


def operator_table(pod_ip: str, uid: str, host_ip: str, first_rank: int) -> dict[str, Any]:
    """One server of a table as the operator writes it (common.go: container_ip = pod IP)."""
    return {"server_id": uid, "host_ip": host_ip, "container_ip": pod_ip,
            "device": [{"device_id": str(c), "device_ip": f"192.168.1.{c}",
                        "rank_id": str(first_rank + c)} for c in range(8)]}


def test_a_restarted_pod_waits_for_a_table_that_names_it(tmp_path: Path, fake: Path) -> None:
    """After a Volcano restart the previous attempt's completed table is still mounted: its
    entry for this node (same host_ip) is not this pod's, so the pod keeps waiting for one that
    names its pod IP or UID (ascend-operator pkg/controllers/v1/pod.go handleCompletedRankTable)."""
    spec = JobSpec(name="resnest", backend="k8s", device_kind="ascend", devices_per_node=8,
                   nodes=2, data_dir="/data", output_dir="/out", python=str(fake),
                   backend_options={"rank_table_timeout": 1}).validate()
    script, config = render_entrypoint(spec)
    stale = {"status": "completed", "version": "1.0", "server_count": "2", "server_list": [
        operator_table("172.16.1.1", "old-uid-a", "10.0.0.1", 8),
        operator_table("172.16.2.1", "old-uid-b", "10.0.0.2", 0)]}
    path = prepare_script(script, tmp_path, json.dumps(stale), config)
    me = {"HOST_IP": "10.0.0.1", "POD_IP": "172.16.1.7", "POD_UID": "new-uid-a"}
    done, log = run(path, tmp_path, **me)
    assert done.returncode == 1
    assert "not completed for this pod (POD_IP=172.16.1.7 POD_UID=new-uid-a)" in done.stderr
    assert log == ""
    # The operator's new table: this pod is now server 0 (by its UID), ranks 0-7.
    fresh = {**stale, "server_list": [
        operator_table("172.16.1.7", "new-uid-a", "10.0.0.1", 0),
        operator_table("172.16.2.9", "new-uid-b", "10.0.0.2", 8)]}
    (tmp_path / "hccl.json").write_text(json.dumps(fresh))
    done, log = run(path, tmp_path, **me)
    assert done.returncode == 0, done.stderr
    assert [line.split()[1] for line in ranked(log)] == [f"rank={r}" for r in range(8)]
    assert "HCCL_CONNECT_TIMEOUT" in script


def gpu_script(tmp_path: Path, fake: Path, port: int, workload: str) -> tuple[str, Path]:
    spec = JobSpec(name="resnest", job_id="resnest-1a2b3c", backend="k8s", device_kind="gpu",
                   devices_per_node=2, nodes=2, data_dir="/data", output_dir="/out",
                   python=str(fake), master_port=port,
                   backend_options={"workload": workload}).validate()
    script, config = render_entrypoint(spec)
    host = {"jobset": "resnest-1a2b3c-node-0-0.resnest-1a2b3c",
            "vcjob": "resnest-1a2b3c-node-0.resnest-1a2b3c"}[workload]
    assert f"SCHED_HOST={host}\n" in script
    # No cluster DNS here: the scheduler's name is the only thing swapped for a local one.
    local = script.replace(f"SCHED_HOST={host}\n", "SCHED_HOST=localhost\n")
    return local, prepare_script(local, tmp_path, None, config)


@pytest.mark.parametrize(("workload", "index_env"), [("jobset", "JOB_COMPLETION_INDEX"),
                                                      ("vcjob", "VC_TASK_INDEX")])
def test_gpu_dynamic_cluster_scheduler_on_node_0(tmp_path: Path, fake: Path, workload: str,
                                                 index_env: str) -> None:
    with socket.socket() as sock:  # node 0's scheduler, answering on its port
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        _, path = gpu_script(tmp_path, fake, port, workload)
        done, log = run(path, tmp_path, **{index_env: "0"})
        assert done.returncode == 0, done.stderr
        lines = sorted(log.splitlines())
        assert len(lines) == 3
        assert lines[0].startswith("role=MS_SCHED ")
        assert lines[1].startswith("role=MS_WORKER rank= dev=0 node=0 ")
        assert lines[2].startswith("role=MS_WORKER rank= dev=1 node=1 ")
        for line in lines:
            assert f"sched=127.0.0.1:{port} " in line  # IPv4, as MindSpore wants
            assert "workers=4 " in line

        (tmp_path / "fake.log").unlink()
        done, log = run(path, tmp_path, **{index_env: "1"})
        assert done.returncode == 0, done.stderr
        assert sorted(line.split(" sched=")[0] for line in log.splitlines()) == [
            "role=MS_WORKER rank= dev=0 node=2", "role=MS_WORKER rank= dev=1 node=3"]


def test_gpu_node_waits_for_the_scheduler_then_gives_up_clearly(tmp_path: Path,
                                                                fake: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _, path = gpu_script(tmp_path, fake, port, "jobset")
    done, log = run(path, tmp_path, JOB_COMPLETION_INDEX="1", MS_TOPO_TIMEOUT="3")
    assert done.returncode == 1
    assert f"the scheduler localhost:{port} did not answer in time" in done.stderr
    assert log == ""
    done, _ = run(path, tmp_path)
    assert done.returncode == 1
    assert "JOB_COMPLETION_INDEX is unset: not a pod of a jobset" in done.stderr
