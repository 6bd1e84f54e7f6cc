"""The pod entrypoint script, run for real with bash and a stand-in for the training program.

The stand-in records the rank environment each process got, and can fail or wait for SIGTERM,
so these tests check rank assignment, rank-table waiting, failure and signal propagation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher.backends.k8s import KubernetesBackend
from launcher.spec import JobSpec

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
    assert backend.problems(spec) == []
    docs = [d for d in yaml.safe_load_all(backend.render(spec).files["manifests.yaml"]) if d]
    config = next(d for d in docs if d["metadata"]["name"].endswith("-rlaunch"))
    return config["data"]["entrypoint.sh"], config


@pytest.fixture()
def fake(tmp_path: Path) -> Path:
    path = tmp_path / "fake-train"
    path.write_text(FAKE_TRAIN)
    path.chmod(0o755)
    return path


def ascend_spec(tmp_path: Path, fake: Path, **options: Any) -> JobSpec:
    ips = tmp_path / "ips.yaml"
    ips.write_text(yaml.safe_dump({f"10.0.0.{s}": [f"192.168.{s}.{c}" for c in range(8)]
                                   for s in (1, 2)}))
    return JobSpec(name="resnest", backend="k8s", device_kind="ascend", devices_per_node=8,
                   nodes=2, data_dir="/data", output_dir="/out", python=str(fake),
                   backend_options={"device_ips": str(ips), **options}).validate()


def prepare_script(script: str, tmp_path: Path, table: str | None) -> Path:
    """Point the script at local paths instead of the pod's mounts."""
    table_path = tmp_path / "hccl.json"
    if table is not None:
        table_path.write_text(table)
    script = script.replace("/opt/rlaunch/hccl.json", str(table_path))
    script = script.replace("/user/serverid/devindex/config/hccl.json", str(table_path))
    path = tmp_path / "entrypoint.sh"
    path.write_text(script)
    return path


def run(path: Path, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], str]:
    log = tmp_path / "fake.log"
    done = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=90,
                          check=False, env={**os.environ, "FAKE_LOG": str(log), **env})
    return done, log.read_text() if log.exists() else ""


def test_ascend_ranks_come_from_this_nodes_rank_table_entry(tmp_path: Path, fake: Path) -> None:
    script, config = render_entrypoint(ascend_spec(tmp_path, fake))
    path = prepare_script(script, tmp_path, config["data"]["hccl.json"])
    done, log = run(path, tmp_path, JOB_COMPLETION_INDEX="0", HOST_IP="10.0.0.2")
    assert done.returncode == 0, done.stderr
    lines = sorted(log.splitlines(), key=lambda line: int(line.split("rank=")[1].split()[0]))
    assert len(lines) == 8
    for card, line in enumerate(lines):
        assert f"rank={8 + card} dev={card} " in line
        assert "size=16 " in line
        assert "args=resnest/train.py --data-dir /data --output-dir /out" in line


def test_first_failure_stops_the_others_and_sets_the_exit_code(tmp_path: Path,
                                                               fake: Path) -> None:
    script, config = render_entrypoint(ascend_spec(tmp_path, fake))
    path = prepare_script(script, tmp_path, config["data"]["hccl.json"])
    done, log = run(path, tmp_path, JOB_COMPLETION_INDEX="0", HOST_IP="10.0.0.1",
                    FAKE_MODE="fail", FAKE_FAIL_RANK="3", FAKE_RANKS="8")
    assert done.returncode == 3
    assert "a process exited with 3; stopping the others" in done.stderr
    assert sorted(line for line in log.splitlines() if line.startswith("term")) == sorted(
        f"term {r}" for r in (0, 1, 2, 4, 5, 6, 7))


def test_sigterm_is_forwarded_and_the_requeue_code_comes_back(tmp_path: Path,
                                                              fake: Path) -> None:
    script, config = render_entrypoint(ascend_spec(tmp_path, fake))
    path = prepare_script(script, tmp_path, config["data"]["hccl.json"])
    log = tmp_path / "fake.log"
    proc = subprocess.Popen(["bash", str(path)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "FAKE_LOG": str(log), "FAKE_MODE": "wait",
                                 "JOB_COMPLETION_INDEX": "0", "HOST_IP": "10.0.0.1"})
    deadline = time.monotonic() + 60
    while (not log.exists() or len(log.read_text().splitlines()) < 8) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 75
    assert len([ln for ln in log.read_text().splitlines() if ln.startswith("term")]) == 8


def test_node_missing_from_the_rank_table_is_a_clear_error(tmp_path: Path, fake: Path) -> None:
    script, config = render_entrypoint(ascend_spec(tmp_path, fake))
    path = prepare_script(script, tmp_path, config["data"]["hccl.json"])
    done, log = run(path, tmp_path, JOB_COMPLETION_INDEX="0", HOST_IP="10.9.9.9")
    assert done.returncode == 1
    assert "has 0 devices for this node (HOST_IP=10.9.9.9), expected 8" in done.stderr
    assert log == ""


def test_operator_rank_table_wait_is_bounded(tmp_path: Path, fake: Path) -> None:
    spec = JobSpec(name="resnest", backend="k8s", device_kind="ascend", devices_per_node=8,
                   data_dir="/data", output_dir="/out", python=str(fake),
                   backend_options={"rank_table_timeout": 0}).validate()
    script, _ = render_entrypoint(spec)
    path = prepare_script(script, tmp_path, json.dumps({"status": "initializing"}))
    done, log = run(path, tmp_path, JOB_COMPLETION_INDEX="0", HOST_IP="10.0.0.1")
    assert done.returncode == 1
    assert "not completed after 0s" in done.stderr
    assert "hccl-controller" in done.stderr
    assert log == ""


def test_gpu_dynamic_cluster_scheduler_on_index_0(tmp_path: Path, fake: Path) -> None:
    spec = JobSpec(name="resnest", backend="k8s", device_kind="gpu", devices_per_node=2,
                   nodes=2, data_dir="/data", output_dir="/out", python=str(fake),
                   master_port=8118).validate()
    script, _ = render_entrypoint(spec)
    assert "SCHED_HOST=resnest-0.resnest\n" in script
    # No cluster DNS here: the scheduler's name is the only thing swapped for a local one.
    path = prepare_script(script.replace("SCHED_HOST=resnest-0.resnest\n",
                                         "SCHED_HOST=localhost\n"), tmp_path, None)
    done, log = run(path, tmp_path, JOB_COMPLETION_INDEX="0")
    assert done.returncode == 0, done.stderr
    lines = sorted(log.splitlines())
    assert len(lines) == 3
    assert lines[0].startswith("role=MS_SCHED ")
    assert lines[1].startswith("role=MS_WORKER rank= dev=0 node=0 ")
    assert lines[2].startswith("role=MS_WORKER rank= dev=1 node=1 ")
    for line in lines:
        sched = line.split("sched=")[1].split()[0]
        assert sched in ("127.0.0.1:8118", "::1:8118")
        assert "workers=4 " in line

    (tmp_path / "fake.log").unlink()
    done, log = run(path, tmp_path, JOB_COMPLETION_INDEX="1")
    assert done.returncode == 0, done.stderr
    assert sorted(line.split(" sched=")[0] for line in log.splitlines()) == [
        "role=MS_WORKER rank= dev=0 node=2", "role=MS_WORKER rank= dev=1 node=3"]
