"""The k8s backend's cluster operations against a Kubernetes API test server over real HTTP.

The server is kmock's emulator (no kube-apiserver can run here): it stores what is created,
serves reads/lists/deletes, and lets a test inject controller-made state (JobSet status, pod
phases) and failures (401, 403, 409, 422). GPU jobs are JobSets (the custom-objects API); the
MindX DL and Volcano controllers are played in test_operator.py.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher.backends.base import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    REQUEUED,
    RUNNING,
    UNKNOWN,
    BackendError,
)
from launcher.backends.k8s import KubernetesBackend
from launcher.spec import JobSpec
from launcher.store import JobRecord
from tests.k8s.conftest import NAMESPACE, KubeServer, serve_log

pytestmark = pytest.mark.timeout(60)

JOB = "resnest"
JOBSETS = ("jobsets", "jobset.x-k8s.io/v1alpha2")
JOBSET_PATH = f"/apis/jobset.x-k8s.io/v1alpha2/namespaces/{NAMESPACE}/jobsets"


def gpu_spec(**options: Any) -> JobSpec:
    return JobSpec(
        name=JOB, job_id=JOB, backend="k8s", device_kind="gpu", devices_per_node=8, nodes=2,
        data_dir="/data", output_dir="/out", image="registry.example/resnest:gpu",
        backend_options={"data_pvc": "imagenet", "output_pvc": "runs", **options},
    ).validate()


def submit(spec: JobSpec, tmp_path: Path, job_id: str = JOB) -> str:
    """Submit as `rlaunch submit` does: id first, render once, write the files, submit them."""
    backend = KubernetesBackend()
    spec = spec.replace(job_id=job_id)
    opts = backend.options_of(spec)
    assert backend.problems(spec, opts) == []
    rendered = backend.render(spec, opts)
    job_dir = tmp_path / job_id
    rendered.write(job_dir)
    return backend.submit(spec, rendered, job_dir)


def record(spec: JobSpec, backend_id: str = f"{NAMESPACE}/{JOB}") -> JobRecord:
    return JobRecord(id="resnest-abc123", backend="k8s", spec=spec.to_dict(), job_dir="/tmp",
                     output_dir=spec.output_dir, backend_id=backend_id)


def pod(name: str, index: int, phase: str, *, created: str = "2026-01-01T00:00:00Z",
        waiting: tuple[str, str] | None = None, unschedulable: str | None = None,
        exit_code: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if waiting:
        status["containerStatuses"] = [{
            "name": "trainer", "image": "x", "imageID": "", "ready": False, "restartCount": 0,
            "state": {"waiting": {"reason": waiting[0], "message": waiting[1]}}}]
    if exit_code is not None:
        status["containerStatuses"] = [{
            "name": "trainer", "image": "x", "imageID": "", "ready": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "reason": "Error"}}}]
    if unschedulable:
        status["conditions"] = [{"type": "PodScheduled", "status": "False",
                                 "reason": "Unschedulable", "message": unschedulable}]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": NAMESPACE, "creationTimestamp": created,
            "labels": {"rlaunch.dev/job": JOB},
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "spec": {"containers": [{"name": "trainer", "image": "x"}]},
        "status": status,
    }


def set_job_status(kube: KubeServer, **status: Any) -> None:
    """Write the JobSet's status as its controller does (jobset_types.go JobSetStatus)."""
    job = kube.objects(*JOBSETS)[JOB]
    job["status"] = status
    kube.put(JOBSETS[0], job, JOBSETS[1])


# ---- submit ----------------------------------------------------------------------------------


def test_submit_creates_exactly_the_rendered_objects_in_order(kube: KubeServer,
                                                              tmp_path: Path) -> None:
    spec = gpu_spec()
    backend_id = submit(spec, tmp_path)
    assert backend_id == f"{NAMESPACE}/{JOB}"  # namespace from the kubeconfig context

    posts = [r for r in kube.requests() if str(r.method).endswith("POST")]
    assert [r.url.path for r in posts] == [
        f"/api/v1/namespaces/{NAMESPACE}/configmaps",
        JOBSET_PATH,
    ]
    rendered = [d for d in yaml.safe_load_all((tmp_path / JOB / "manifests.yaml").read_text())
                if d]
    # The server received the rendered objects, field for field.
    assert [r.data for r in posts] == rendered
    assert posts[0].headers.get("Authorization") == "Bearer test-token"
    assert set(kube.objects("configmaps")) == {f"{JOB}-rlaunch"}
    assert set(kube.objects(*JOBSETS)) == {JOB}


def test_objects_are_named_after_the_job_id(kube: KubeServer, tmp_path: Path) -> None:
    backend_id = submit(gpu_spec(), tmp_path, job_id="resnest-1a2b3c")
    assert backend_id == f"{NAMESPACE}/resnest-1a2b3c"
    assert set(kube.objects(*JOBSETS)) == {"resnest-1a2b3c"}
    assert set(kube.objects("configmaps")) == {"resnest-1a2b3c-rlaunch"}
    # The job directory keeps what was actually sent, and it is what the server received.
    sent = [d for d in yaml.safe_load_all(
        (tmp_path / "resnest-1a2b3c" / "manifests.yaml").read_text()) if d]
    posts = [r.data for r in kube.requests() if str(r.method).endswith("POST")]
    assert posts == sent
    assert sent[-1]["metadata"]["name"] == "resnest-1a2b3c"


def test_explicit_namespace_wins_over_the_context(kube: KubeServer, tmp_path: Path) -> None:
    backend_id = submit(gpu_spec(namespace="team-a"), tmp_path)
    assert backend_id == f"team-a/{JOB}"
    posts = [r for r in kube.requests() if str(r.method).endswith("POST")]
    assert all(r.url.path.startswith("/api/v1/namespaces/team-a/")
               or r.url.path.startswith("/apis/jobset.x-k8s.io/v1alpha2/namespaces/team-a/")
               for r in posts)


def test_failed_job_create_rolls_back_what_was_created(kube: KubeServer, tmp_path: Path) -> None:
    import kmock

    kube.kmock["post", re.compile(r"/apis/jobset.x-k8s.io/v1alpha2/namespaces/.*/jobsets")] \
        << kmock.KubernetesError(
        status=422, reason="Invalid",
        message='JobSet.jobset.x-k8s.io "resnest" is invalid: spec.replicatedJobs: Required')
    with pytest.raises(BackendError) as err:
        submit(gpu_spec(), tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "creating JobSet resnest in namespace ml: rejected as invalid" in message
    assert "spec.replicatedJobs: Required" in message
    assert "rolled back ConfigMap resnest-rlaunch" in message
    deletes = [r.url.path for r in kube.requests() if str(r.method).endswith("DELETE")]
    assert deletes == [f"/api/v1/namespaces/{NAMESPACE}/configmaps/{JOB}-rlaunch"]
    assert kube.objects("configmaps") == {}


def test_existing_job_name_is_a_409_one_liner_and_nothing_is_deleted(
        kube: KubeServer, tmp_path: Path) -> None:
    kube.put("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": f"{JOB}-rlaunch"}, "data": {}})
    with pytest.raises(BackendError) as err:
        submit(gpu_spec(), tmp_path)
    assert str(err.value).startswith("creating ConfigMap resnest-rlaunch in namespace ml: "
                                     "already exists")
    assert "rolled back" not in str(err.value)
    assert not [r for r in kube.requests() if str(r.method).endswith("DELETE")]


@pytest.mark.parametrize(("status", "expected"), [
    (401, "unauthorized: the cluster rejected the credentials"),
    (403, 'forbidden: configmaps is forbidden: User "tester" cannot create'),
    (404, 'not found: configmaps is forbidden: User "tester"'),
    (500, "API error 500 Internal Server Error: configmaps is forbidden"),
])
def test_api_errors_are_one_line(kube: KubeServer, tmp_path: Path, status: int,
                                  expected: str) -> None:
    import kmock

    kube.kmock["post"] << kmock.KubernetesError(
        status=status, reason={401: "Unauthorized", 403: "Forbidden", 404: "NotFound"}.get(
            status, "Internal"),
        message='configmaps is forbidden: User "tester" cannot create resource "configmaps"')
    with pytest.raises(BackendError) as err:
        submit(gpu_spec(), tmp_path)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_unreachable_server_is_one_line(kube: KubeServer, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "dead-kubeconfig"
    config.write_text(Path(str(Path(tmp_path / "kubeconfig"))).read_text()
                      .replace(kube.url, f"http://127.0.0.1:{port}"))
    monkeypatch.setenv("KUBECONFIG", str(config))
    with pytest.raises(BackendError) as err:
        submit(gpu_spec(), tmp_path)
    assert f"cannot reach the Kubernetes API at http://127.0.0.1:{port}" in str(err.value)


def test_missing_kubeconfig_context_is_one_line(kube: KubeServer, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="kubeconfig context 'nope'"):
        submit(gpu_spec(context="nope"), tmp_path)


# ---- status ----------------------------------------------------------------------------------


def test_status_follows_the_job_through_its_life(kube: KubeServer, tmp_path: Path) -> None:
    spec = gpu_spec()
    backend = KubernetesBackend()
    rec = record(spec, submit(spec, tmp_path))

    status = backend.status(rec)
    assert (status.state, status.detail) == (PENDING, "no pods yet")

    kube.put("pods", pod("resnest-0-aaaaa", 0, "Pending",
                         unschedulable="0/4 nodes are available: 4 Insufficient nvidia.com/gpu."))
    kube.put("pods", pod("resnest-1-bbbbb", 1, "Pending",
                         waiting=("ImagePullBackOff", 'Back-off pulling image "x"')))
    status = backend.status(rec)
    assert status.state == PENDING
    # The reason that will not fix itself is shown first.
    assert "2/2 pods pending" in status.detail
    assert "node 1 (resnest-1-bbbbb) ImagePullBackOff: Back-off pulling image" in status.detail

    kube.put("pods", pod("resnest-1-bbbbb", 1, "Running"))
    status = backend.status(rec)
    assert status.state == PENDING
    assert "Unschedulable: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu." in status.detail

    kube.put("pods", pod("resnest-0-aaaaa", 0, "Running"))
    assert (backend.status(rec).state, backend.status(rec).detail) == (RUNNING,
                                                                      "2/2 pods running")

    # Node 0 saved and exited 75: the JobSet recreated all pods (one restart); they wait.
    kube.put("pods", pod("resnest-0-aaaaa", 0, "Failed", exit_code=75))
    kube.put("pods", pod("resnest-0-ccccc", 0, "Pending", created="2026-01-01T01:00:00Z"))
    set_job_status(kube, restarts=1)
    status = backend.status(rec)
    assert (status.state, status.restarts) == (REQUEUED, 1)

    kube.put("pods", pod("resnest-0-ccccc", 0, "Running", created="2026-01-01T01:00:00Z"))
    assert backend.status(rec).state == RUNNING

    set_job_status(kube, restarts=1, conditions=[
        {"type": "Completed", "status": "True", "reason": "AllJobsCompleted"}])
    status = backend.status(rec)
    assert (status.state, status.exit_code, status.restarts) == (COMPLETED, 0, 1)


def test_status_of_a_failed_job_names_the_reason_and_exit_code(kube: KubeServer,
                                                               tmp_path: Path) -> None:
    spec = gpu_spec()
    rec = record(spec, submit(spec, tmp_path))
    kube.put("pods", pod("resnest-0-aaaaa", 0, "Failed", exit_code=1))
    set_job_status(kube, restarts=3, conditions=[{
        "type": "Failed", "status": "True", "reason": "ReachedMaxRestarts",
        "message": "jobset failed due to reaching max number of restarts"}])
    status = KubernetesBackend().status(rec)
    assert (status.state, status.exit_code, status.restarts) == (FAILED, 1, 3)
    assert status.detail == ("ReachedMaxRestarts: jobset failed due to reaching max number of "
                             "restarts")


def test_status_of_a_missing_job_is_unknown(kube: KubeServer) -> None:
    status = KubernetesBackend().status(record(gpu_spec()))
    assert status.state == UNKNOWN
    assert "not found in namespace ml" in status.detail


# ---- logs ------------------------------------------------------------------------------------


def test_logs_merge_pods_by_index_or_show_one(kube: KubeServer, tmp_path: Path) -> None:
    spec = gpu_spec()
    rec = record(spec, submit(spec, tmp_path))
    kube.put("pods", pod("resnest-1-bbbbb", 1, "Running"))
    kube.put("pods", pod("resnest-0-aaaaa", 0, "Running"))
    serve_log(kube, "resnest-0-aaaaa", b"[rank 0] epoch 1\n[rank 1] epoch 1\n")
    serve_log(kube, "resnest-1-bbbbb", b"[rank 8] epoch 1\n[rank 9] epoch 1\nTraceback (most\n")

    backend = KubernetesBackend()
    assert list(backend.logs(rec)) == ["[rank 0] epoch 1", "[rank 1] epoch 1", "[rank 8] epoch 1",
                                       "[rank 9] epoch 1", "Traceback (most"]
    # Rank 9 lives on index 1; the unprefixed traceback line is kept.
    assert list(backend.logs(rec, rank=9)) == ["[rank 9] epoch 1", "Traceback (most"]
    assert list(backend.logs(rec, rank=0)) == ["[rank 0] epoch 1"]
    log_requests = [r for r in kube.requests() if r.url.path.endswith("/log")]
    assert all(r.params.get("container") == "trainer" for r in log_requests)


def test_logs_follow_streams_lines_as_they_come(kube: KubeServer, tmp_path: Path) -> None:
    spec = gpu_spec()
    rec = record(spec, submit(spec, tmp_path))
    kube.put("pods", pod("resnest-0-aaaaa", 0, "Running"))
    kube.put("pods", pod("resnest-1-bbbbb", 1, "Succeeded"))
    release = threading.Event()

    async def wait_for_release() -> None:
        while not release.is_set():
            await asyncio.sleep(0.05)

    serve_log(kube, "resnest-0-aaaaa", b"[rank 0] step 1\n", wait_for_release,
              b"[rank 0] step 2\n")
    serve_log(kube, "resnest-1-bbbbb", b"[rank 8] done\n")

    lines = KubernetesBackend().logs(rec, follow=True)
    got = set()
    while "[rank 0] step 1" not in got:  # arrives while the stream is still open
        got.add(next(lines))
    assert "[rank 0] step 2" not in got
    set_job_status(kube, conditions=[{"type": "Completed", "status": "True"}])
    release.set()
    got |= set(lines)
    assert got == {"[rank 0] step 1", "[rank 0] step 2", "[rank 8] done"}
    follows = [r for r in kube.requests() if r.url.path.endswith("/log")]
    assert follows and all(r.params.get("follow") == "true" for r in follows)


# ---- cancel ----------------------------------------------------------------------------------


def test_cancel_deletes_everything_with_foreground_propagation(kube: KubeServer,
                                                               tmp_path: Path) -> None:
    spec = gpu_spec()
    rec = record(spec, submit(spec, tmp_path))
    KubernetesBackend().cancel(rec)
    deletes = [r for r in kube.requests() if str(r.method).endswith("DELETE")]
    assert deletes[0].url.path == f"{JOBSET_PATH}/{JOB}"
    assert deletes[0].params.get("propagationPolicy") == "Foreground"
    assert kube.objects(*JOBSETS) == {}
    assert kube.objects("configmaps") == {}
    # Cancelling again (or after the TTL removed it) is not an error.
    KubernetesBackend().cancel(rec)


def test_cancel_forbidden_is_reported(kube: KubeServer, tmp_path: Path) -> None:
    import kmock

    spec = gpu_spec()
    rec = record(spec, submit(spec, tmp_path))
    kube.kmock["delete"] << kmock.KubernetesError(status=403, reason="Forbidden",
                                                  message="jobs.batch is forbidden")
    with pytest.raises(BackendError, match="deleting JobSet resnest in namespace ml: forbidden"):
        KubernetesBackend().cancel(rec)


# ---- gather ----------------------------------------------------------------------------------


def run_gather_script(manifest: dict[str, Any], output: Path, scratch: Path) -> str:
    """Run the gather pod's own shell script here, on a local copy of the output dir."""
    script = manifest["spec"]["containers"][0]["command"][2]
    script = script.replace("/tmp", str(scratch)).replace("/output", str(output))
    return subprocess.run(["/bin/sh", "-c", script], check=True, capture_output=True,
                          text=True).stdout


@pytest.mark.parametrize("big_checkpoint", [False, True])
def test_gather_reads_the_output_pvc_through_a_short_lived_pod(
        kube: KubeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        big_checkpoint: bool) -> None:
    import os

    import kmock

    from launcher.backends import k8s_api

    spec = gpu_spec(image_pull_secrets="regcred")
    rec = record(spec, submit(spec, tmp_path))
    # What the job left on the claim, and what the gather pod prints for it.
    output = tmp_path / "pvc"
    (output / "metrics").mkdir(parents=True)
    (output / "metrics" / "rank0.jsonl").write_text('{"event": "eval", "top1": 0.5}\n')
    (output / "eval.json").write_text(json.dumps({"top1": 0.5}))
    (output / "checkpoints").mkdir()
    (output / "checkpoints" / "resnest-1.ckpt").write_bytes(os.urandom(5000))
    (output / "checkpoints" / "manifest.json").write_text("{}")
    if big_checkpoint:  # the archive would not fit through the pod log
        monkeypatch.setattr(k8s_api, "GATHER_ARCHIVE_LIMIT", 2000)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    manifest = k8s_api.Cluster.gather_pod_manifest("x", JOB, "runs", "img", ["regcred"], {}, [])
    printed = run_gather_script(manifest, output, scratch)

    pod_path = re.compile(rf"/api/v1/namespaces/{NAMESPACE}/pods/{JOB}-gather-[0-9a-f]{{6}}$")
    done = pod("gather", 0, "Succeeded")
    kube.kmock["get", pod_path] << done
    kube.kmock["get", re.compile(pod_path.pattern[:-1] + "/log$")] << kmock.headers(
        {"Content-Type": "text/plain"}) << printed.encode()

    dest = tmp_path / "gathered"
    assert KubernetesBackend().fetch_outputs(rec, dest) == dest
    assert json.loads((dest / "eval.json").read_text()) == {"top1": 0.5}
    assert (dest / "metrics" / "rank0.jsonl").read_text().startswith('{"event": "eval"')
    assert (dest / "checkpoints" / "manifest.json").exists()
    ckpt = dest / "checkpoints" / "resnest-1.ckpt"
    if big_checkpoint:
        assert not ckpt.exists()  # listed, not copied
        assert "resnest-1.ckpt" in (dest / "remote-checkpoints.txt").read_text()
    else:
        assert ckpt.read_bytes() == (output / "checkpoints" / "resnest-1.ckpt").read_bytes()
        assert not (dest / "remote-checkpoints.txt").exists()

    created = [r for r in kube.requests()
               if str(r.method).endswith("POST") and r.url.path.endswith("/pods")]
    assert len(created) == 1
    body = created[0].data
    assert body["spec"]["volumes"][0] == {
        "name": "output", "persistentVolumeClaim": {"claimName": "runs", "readOnly": True}}
    assert body["spec"]["containers"][0]["volumeMounts"][0]["subPath"] == JOB
    assert body["spec"]["containers"][0]["image"] == "registry.example/resnest:gpu"
    assert body["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    # The pod is always removed afterwards.
    deleted = [r.url.path for r in kube.requests() if str(r.method).endswith("DELETE")]
    assert deleted == [f"/api/v1/namespaces/{NAMESPACE}/pods/{body['metadata']['name']}"]


def test_gather_pod_failure_is_reported_and_the_pod_removed(kube: KubeServer,
                                                            tmp_path: Path) -> None:
    import kmock

    spec = gpu_spec()
    rec = record(spec, submit(spec, tmp_path))
    pod_path = re.compile(rf"/api/v1/namespaces/{NAMESPACE}/pods/{JOB}-gather-[0-9a-f]{{6}}$")
    kube.kmock["get", pod_path] << pod("gather", 0, "Pending", waiting=(
        "ErrImagePull", "pull access denied"))
    kube.kmock["get", re.compile(pod_path.pattern[:-1] + "/log$")] << kmock.headers(
        {"Content-Type": "text/plain"}) << b""
    with pytest.raises(BackendError, match="gather pod .* failed: ErrImagePull: pull access"):
        KubernetesBackend().fetch_outputs(rec, tmp_path / "gathered")
    deleted = [r.url.path for r in kube.requests() if str(r.method).endswith("DELETE")]
    assert len(deleted) == 1 and "-gather-" in deleted[0]


def test_gather_without_output_pvc_leaves_a_note(kube: KubeServer, tmp_path: Path) -> None:
    spec = gpu_spec().replace(backend_options={})
    dest = KubernetesBackend().fetch_outputs(record(spec), tmp_path / "gathered")
    assert "without --opt output_pvc" in (dest / "NOT-FETCHED.txt").read_text()
    assert kube.requests() == []


def test_truncated_gather_output_is_refused(tmp_path: Path) -> None:
    from launcher.backends.k8s_api import GATHER_MARK, unpack_gather_log

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"x" * 5000
        info = tarfile.TarInfo("eval.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    payload = base64.b64encode(buf.getvalue()).decode()
    log = f"{GATHER_MARK}-BEGIN\n{payload[:40]}\n{GATHER_MARK}-END {len(buf.getvalue())}\n"
    with pytest.raises(BackendError, match="expected"):
        unpack_gather_log(log, tmp_path)
    with pytest.raises(BackendError, match="incomplete"):
        unpack_gather_log("no markers here", tmp_path)


def test_fetch_logs_writes_one_file_per_node(kube: KubeServer, tmp_path: Path) -> None:
    spec = gpu_spec()
    rec = record(spec, submit(spec, tmp_path))
    kube.put("pods", pod("resnest-0-aaaaa", 0, "Succeeded"))
    kube.put("pods", pod("resnest-1-bbbbb", 1, "Succeeded"))
    acc = "[rank 0] after allreduce eval: top1_correct=5, tot=10, acc=50.00%(TOP1)\n"
    serve_log(kube, "resnest-0-aaaaa", acc.encode())
    serve_log(kube, "resnest-1-bbbbb", b"[rank 8] bye\n")
    paths = KubernetesBackend().fetch_logs(rec, tmp_path / "logs")
    assert [p.name for p in paths] == ["node0.log", "node1.log"]
    assert paths[0].read_text() == acc


def test_cancelled_state_while_being_deleted(kube: KubeServer, tmp_path: Path) -> None:
    spec = gpu_spec()
    rec = record(spec, submit(spec, tmp_path))
    job = kube.objects(*JOBSETS)[JOB]
    job["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    kube.put(JOBSETS[0], job, JOBSETS[1])
    assert KubernetesBackend().status(rec).state == CANCELLED


def test_follow_moves_on_to_the_retried_pod_of_an_index(kube: KubeServer, tmp_path: Path) -> None:
    from launcher.backends.k8s import job_names
    from launcher.backends.k8s_api import Cluster

    spec = gpu_spec().replace(nodes=1)
    submit(spec, tmp_path)
    kube.put("pods", pod("resnest-0-first", 0, "Failed", exit_code=75))
    serve_log(kube, "resnest-0-first", b"[rank 0] saved, requeue me\n")
    opts = KubernetesBackend().options_of(spec)
    lines = Cluster.connect().job_logs(job_names(spec, opts), 1, follow=True, poll_seconds=0.1)
    assert next(lines) == "[rank 0] saved, requeue me"
    # The JobSet restarts: a new pod for index 0; the stream continues with it.
    kube.put("pods", pod("resnest-0-second", 0, "Running", created="2026-01-01T01:00:00Z"))
    serve_log(kube, "resnest-0-second", b"[rank 0] resumed\n")
    assert next(lines) == "[rank 0] resumed"
    set_job_status(kube, restarts=1, conditions=[{"type": "Completed", "status": "True"}])
    assert list(lines) == []


def test_configmaps_are_owned_by_the_workload(kube: KubeServer, tmp_path: Path) -> None:
    """Owner references: the garbage collector removes the ConfigMaps with the JobSet (its
    TTL, or any deletion), as it does the pods."""
    submit(gpu_spec(), tmp_path)
    jobset = kube.objects(*JOBSETS)[JOB]
    owner = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "name": JOB,
             "uid": jobset["metadata"]["uid"]}
    assert kube.objects("configmaps")[f"{JOB}-rlaunch"]["metadata"]["ownerReferences"] == [owner]
    patches = [r.url.path for r in kube.requests() if str(r.method).endswith("PATCH")]
    assert patches == [f"/api/v1/namespaces/{NAMESPACE}/configmaps/{JOB}-rlaunch"]


def test_status_without_pods_says_why(kube: KubeServer, tmp_path: Path) -> None:
    """The operator's reason (ascend_job.md "Common Exception Reasons"), not "no pods yet"."""
    from launcher.backends.k8s_api import waiting_reason

    assert waiting_reason({"status": {"conditions": [
        {"type": "Created", "status": "True", "reason": "JobCreated",
         "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Created", "status": "False", "reason": "PodGroupPending",
         "message": "the cluster resource is not enough",
         "lastTransitionTime": "2026-01-01T00:05:00Z"}]}}) == \
        "PodGroupPending: the cluster resource is not enough"
    spec = gpu_spec()
    rec = record(spec, submit(spec, tmp_path))
    assert KubernetesBackend().status(rec).detail == "no pods yet"
    set_job_status(kube, conditions=[{"type": "Suspended", "status": "True",
                                      "reason": "SuspendedJobs", "message": "jobset is suspended"}])
    assert KubernetesBackend().status(rec).detail == "SuspendedJobs: jobset is suspended"


def test_follow_keeps_following_a_restarted_pod_of_the_same_name(kube: KubeServer,
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """Volcano and the ascend-operator reuse pod names across restarts: the UID tells the
    attempts apart; a stream dropped while the pod runs is reopened without repeating lines."""
    from launcher.backends.k8s import job_names
    from launcher.backends.k8s_api import Cluster

    spec = gpu_spec().replace(nodes=1)
    submit(spec, tmp_path)
    streams = {"uid-1": [["a", "b"], ["a", "b", "c"]], "uid-2": [["resumed"]]}

    def stream(self: Cluster, name: str, container: str) -> Any:
        uid = kube.objects("pods")[name]["metadata"]["uid"]
        yield from streams[uid].pop(0)
        if uid == "uid-1" and not streams[uid]:
            running = pod(name, 0, "Failed", exit_code=75)
            running["metadata"]["uid"] = "uid-1"
            kube.put("pods", running)

    monkeypatch.setattr(Cluster, "_stream_pod", stream)
    first = pod("resnest-node-0", 0, "Running")
    first["metadata"]["uid"] = "uid-1"
    kube.put("pods", first)
    opts = KubernetesBackend().options_of(spec)
    lines = Cluster.connect().job_logs(job_names(spec, opts), 1, follow=True, poll_seconds=0.05)
    assert [next(lines) for _ in range(3)] == ["a", "b", "c"]
    again = pod("resnest-node-0", 0, "Running", created="2026-01-01T01:00:00Z")
    again["metadata"]["uid"] = "uid-2"
    kube.put("pods", again)
    assert next(lines) == "resumed"
    set_job_status(kube, restarts=1, conditions=[{"type": "Completed", "status": "True"}])
    assert list(lines) == []


def test_a_multi_node_job_refuses_a_read_write_once_claim(kube: KubeServer,
                                                          tmp_path: Path) -> None:
    """Every node pod mounts the output claim: ReadWriteOnce attaches to one node only."""
    for name, modes in (("imagenet", ["ReadOnlyMany"]), ("runs", ["ReadWriteOnce"])):
        kube.put("persistentvolumeclaims", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": modes}, "status": {"phase": "Bound", "accessModes": modes}})
    with pytest.raises(BackendError) as err:
        submit(gpu_spec(), tmp_path)
    assert str(err.value) == ("--opt output_pvc=runs: the claim is ReadWriteOnce, but the 2 node "
                              "pods all mount it: it must be ReadWriteMany")
    assert [r for r in kube.requests() if str(r.method).endswith("POST")] == []
    submit(gpu_spec().replace(nodes=1), tmp_path)  # one node: one attachment
    assert set(kube.objects(*JOBSETS)) == {JOB}
