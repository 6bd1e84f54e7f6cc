"""`rlaunch check --backend k8s` against the real API server: each misconfiguration the checks
look for, made for real in the test's namespace (or a kubeconfig that cannot get in), fails
with one line and exit 2; a good job passes; `submit` and `sweep` queue nothing when a check
fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.launcher.conftest import rlaunch

from .conftest import Namespace

pytestmark = [pytest.mark.integration, pytest.mark.realk8s, pytest.mark.timeout(600)]

IMAGE = "localhost/rlaunch-cpu:unused"  # checks never pull it
VOLCANO_CRDS = ("jobs.batch.volcano.sh", "queues.scheduling.volcano.sh")


def job(ns: Namespace, *extra: str, nodes: int = 2, device: tuple[str, ...] = ("--cpus", "1"),
        **opts: str) -> list[str]:
    """The job flags of a small JobSet job in the test's namespace; `opts` replace its --opt."""
    chosen = {"namespace": ns.name, "data_pvc": "data", "output_pvc": "output", **opts}
    return ["--backend", "k8s", "--nodes", str(nodes), *device, "--image", IMAGE,
            "--data-dir", "/data", "--output-dir", "/output",
            *[w for k, v in chosen.items() for w in ("--opt", f"{k}={v}")], *extra]


def check(ns: Namespace, *extra: str, device: tuple[str, ...] = ("--cpus", "1"),
          **opts: str) -> tuple[int, list[dict]]:
    done = rlaunch("check", *job(ns, *extra, device=device, **opts), "--json", env=ns.env,
                   check=False)
    assert done.returncode in (0, 2) and done.stdout, done.stderr
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads(done.stdout)["checks"]


def failures(checks: list[dict]) -> dict[str, str]:
    return {c["name"]: c["message"] for c in checks if c["status"] == "fail"}


def by_name(checks: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for c in checks}


def test_a_good_jobset_job_passes(namespace: Namespace) -> None:
    code, found = check(namespace)
    assert code == 0, failures(found)
    checks = by_name(found)
    for name in ("k8s.api", "k8s.namespace", "k8s.data_claim", "k8s.output_claim", "k8s.crd",
                 "k8s.devices"):
        assert checks[name]["status"] == "pass", checks[name]
    assert "jobsets.jobset.x-k8s.io" in checks["k8s.crd"]["message"]
    # The test cluster runs the JobSet manager as a process, not a Deployment: undecided.
    assert checks["k8s.controller"]["status"] == "skip"


def test_a_namespace_that_does_not_exist_fails(namespace: Namespace) -> None:
    code, checks = check(namespace, namespace=f"{namespace.name}-gone")
    assert code == 2
    assert failures(checks)["k8s.namespace"].startswith(
        f"namespace '{namespace.name}-gone' does not exist")


def test_a_claim_that_does_not_exist_fails(namespace: Namespace) -> None:
    code, checks = check(namespace, data_pvc="no-such-claim")
    assert code == 2
    assert failures(checks) == {"k8s.data_claim": (
        f"PersistentVolumeClaim 'no-such-claim' does not exist in namespace '{namespace.name}': "
        "create it or fix --opt data_pvc")}


def test_a_readwriteonce_claim_fails_for_two_nodes_and_passes_for_one(namespace: Namespace,
                                                                      core) -> None:
    core.create_namespaced_persistent_volume_claim(namespace.name, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "rwo"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                 "resources": {"requests": {"storage": "1Gi"}}}})
    code, checks = check(namespace, output_pvc="rwo")
    assert code == 2
    assert failures(checks) == {"k8s.output_claim": (
        "claim 'rwo' is ReadWriteOnce: 2 nodes cannot all mount it; use a ReadWriteMany claim")}
    done = rlaunch("check", *job(namespace, nodes=1, output_pvc="rwo"), env=namespace.env,
                   check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS  k8s.output_claim" in done.stdout


def test_a_volcano_job_needs_its_crds_and_its_queue(namespace: Namespace, core) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    def installed(crd: str) -> bool:
        try:
            client.ApiextensionsV1Api(core.api_client).read_custom_resource_definition(crd)
        except ApiException as err:
            assert err.status == 404
            return False
        return True

    # Volcano may be installed on the shared cluster by another test; either way the job
    # cannot run: without the CRDs, or with a queue that does not exist.
    present = {crd: installed(crd) for crd in VOLCANO_CRDS}
    code, checks = check(namespace, workload="vcjob", volcano_queue="no-such-queue")
    assert code == 2
    failed = failures(checks)
    crd_lines = [c for c in checks if c["name"] == "k8s.crd"]
    for crd, there in present.items():
        [line] = [c for c in crd_lines if crd in c["message"]]
        assert line["status"] == ("pass" if there else "fail"), line
        if not there:
            assert "is not installed" in line["message"]
    if present["queues.scheduling.volcano.sh"]:
        assert failed["k8s.queue"] == ("Volcano queue 'no-such-queue' does not exist: create it "
                                       "or name another with --opt volcano_queue")
    else:
        assert "k8s.queue" not in by_name(checks)  # no queue to look up without the Queue CRD


def test_a_kueue_queue_without_kueue_fails(namespace: Namespace, core) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    code, checks = check(namespace, kueue_queue="no-such-queue")
    assert code == 2
    try:
        client.ApiextensionsV1Api(core.api_client).read_custom_resource_definition(
            "localqueues.kueue.x-k8s.io")
    except ApiException as err:  # the test cluster has no Kueue: the label would be ignored
        assert err.status == 404
        [line] = [c for c in checks if c["name"] == "k8s.crd" and "kueue" in c["message"]]
        assert line["status"] == "fail" and line["message"].startswith(
            "CRD localqueues.kueue.x-k8s.io is not installed: --opt kueue_queue needs Kueue")
        return
    assert failures(checks)["k8s.queue"].startswith("Kueue LocalQueue 'no-such-queue' does not")


@pytest.mark.parametrize(("device", "resource"), [
    (("--gpus", "16"), "nvidia.com/gpu"),
    (("--ascend", "16"), "huawei.com/Ascend910"),
])
def test_more_devices_than_any_node_advertises_fail(namespace: Namespace,
                                                    device: tuple[str, ...],
                                                    resource: str) -> None:
    code, checks = check(namespace, device=device)
    assert code == 2
    # The nodes advertise 8 of each (scripts/k8s_cluster.sh patches their status).
    assert failures(checks)["k8s.devices"] == (
        f"2 node(s) with 16 {resource} needed: 0 of 2 node(s) advertise that many (most: 8); "
        "is the device plugin running?")


def kubeconfig_copy(kubeconfig: Path, tmp_path: Path, server: str | None = None,
                    token: str | None = None) -> Path:
    config = yaml.safe_load(kubeconfig.read_text())
    if server:
        config["clusters"][0]["cluster"]["server"] = server
    if token:
        config["users"][0]["user"] = {"token": token}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(("case", "says"), [
    ("bad-credentials", "rejected the credentials"),
    ("unreachable", "cannot reach the Kubernetes API at https://127.0.0.1:9: Connection refused;"),
])
def test_bad_credentials_and_an_unreachable_api_fail_in_one_line(
    namespace: Namespace, kubeconfig: Path, tmp_path: Path, case: str, says: str
) -> None:
    path = kubeconfig_copy(kubeconfig, tmp_path, token="not-a-token") if case == "bad-credentials" \
        else kubeconfig_copy(kubeconfig, tmp_path, server="https://127.0.0.1:9")
    env = {**namespace.env, "KUBECONFIG": str(path)}
    done = rlaunch("check", *job(namespace), env=env, check=False, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = [ln for ln in done.stdout.splitlines() if ln.startswith("FAIL")]
    assert line.startswith("FAIL  k8s.api") and says in line, line
    assert "Traceback" not in done.stderr


def test_submit_and_sweep_queue_nothing_when_a_check_fails(namespace: Namespace, core) -> None:
    from kubernetes import client

    common = job(namespace, data_pvc="no-such-claim")
    submitted = rlaunch("submit", *common, env=namespace.env, check=False)
    swept = rlaunch("sweep", *common, "--grid", "lr=0.1,0.2", env=namespace.env, check=False)
    for done in (submitted, swept):
        assert done.returncode == 2, done.stdout + done.stderr
        assert "FAIL  k8s.data_claim" in done.stderr and "nothing was submitted" in done.stderr
        assert done.stdout == ""
    assert swept.stderr.count("FAIL  k8s.data_claim") == 1  # once for the sweep
    assert not client.CustomObjectsApi(core.api_client).list_namespaced_custom_object(
        "jobset.x-k8s.io", "v1alpha2", namespace.name, "jobsets")["items"]
    assert not (Path(namespace.env["RLAUNCH_STATE_DIR"]) / "jobs").exists() or not any(
        (Path(namespace.env["RLAUNCH_STATE_DIR"]) / "jobs").iterdir())
