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
        code_dir="/tmp", python=str(tmp_path / "fake-train"), image="registry.example/rn:1",
        **fields)
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
                 ascend_chip=chip, backend_options={"workload": "acjob"})
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
    assert "not completed for this pod" in done.stderr and "after 1s" in done.stderr
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


def test_jobset_loses_one_pod_and_restarts_the_group(kube: KubeServer, tmp_path: Path) -> None:
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

    # Evictions do not spend --max-restarts (the podFailurePolicy DisruptionTarget rule).
    cluster.evict(node_pods(cluster, f"{JOB}-node-0-0-")[0])
    status = backend.status(rec)
    assert (status.state, status.restarts) == (REQUEUED, 2)


def test_ascendjob_logs_status_and_cancel(kube: KubeServer, tmp_path: Path) -> None:
    rec = submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=2,
                 backend_options={"workload": "acjob"})
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


def test_ascendjob_passes_the_operators_queue_check(kube: KubeServer, tmp_path: Path) -> None:
    """Gang scheduling makes the operator GET the job's queue first; none would fail it."""
    rec = submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=2,
                 backend_options={"workload": "acjob"})
    cluster = Cluster(kube, DevicePlugin(NODES))
    cluster.reconcile()
    assert len(node_pods(cluster, f"{JOB}-worker-")) == 2
    assert KubernetesBackend().status(rec).state == RUNNING


def test_ascendjob_with_a_missing_queue_fails_validation_with_no_pods(kube: KubeServer,
                                                                     tmp_path: Path) -> None:
    rec = submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=2,
                 backend_options={"workload": "acjob", "volcano_queue": "training"})
    cluster = Cluster(kube, DevicePlugin(NODES))
    cluster.reconcile()
    assert cluster.pods == {}
    status = KubernetesBackend().status(rec)
    assert status.state == FAILED
    assert status.detail == ('JobValidFailed: QueueGetFailed: queues.scheduling.volcano.sh '
                             '"training" not found')


def test_ascendjob_fails_on_a_failed_pod_and_frees_every_card(kube: KubeServer,
                                                             tmp_path: Path) -> None:
    """Without MindX DL's fault retry a failed pod fails the AscendJob (job.go
    reconcileWithFailed); cleanPodPolicy All removes the survivors too."""
    rec = submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=2,
                 backend_options={"workload": "acjob"})
    cluster = Cluster(kube, DevicePlugin(NODES))
    cluster.reconcile()
    cluster.exits(f"{JOB}-worker-1", 75)
    status = KubernetesBackend().status(rec)
    assert (status.state, status.detail) == (
        FAILED, f"JobFailed: AscendJob <{NAMESPACE}/{JOB}> has failed because has pod failed.")
    assert cluster.pods == {}


def test_ascendjob_restarts_through_mindx_fault_retry_within_max_restarts(
        kube: KubeServer, tmp_path: Path) -> None:
    rec = submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=2, max_restarts=2,
                 backend_options={"workload": "acjob"})
    assert kube.objects(*ACJOBS)[JOB]["metadata"]["labels"]["fault-retry-times"] == "2"
    cluster = Cluster(kube, DevicePlugin(NODES), mindx_fault_plugin=True)
    cluster.reconcile()
    backend = KubernetesBackend()
    for _ in range(2):
        cluster.exits(f"{JOB}-worker-0", 3)
        assert cluster.pods == {}  # the whole group goes
        assert backend.status(rec).state == REQUEUED
        cluster.resume(JOB)
        assert len(node_pods(cluster, f"{JOB}-worker-")) == 2
        assert backend.status(rec).state == RUNNING
    cluster.exits(f"{JOB}-worker-1", 3)
    status = backend.status(rec)
    assert status.state == FAILED and "remain retry times is 0" in status.detail


@pytest.mark.parametrize("max_restarts", [0, 2])
def test_volcano_job_restarts_exactly_max_restarts_times(kube: KubeServer, tmp_path: Path,
                                                         max_restarts: int) -> None:
    """maxRetry N fails at the Nth restart (restarting.go retryCount >= maxRetry), and the
    webhook turns 0 into 3: rlaunch renders --max-restarts + 1."""
    rec = submit(tmp_path, device_kind="gpu", devices_per_node=8, nodes=2,
                 max_restarts=max_restarts, backend_options={"workload": "vcjob"})
    cluster = Cluster(kube, DevicePlugin(NODES))
    cluster.reconcile()
    backend = KubernetesBackend()
    for restart in range(1, max_restarts + 1):
        cluster.exits(f"{JOB}-node-1", 1)
        status = backend.status(rec)
        assert (status.state, status.restarts) == (REQUEUED, restart)
        cluster.resume(JOB)
        assert backend.status(rec).state == RUNNING
    cluster.exits(f"{JOB}-node-0", 1)
    status = backend.status(rec)
    assert (status.state, status.restarts) == (FAILED, max_restarts + 1)
    assert cluster.pods == {}


def test_volcano_job_never_retries_a_usage_error(kube: KubeServer, tmp_path: Path) -> None:
    rec = submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=2)
    assert set(kube.objects(*VCJOBS)) == {JOB}  # the Ascend default
    cluster = Cluster(kube, DevicePlugin(NODES))
    cluster.reconcile()
    cluster.exits(f"{JOB}-node-0", 2)
    status = KubernetesBackend().status(rec)
    assert (status.state, status.restarts) == (FAILED, 0)
    assert status.detail == "Volcano Job Terminated"


def test_jobset_spends_restarts_only_on_failures(kube: KubeServer, tmp_path: Path) -> None:
    """A --time requeue (exit 75) and an eviction restart without counting; a crash counts;
    a usage error (exit 2) ends the JobSet (podFailurePolicy + failurePolicy.rules)."""
    rec = submit(tmp_path, device_kind="gpu", devices_per_node=8, nodes=2, max_restarts=1)
    cluster = Cluster(kube, DevicePlugin(NODES))
    cluster.reconcile()
    backend = KubernetesBackend()

    def pod(index: int) -> str:
        return node_pods(cluster, f"{JOB}-node-0-{index}-")[0]

    for _ in range(3):  # more requeues than --max-restarts
        cluster.exits(pod(0), 75)
        cluster.resume(JOB)
        cluster.evict(pod(1))
        cluster.resume(JOB)
    assert backend.status(rec).state == RUNNING
    assert kube.objects(*JOBSETS)[JOB]["status"].get("restartsCountTowardsMax", 0) == 0
    cluster.exits(pod(1), 1)  # a crash: the one counted restart
    cluster.resume(JOB)
    assert backend.status(rec).state == RUNNING
    cluster.exits(pod(0), 2)
    status = backend.status(rec)
    assert (status.state, status.detail) == (
        FAILED, "FailJobSetFailurePolicyAction: applying FailJobSet failure policy action")


def test_jobset_crashes_past_max_restarts_fail_it(kube: KubeServer, tmp_path: Path) -> None:
    rec = submit(tmp_path, device_kind="gpu", devices_per_node=8, nodes=2, max_restarts=1)
    cluster = Cluster(kube, DevicePlugin(NODES))
    cluster.reconcile()
    cluster.exits(node_pods(cluster, f"{JOB}-node-0-0-")[0], 1)
    cluster.resume(JOB)
    cluster.exits(node_pods(cluster, f"{JOB}-node-0-1-")[0], 1)
    status = KubernetesBackend().status(rec)
    assert (status.state, status.restarts) == (FAILED, 1)
    assert status.detail.startswith("ReachedMaxRestarts")


def test_volcano_restart_ignores_the_previous_attempts_rank_table(kube: KubeServer,
                                                                  tmp_path: Path) -> None:
    """New pods start while rings-config still holds the old attempt's completed table
    (pod.go handleCompletedRankTable): they wait for the table that names them."""
    submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=2,
           backend_options={"rank_table_timeout": 1})
    cluster = Cluster(kube, DevicePlugin(NODES, server_id="node-ip"))
    cluster.reconcile()
    cluster.evict(f"{JOB}-node-0")
    cluster.resume(JOB)  # new pods, the old table still mounted
    config = kube.objects("configmaps")[f"{JOB}-rlaunch"]
    table = kube.objects("configmaps")[f"rings-config-{JOB}"]["data"]["hccl.json"]
    path = prepare_script(config["data"]["entrypoint.sh"], tmp_path / "stale", table, config) \
        if (tmp_path / "stale").mkdir() is None else None
    assert path is not None
    done, log = run(path, tmp_path / "stale", **cluster.pod_env(f"{JOB}-node-1"))
    assert done.returncode == 1 and "not completed for this pod" in done.stderr
    assert log == ""
    cluster.fill_rank_tables()
    ranks = run_pod(kube, cluster, f"{JOB}-node-1", tmp_path)
    assert sorted(int(r["rank"]) for r in ranks) == list(range(8, 16))


def test_logs_of_a_rank_come_from_the_pod_the_operator_gave_it(kube: KubeServer,
                                                               tmp_path: Path) -> None:
    """The operator numbers pods by hccl/rankIndex in its own order (pod.go updateRankIndex):
    rank 0 may be on node pod 1. `logs --rank` asks the rank table."""
    rec = submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=2)
    cluster = Cluster(kube, DevicePlugin(NODES, server_id="node-ip"))
    cluster.start()
    for index, rank_index in ((0, "1"), (1, "0")):
        pod = cluster.pods[f"{JOB}-node-{index}"]
        pod["metadata"]["annotations"]["hccl/rankIndex"] = rank_index
        kube.put("pods", pod)
    cluster.fill_rank_tables()
    for index in (0, 1):
        serve_log(kube, f"{JOB}-node-{index}",
                  f"[rank {8 * (1 - index)}] on node pod {index}\nTraceback {index}\n".encode())
    assert list(KubernetesBackend().logs(rec, rank=0)) == ["[rank 0] on node pod 1",
                                                           "Traceback 1"]


def test_gathered_logs_include_the_ascendjob_scheduler(kube: KubeServer, tmp_path: Path) -> None:
    rec = submit(tmp_path, device_kind="ascend", devices_per_node=8, nodes=2,
                 backend_options={"workload": "acjob"})
    cluster = Cluster(kube, DevicePlugin(NODES))
    cluster.reconcile()
    serve_log(kube, f"{JOB}-scheduler-0", b"scheduler: bad --set\n")
    for index in (0, 1):
        serve_log(kube, f"{JOB}-worker-{index}", b"[rank 0] x\n")
    written = KubernetesBackend().fetch_logs(rec, tmp_path / "logs")
    assert sorted(p.name for p in written) == ["node0.log", "node1.log", "scheduler.log"]
    assert (tmp_path / "logs" / "scheduler.log").read_text() == "scheduler: bad --set\n"


@pytest.mark.parametrize("workload", [None, "acjob"])
def test_the_default_ascend_dry_run_runs_and_restarts_as_a_group(kube: KubeServer,
                                                                 workload: str | None) -> None:
    """`rlaunch submit --backend k8s --ascend 8 --nodes 2 --dry-run`, sent as printed: the
    controllers accept it (the operator's validateJob, Volcano's webhook), start every pod as
    the image's user with fsGroup, and restart the group exactly --max-restarts (3) times."""
    import yaml
    from click.testing import CliRunner

    from launcher.backends.k8s_api import Cluster as Api
    from launcher.backends.k8s_names import names_for
    from launcher.cli import cli

    args = ["submit", "--backend", "k8s", "--ascend", "8", "--nodes", "2", "--dry-run"]
    result = CliRunner().invoke(cli, args + (["--opt", f"workload={workload}"] if workload
                                             else []))
    assert result.exit_code == 0, result.output
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    job = objects[-1]["metadata"]["name"]
    api = Api.connect()
    api.create_all(objects)
    names = names_for(job, workload or "vcjob")
    cluster = Cluster(kube, DevicePlugin(NODES), mindx_fault_plugin=True)
    cluster.reconcile()
    assert api.job_status(names).state == RUNNING
    node_pods_now = [p for n, p in cluster.pods.items() if "-scheduler-" not in n]
    assert len(node_pods_now) == 2
    for pod in cluster.pods.values():
        assert pod["spec"]["securityContext"]["runAsUser"] == 1000
        assert pod["spec"]["securityContext"]["fsGroup"] == 1000
    failing = f"{job}-{'worker' if workload else 'node'}-1"
    for restart in range(1, 4):
        cluster.exits(failing, 1)
        assert cluster.pods == {}
        assert api.job_status(names).state == REQUEUED
        cluster.resume(job)
        assert api.job_status(names).state == RUNNING
    cluster.exits(failing, 1)
    assert api.job_status(names).state == FAILED
