"""Kubernetes checks against kmock's API server (tests/k8s/conftest.py): a cluster holding what
a JobSet / Volcano job needs passes, and each missing piece fails its check, with `submit`
creating nothing. What kmock can hold that the real test cluster does not (a controller
Deployment, 403s, Kueue) is tested here; tests/realk8s/test_check.py makes each failure on the
real API server."""

from __future__ import annotations

import json
from pathlib import Path

import kmock
import pytest
from click.testing import CliRunner

from launcher.cli import cli
from tests.k8s.conftest import NAMESPACE, KubeServer

JOBSET_CRD = "jobsets.jobset.x-k8s.io"
VCJOB_CRD = "jobs.batch.volcano.sh"
QUEUE_CRD = "queues.scheduling.volcano.sh"


def put(kube: KubeServer, gvr: str, obj: dict, namespace: str | None = None) -> None:
    kube.kmock.objects[kmock.resource(gvr), namespace, obj["metadata"]["name"]] = obj


def deployment(name: str, namespace: str, ready: int = 1) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1}, "status": {"readyReplicas": ready}}


def claim(name: str, modes: list[str]) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"accessModes": modes}, "status": {"phase": "Bound"}}


def install(kube: KubeServer, crds=(JOBSET_CRD, VCJOB_CRD, QUEUE_CRD), gpus: tuple = (8, 8),
            controllers=(("jobset-controller-manager", "jobset-system"),
                         ("volcano-controllers", "volcano-system"),
                         ("volcano-scheduler", "volcano-system")),
            claims=(("imagenet", ["ReadOnlyMany"]), ("runs", ["ReadWriteMany"])),
            queues=("default",)) -> None:
    """What `kubectl apply` of JobSet, Volcano and a GPU device plugin leave in a cluster."""
    kube.kmock[f"get /api/v1/namespaces/{NAMESPACE}"] << {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    for gvr in ("apps/v1/deployments", "v1/nodes", "v1/persistentvolumeclaims"):
        kube.kmock.resources[gvr] = {}
    for name in crds:
        put(kube, "apiextensions.k8s.io/v1/customresourcedefinitions", {
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name}, "spec": {}})
    for name, namespace in controllers:
        put(kube, "apps/v1/deployments", deployment(name, namespace), namespace)
    for index, count in enumerate(gpus):
        put(kube, "v1/nodes", {"apiVersion": "v1", "kind": "Node",
                               "metadata": {"name": f"gpu-{index}"},
                               "status": {"allocatable": {"nvidia.com/gpu": str(count),
                                                          "cpu": "64"}}})
    for name, modes in claims:
        put(kube, "v1/persistentvolumeclaims", claim(name, modes), NAMESPACE)
    for name in queues:
        put(kube, "scheduling.volcano.sh/v1beta1/queues", {
            "apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "Queue",
            "metadata": {"name": name}, "spec": {"weight": 1}})


JOB = ["--backend", "k8s", "--gpus", "8", "--nodes", "2", "--image", "reg.example/rl:1",
       "--data-dir", "/data", "--output-dir", "/output", "--opt", "data_pvc=imagenet",
       "--opt", "output_pvc=runs"]


def check(*extra: str) -> tuple[int, dict[str, dict]]:
    result = CliRunner().invoke(cli, ["check", *JOB, *extra, "--json"])
    report = json.loads(result.stdout)
    return result.exit_code, {c["name"]: c for c in report["checks"]}


def test_a_ready_jobset_cluster_passes_and_submit_creates_the_jobset(kube: KubeServer) -> None:
    install(kube)
    code, checks = check()
    assert code == 0, checks
    assert {n: c["status"] for n, c in checks.items() if n.startswith("k8s.")} == {
        "k8s.api": "pass", "k8s.namespace": "pass", "k8s.data_claim": "pass",
        "k8s.output_claim": "pass", "k8s.crd": "pass", "k8s.controller": "pass",
        "k8s.devices": "pass"}
    submitted = CliRunner().invoke(cli, ["submit", *JOB])
    assert submitted.exit_code == 0, submitted.output
    assert "PASS  k8s.crd" in submitted.stderr
    assert list(kube.objects("jobsets", "jobset.x-k8s.io/v1alpha2")) == [
        submitted.stdout.strip().splitlines()[-1]]


def test_a_missing_crd_fails_and_submit_creates_nothing(kube: KubeServer) -> None:
    install(kube, crds=(VCJOB_CRD,))
    code, checks = check()
    assert code == 2
    assert checks["k8s.crd"]["status"] == "fail"
    assert f"CRD {JOBSET_CRD} is not installed" in checks["k8s.crd"]["message"]
    submitted = CliRunner().invoke(cli, ["submit", *JOB])
    assert submitted.exit_code == 2 and "FAIL  k8s.crd" in submitted.stderr
    assert not [r for r in kube.requests() if str(r.method).endswith("POST")]


def test_a_claim_that_does_not_exist_fails(kube: KubeServer) -> None:
    install(kube, claims=(("runs", ["ReadWriteMany"]),))
    code, checks = check()
    assert code == 2 and checks["k8s.data_claim"]["status"] == "fail"
    assert "PersistentVolumeClaim 'imagenet' does not exist in namespace 'ml'" in \
        checks["k8s.data_claim"]["message"]


def test_a_readwriteonce_claim_for_two_nodes_fails(kube: KubeServer) -> None:
    install(kube, claims=(("imagenet", ["ReadOnlyMany"]), ("runs", ["ReadWriteOnce"])))
    code, checks = check()
    assert code == 2 and checks["k8s.output_claim"]["status"] == "fail"
    assert "'runs' is ReadWriteOnce: 2 nodes cannot all mount it" in \
        checks["k8s.output_claim"]["message"]
    one_node = CliRunner().invoke(cli, ["check", *JOB, "--nodes", "1", "--json"])
    assert {c["name"]: c["status"] for c in json.loads(one_node.stdout)["checks"]}[
        "k8s.output_claim"] == "pass"


def test_too_few_advertised_devices_fail(kube: KubeServer) -> None:
    install(kube, gpus=(8, 4))
    code, checks = check()
    assert code == 2 and checks["k8s.devices"]["status"] == "fail"
    assert "1 of 2 node(s) advertise that many (most: 8)" in checks["k8s.devices"]["message"]


def test_a_controller_not_ready_fails_and_one_not_found_is_undecided(kube: KubeServer) -> None:
    install(kube, controllers=())
    code, checks = check()
    assert code == 0 and checks["k8s.controller"]["status"] == "skip"
    assert "no Deployment jobset-controller-manager" in checks["k8s.controller"]["message"]
    put(kube, "apps/v1/deployments", deployment("jobset-controller-manager", "jobset-system", 0),
        "jobset-system")
    code, checks = check()
    assert code == 2 and "has no ready replica" in checks["k8s.controller"]["message"]


def test_volcano_needs_its_controllers_and_queue(kube: KubeServer) -> None:
    install(kube, queues=("default",))
    code, checks = check("--opt", "workload=vcjob", "--opt", "volcano_queue=research")
    assert code == 2 and checks["k8s.queue"]["status"] == "fail"
    assert "Volcano queue 'research' does not exist" in checks["k8s.queue"]["message"]
    assert check("--opt", "workload=vcjob")[1]["k8s.queue"]["status"] == "pass"


def test_a_missing_namespace_fails(kube: KubeServer) -> None:
    install(kube)
    code, checks = check("--opt", "namespace=nope")
    assert code == 2 and "namespace 'nope' does not exist" in checks["k8s.namespace"]["message"]


def test_rejected_credentials_and_an_unreachable_server_fail(kube: KubeServer, tmp_path: Path,
                                                             monkeypatch) -> None:
    kube.kmock[f"get /api/v1/namespaces/{NAMESPACE}"] << 401
    code, checks = check()
    assert code == 2 and "401 Unauthorized" in checks["k8s.api"]["message"]
    config = tmp_path / "dead"
    config.write_text(Path(str(kube_config_path())).read_text().replace(
        kube.url, "http://127.0.0.1:9"))
    monkeypatch.setenv("KUBECONFIG", str(config))
    code, checks = check()
    assert code == 2 and "cannot reach the Kubernetes API" in checks["k8s.api"]["message"]


def kube_config_path() -> str:
    import os

    return os.environ["KUBECONFIG"]


def test_cluster_wide_reads_refused_are_skipped_not_failed(kube: KubeServer) -> None:
    install(kube)
    kube.kmock["get /api/v1/nodes"] << 403
    code, checks = check()
    assert code == 0 and checks["k8s.devices"]["status"] == "skip"
    assert "listing nodes was refused (403)" in checks["k8s.devices"]["message"]


def test_usage_of_a_k8s_job_is_pod_time_times_requested_devices(kube: KubeServer) -> None:
    install(kube)
    submitted = CliRunner().invoke(cli, ["submit", *JOB])
    job_id = submitted.stdout.strip().splitlines()[-1]
    for index in range(2):
        kube.put("pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{job_id}-node-0-{index}", "labels": {"rlaunch.dev/job": job_id}},
            "spec": {"containers": [{"name": "trainer", "resources": {
                "limits": {"nvidia.com/gpu": "8"}}}]},
            "status": {"phase": "Succeeded", "startTime": "2026-12-03T10:00:00Z",
                       "containerStatuses": [{"name": "trainer", "state": {"terminated": {
                           "exitCode": 0, "finishedAt": "2026-12-03T10:30:00Z"}}}]}})
    kube.put("pods", {"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": "other", "labels": {"rlaunch.dev/job": "other-1"}},
                      "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "8"}}}]},
                      "status": {"startTime": "2026-12-03T10:00:00Z"}})
    result = CliRunner().invoke(cli, ["usage", job_id, "--price", "gpu=2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["device_hours"] == {"gpu": pytest.approx(8.0)}  # 2 pods x 8 GPUs x 0.5 h
    assert data["cost"] == pytest.approx(16.0)


def test_usage_of_a_k8s_sweep_adds_up_its_trials_pods(kube: KubeServer, state_dir: Path) -> None:
    from launcher.spec import JobSpec
    from launcher.store import JobStore

    store = JobStore()
    record = store.create(JobSpec(backend="k8s", devices_per_node=1, data_dir="/d",
                                  output_dir="/o", image="reg.example/rl:1"))
    record.backend_id = "runner 4242"  # a sweep's backend id names its runner, not an object
    record.extra["sweep"] = {"trials": []}
    store.save(record)
    for trial, (cpu, minutes) in enumerate([("1", 30), ("1", 15), (None, 60)]):
        resources = {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}} if cpu else {}
        kube.put("pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{record.id}-t{trial}-node-0-0",
                         "labels": {"rlaunch.dev/job": f"{record.id}-t{trial}"}},
            "spec": {"containers": [{"name": "trainer", "resources": resources}]},
            "status": {"phase": "Succeeded", "startTime": "2026-12-03T10:00:00Z",
                       "containerStatuses": [{"name": "trainer", "state": {"terminated": {
                           "exitCode": 0, "finishedAt": f"2026-12-03T10:{minutes % 60:02d}:00Z"
                           if minutes < 60 else "2026-12-03T11:00:00Z"}}}]}})
    result = CliRunner().invoke(cli, ["usage", record.id, "--json"])
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)["jobs"][0]
    assert sorted((a["trial"], a["seconds"]) for a in job["attempts"]) == [
        (0, 1800.0), (1, 900.0), (2, 3600.0)]
    assert job["device_hours"] == {"cpu": pytest.approx(0.75)}  # 30 + 15 min x 1 CPU
    assert "pods that request no CPU count no cpu-hours (--opt cpu=N requests N)" in job["note"]


def test_a_kueue_queue_needs_kueue_and_its_local_queue(kube: KubeServer) -> None:
    install(kube, controllers=(("jobset-controller-manager", "jobset-system"),
                               ("kueue-controller-manager", "kueue-system")))
    code, checks = check("--opt", "kueue_queue=team-a")
    assert code == 2
    assert checks["k8s.crd"]["status"] == "fail"  # the last k8s.crd line: Kueue's
    assert checks["k8s.crd"]["message"].startswith(
        "CRD localqueues.kueue.x-k8s.io is not installed: --opt kueue_queue needs Kueue")
    # Kueue installed (its CRD serves v1beta2 beside the older v1beta1), the LocalQueue not yet.
    put(kube, "apiextensions.k8s.io/v1/customresourcedefinitions", {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "localqueues.kueue.x-k8s.io"},
        "spec": {"group": "kueue.x-k8s.io", "versions": [
            {"name": "v1beta1", "served": True, "storage": False},
            {"name": "v1beta2", "served": True, "storage": True}]}})
    code, checks = check("--opt", "kueue_queue=team-a")
    assert code == 2 and checks["k8s.crd"]["status"] == "pass"
    assert checks["k8s.queue"]["message"] == (
        f"Kueue LocalQueue 'team-a' does not exist in namespace '{NAMESPACE}': Kueue would keep "
        "the JobSet suspended; create it or name another with --opt kueue_queue")
    put(kube, "kueue.x-k8s.io/v1beta2/localqueues", {
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
        "metadata": {"name": "team-a", "namespace": NAMESPACE},
        "spec": {"clusterQueue": "cluster"}}, NAMESPACE)
    code, checks = check("--opt", "kueue_queue=team-a")
    assert code == 0, checks
    assert checks["k8s.queue"]["status"] == "pass"
    assert checks["k8s.controller"]["message"] == (
        "jobset-controller-manager, kueue-controller-manager running")
