"""A job's life on an emulated MindX DL / Volcano / JobSet cluster (tests/k8s/emulators.py).

What is submitted is the rendered manifests, over real HTTP to the kmock API server; the
emulated controllers create the pods and the rank table as upstream does; then each pod's own
entrypoint (the script from the ConfigMap that was sent) runs here with the environment that pod
would have, and a stand-in trainer records the ranks it was given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from launcher.backends.base import COMPLETED, FAILED, REQUEUED, RUNNING
from launcher.backends.k8s import KubernetesBackend
from launcher.spec import JobSpec
from launcher.store import JobRecord
from tests.k8s.conftest import NAMESPACE, KubeServer, serve_log
from tests.k8s.emulators import (
    ACJOBS,
    BATCH_JOBS,
    JOBSETS,
    VCJOBS,
    Cluster,
    DevicePlugin,
)
from tests.k8s.test_entrypoint import FAKE_TRAIN, prepare_script, run

pytestmark = pytest.mark.timeout(120)
JOB = "resnest-0a0b0c"
# Two servers whose IPs sort differently as numbers and as strings.
NODES = ["10.0.0.9", "10.0.0.10"]


def submit(tmp_path: Path, **fields: Any) -> JobRecord:
    backend = KubernetesBackend()
    spec = JobSpec(
        name="resnest", job_id=JOB, backend="k8s", data_dir="/data", output_dir="/out",
        code_dir="/tmp", python=str(tmp_path / "fake-train"), **fields)
    spec, opts = backend.prepare(spec, backend.options_of(spec))
    assert spec.problems() + backend.problems(spec, opts) == []
    rendered = backend.render(spec, opts)
    rendered.write(tmp_path / JOB)
    backend_id = backend.submit(spec, rendered, tmp_path / JOB)
    assert backend_id == f"{NAMESPACE}/{JOB}"
    (tmp_path / "fake-train").write_text(FAKE_TRAIN)
    (tmp_path / "fake-train").chmod(0o755)
    return JobRecord(id=JOB, backend="k8s", spec=spec.to_dict(), job_dir=str(tmp_path),
                           output_dir=spec.output_dir, backend_id=backend_id)


def run_pod(kube: KubeServer, cluster: Cluster, pod: str, tmp_path: Path) -> list[dict[str, str]]:
    """Run pod `pod`'s entrypoint (as sent) with its environment and mounted rank table."""
    config = kube.objects("configmaps")[f"{JOB}-rlaunch"]
    rings = kube.objects("configmaps").get(f"rings-config-{JOB}")
    table = (rings or config)["data"].get("hccl.json")
    workdir = tmp_path / pod
    workdir.mkdir(exist_ok=True)
    path = prepare_script(config["data"]["entrypoint.sh"], workdir, table, config)
    done, log = run(path, workdir, **cluster.pod_env(pod))
    assert done.returncode == 0, done.stderr
    return [dict(word.split("=", 1) for word in line.split() if "=" in word
                 and not word.startswith("args=")) for line in log.splitlines()]


def node_pods(cluster: Cluster, prefix: str) -> list[str]:
    return sorted(n for n in cluster.pods if n.startswith(prefix))


@pytest.mark.parametrize(("chip", "server_id"), [("910", "pod-uid"), ("910b", "node-ip")])
def test_volcano_job_gets_the_operators_table_and_each_pod_finds_its_ranks(
        kube: KubeServer, tmp_path: Path, chip: str, server_id: str) -> None:
    rec = submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=2,
                 ascend_chip=chip, backend_options={"workload": "vcjob"})
    assert set(kube.objects(*VCJOBS)) == {JOB}
    cluster = Cluster(kube, DevicePlugin(NODES, server_id=server_id))
    cluster.reconcile()
    table = json.loads(kube.objects("configmaps")[f"rings-config-{JOB}"]["data"]["hccl.json"])
    assert table["status"] == "completed"
    uids = {p["metadata"]["uid"] for p in cluster.pods.values()}
    assert {s["server_id"] in uids for s in table["server_list"]} == {server_id == "pod-uid"}

    seen: set[int] = set()
    for index, pod in enumerate(node_pods(cluster, f"{JOB}-node-")):
        ranks = run_pod(kube, cluster, pod, tmp_path)
        assert sorted(int(r["dev"]) for r in ranks) == list(range(8))  # local card indexes
        assert all(r["size"] == "16" and r["role"] == "" for r in ranks)
        # The rank index decides the pod's ranks (common.go getDeviceList).
        assert {int(r["rank"]) for r in ranks} == set(range(8 * index, 8 * index + 8))
        seen |= {int(r["rank"]) for r in ranks}
    assert sorted(seen) == list(range(16))
    status = KubernetesBackend().status(rec)
    assert (status.state, status.detail) == (RUNNING, "2/2 pods running")


@pytest.mark.parametrize("chip", ["910", "910b"])
def test_ascendjob_pods_take_their_ranks_from_the_operator(kube: KubeServer, tmp_path: Path,
                                                           chip: str) -> None:
    rec = submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=2,
                 ascend_chip=chip)
    assert set(kube.objects(*ACJOBS)) == {JOB}
    assert f"rings-config-{JOB}" not in kube.objects("configmaps")  # "without ranktable"
    cluster = Cluster(kube, DevicePlugin(NODES))
    cluster.reconcile()
    seen: set[int] = set()
    for index, pod in enumerate(node_pods(cluster, f"{JOB}-worker-")):
        ranks = run_pod(kube, cluster, pod, tmp_path)
        assert sorted(int(r["dev"]) for r in ranks) == list(range(8))
        for r in ranks:
            assert r["role"] == "MS_WORKER" and r["size"] == "16" and r["workers"] == "16"
            assert r["node"] == r["rank"]  # MS_NODE_ID: MS_NODE_RANK * MS_LOCAL_WORKER + card
        assert {int(r["rank"]) for r in ranks} == set(range(8 * index, 8 * index + 8))
        seen |= {int(r["rank"]) for r in ranks}
    assert sorted(seen) == list(range(16))
    # The scheduler pod runs the scheduler only.
    sched = run_pod(kube, cluster, f"{JOB}-scheduler-0", tmp_path)
    assert [r["role"] for r in sched] == ["MS_SCHED"]
    status = KubernetesBackend().status(rec)
    assert (status.state, status.detail) == (RUNNING, "2/2 pods running")


def test_a_batch_v1_job_is_never_given_a_rank_table(kube: KubeServer, tmp_path: Path) -> None:
    """As on a real cluster: the operator has no plugin for batch/v1 Jobs; pods time out."""
    submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=1,
           backend_options={"rank_table_timeout": 1, "workload": "vcjob"})
    vcjob = kube.objects(*VCJOBS)[JOB]
    kube.remove(VCJOBS[0], JOB, VCJOBS[1])
    # The same pods, labels and rank table volume, under a batch/v1 Job (the old rendering).
    kube.put(BATCH_JOBS[0], {"apiVersion": "batch/v1", "kind": "Job",
                             "metadata": {"name": JOB, "labels": vcjob["metadata"]["labels"]},
                             "spec": {"completions": 1,
                                      "template": vcjob["spec"]["tasks"][0]["template"]}},
             BATCH_JOBS[1])
    cluster = Cluster(kube, DevicePlugin(NODES))
    cluster.fill_rank_tables()
    rings = kube.objects("configmaps")[f"rings-config-{JOB}"]
    assert json.loads(rings["data"]["hccl.json"]) == {"status": "initializing"}
    config = kube.objects("configmaps")[f"{JOB}-rlaunch"]
    path = prepare_script(config["data"]["entrypoint.sh"], tmp_path,
                          rings["data"]["hccl.json"], config)
    done, log = run(path, tmp_path, HOST_IP=NODES[0])
    assert done.returncode == 1
    assert "not completed after 1s" in done.stderr
    assert log == ""


def test_volcano_job_eviction_restarts_the_whole_group(kube: KubeServer, tmp_path: Path) -> None:
    rec = submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=2,
                       max_restarts=1, backend_options={"workload": "vcjob", "output_pvc": "runs"})
    assert set(kube.objects(*VCJOBS)) == {JOB}
    cluster = Cluster(kube, DevicePlugin(NODES, server_id="pod-uid"))
    cluster.reconcile()
    backend = KubernetesBackend()
    assert (backend.status(rec).state, backend.status(rec).restarts) == (RUNNING, 0)
    first = {p["metadata"]["uid"] for p in cluster.pods.values()}

    cluster.evict(f"{JOB}-node-1")  # node 1 is lost
    # Every pod goes, not only the evicted one, and that is one retry.
    assert cluster.pods == {}
    status = backend.status(rec)
    assert (status.state, status.restarts) == (REQUEUED, 1)

    before = json.dumps(kube.objects(*VCJOBS)[JOB]["spec"]["tasks"][0]["template"])
    cluster.resume(JOB)
    cluster.reconcile()
    assert not first & {p["metadata"]["uid"] for p in cluster.pods.values()}
    # The new attempt runs the same command on the same claim directory: it resumes from there.
    again = cluster.pods[f"{JOB}-node-1"]["spec"]
    assert json.loads(before)["spec"]["volumes"] == again["volumes"]
    assert {"name": "output", "mountPath": "/out", "subPath": JOB} in \
        again["containers"][0]["volumeMounts"]
    status = backend.status(rec)
    assert (status.state, status.restarts) == (RUNNING, 1)
    # The new pods find themselves in the new table (new pod UIDs as server_id).
    ranks = run_pod(kube, cluster, f"{JOB}-node-1", tmp_path)
    assert sorted(int(r["rank"]) for r in ranks) == list(range(8, 16))
    assert all(r["role"] == "" for r in ranks)  # rank table mode, no MindSpore scheduler

    cluster.evict(f"{JOB}-node-0")  # past maxRetry
    status = backend.status(rec)
    assert (status.state, status.restarts) == (FAILED, 2)
    assert status.detail.startswith("Volcano Job Failed")


def test_jobset_loses_one_pod_and_spends_one_restart(kube: KubeServer, tmp_path: Path) -> None:
    rec = submit(tmp_path, device_kind="gpu", devices_per_node=8, nodes=4, max_restarts=1)
    assert set(kube.objects(*JOBSETS)) == {JOB}
    cluster = Cluster(kube, DevicePlugin(NODES))
    cluster.reconcile()
    backend = KubernetesBackend()
    assert backend.status(rec).detail == "4/4 pods running"

    cluster.evict(node_pods(cluster, f"{JOB}-node-0-2-")[0])
    assert cluster.pods == {}  # the whole group goes
    cluster.resume(JOB)
    status = backend.status(rec)
    assert (status.state, status.restarts, status.detail) == (RUNNING, 1, "4/4 pods running")

    cluster.evict(node_pods(cluster, f"{JOB}-node-0-0-")[0])
    status = backend.status(rec)
    assert (status.state, status.restarts) == (FAILED, 1)
    assert status.detail == "ReachedMaxRestarts"


def test_ascendjob_logs_status_and_cancel(kube: KubeServer, tmp_path: Path) -> None:
    rec = submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=2)
    cluster = Cluster(kube, DevicePlugin(NODES))
    cluster.reconcile()
    for index in (0, 1):
        serve_log(kube, f"{JOB}-worker-{index}", f"[rank {8 * index}] epoch 1\n".encode())
    backend = KubernetesBackend()
    assert list(backend.logs(rec)) == ["[rank 0] epoch 1", "[rank 8] epoch 1"]
    assert list(backend.logs(rec, rank=8)) == ["[rank 8] epoch 1"]
    logs = [r for r in kube.requests() if r.url.path.endswith("/log")]
    assert {r.params.get("container") for r in logs} == {"ascend"}

    # The operator reports the end through kubeflow's common job conditions.
    job = kube.objects(*ACJOBS)[JOB]
    job["status"] = {"conditions": [
        {"type": "Running", "status": "False"},
        {"type": "Succeeded", "status": "True", "reason": "JobSucceeded",
         "message": "all workers succeeded"}]}
    kube.put(ACJOBS[0], job, ACJOBS[1])
    status = backend.status(rec)
    assert (status.state, status.exit_code, status.detail) == (
        COMPLETED, 0, "JobSucceeded: all workers succeeded")

    backend.cancel(rec)
    deletes = [r for r in kube.requests() if str(r.method).endswith("DELETE")]
    assert deletes[0].url.path == (f"/apis/mindxdl.gitee.com/v1/namespaces/{NAMESPACE}/"
                                   f"ascendjobs/{JOB}")
    assert deletes[0].params.get("propagationPolicy") == "Foreground"
    assert kube.objects(*ACJOBS) == {}
    assert kube.objects("configmaps") == {}
