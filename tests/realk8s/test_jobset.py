"""`rlaunch submit --backend k8s` on a real Kubernetes: a JobSet of two pods, on two kubelets,
trains resnest14d with MindSpore's dynamic cluster across the pods (rank discovery through the
headless Service's DNS names, CoreDNS), and status, logs, gather and cancel work against the
real API server, scheduler, kubelet and JobSet controller."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from resnest.contract import EVENT_STEP, metrics_file, read_events
from tests.launcher.conftest import TINY_TRAIN_SETS, VENV_BIN, rlaunch, wait_for

from .conftest import Namespace, job_status, pods_of

pytestmark = [pytest.mark.integration, pytest.mark.realk8s, pytest.mark.timeout(1800)]

VAL_IMAGES = 12  # tests/launcher/conftest.py synthetic_data: 4 classes x 3 val images


def submit(ns: Namespace, image: str, name: str, *extra: str, sets: list[str] | None = None) -> str:
    sets = [a for s in (sets or TINY_TRAIN_SETS) for a in ("--set", s)]
    done = rlaunch("submit", "--backend", "k8s", "--nodes", "2", "--image", image, "--name", name,
                   "--data-dir", "/data", "--output-dir", "/output", *ns.opts(), *extra, *sets,
                   env=ns.env)
    return done.stdout.strip().splitlines()[-1]


def step_events(ns: Namespace, rank: int) -> list[dict]:
    """Rank `rank`'s training steps so far, from its metrics file on the output claim."""
    jobs = [d for d in ns.output_root.iterdir() if d.is_dir()]
    return [e for e in read_events(jobs[0] / metrics_file(rank)) if e.get("event") == EVENT_STEP] \
        if jobs else []


class StatusWatch:
    """Polls `rlaunch status --json` in the background and records each state change."""

    def __init__(self, job_id: str, env: dict[str, str]) -> None:
        self.states: list[str] = []
        self.last: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(job_id, env), daemon=True)
        self._thread.start()

    def _run(self, job_id: str, env: dict[str, str]) -> None:
        while not self._stop.is_set():
            self.last = job_status(job_id, env)
            if not self.states or self.states[-1] != self.last["state"]:
                self.states.append(self.last["state"])
            if self.last["state"] in ("COMPLETED", "FAILED", "CANCELLED"):
                return
            time.sleep(1)

    def wait(self, timeout: float) -> dict:
        self._thread.join(timeout)
        self._stop.set()
        return self.last


def test_two_pod_jobset_trains_and_is_followed_and_gathered(
    namespace: Namespace, cpu_image: str, core, tmp_path: Path
) -> None:
    job_id = submit(namespace, cpu_image, "rk-train", "--cpus", "2")
    watch = StatusWatch(job_id, namespace.env)
    followed = subprocess.run([str(VENV_BIN / "rlaunch"), "logs", "-f", job_id],
                              capture_output=True, text=True, env={**os.environ, **namespace.env},
                              timeout=1500, check=False)
    final = watch.wait(600)
    assert followed.returncode == 0, followed.stderr[-2000:]
    assert final["state"] == "COMPLETED", json.dumps(final)
    # The first state seen may already be RUNNING when the pods start fast; PENDING comes
    # first whenever it is seen, and the job passes through RUNNING.
    assert watch.states[-2:] == ["RUNNING", "COMPLETED"], watch.states
    assert watch.states[0] in ("PENDING", "RUNNING"), watch.states
    # Two pods, one per node (the real scheduler honoured the anti-affinity), ranks 0-3.
    pods = pods_of(core, namespace.name, job_id)
    assert {p.spec.node_name for p in pods} == {"rlk8s-node1", "rlk8s-node2"}
    # `logs -f` streamed both pods (ranks 0-1 and 2-3) to their ends: every line of each.
    followed_lines = set(followed.stdout.splitlines())
    for pod in pods:
        own = [line for line in core.read_namespaced_pod_log(pod.metadata.name,
                                                             namespace.name).splitlines() if line]
        assert own and set(own) <= followed_lines, pod.metadata.name
    assert "[rank 0] training finished" in followed.stdout
    # The eval's counts were allreduced over the four ranks: together they saw the whole set.
    assert f"tot={VAL_IMAGES}" in followed.stdout, followed.stdout[-3000:]

    gathered = rlaunch("gather", job_id, "--dest", str(tmp_path / "g"), env=namespace.env).stdout
    assert "allreduced accuracy: top-1" in gathered
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["state"] == "COMPLETED" and summary["final"]["total"] == VAL_IMAGES
    assert (tmp_path / "g" / "curves.png").stat().st_size > 1000
    # resnest14d's checkpoints (tens of MB) are above what travels through a pod log: gather
    # lists them as left on the claim, where they are.
    remote = (tmp_path / "g" / "outputs" / "remote-checkpoints.txt").read_text()
    assert "last.ckpt" in remote, remote
    assert (tmp_path / "g" / "outputs" / "eval.json").is_file()
    for node in (0, 1):
        assert (tmp_path / "g" / "logs" / f"node{node}.log").stat().st_size > 0
    for rank in range(4):
        assert (tmp_path / "g" / "metrics" / f"rank{rank}.jsonl").is_file()
    # The non-root image wrote its outputs itself, on the claim, as uid 1000.
    job_dir = next(d for d in namespace.output_root.iterdir() if d.is_dir())
    checkpoint = job_dir / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file() and checkpoint.stat().st_uid == 1000


def test_cancel_stops_every_pod_with_its_grace_and_leaves_nothing(
    namespace: Namespace, cpu_image: str, core
) -> None:
    job_id = submit(namespace, cpu_image, "rk-cancel", "--cpus", "1", "--env",
                    "RESNEST_FAULT_CKPT_WRITE_DELAY_S=3",
                    sets=[*TINY_TRAIN_SETS, "epochs=50", "batch_size=1"])
    follower = subprocess.Popen([str(VENV_BIN / "rlaunch"), "logs", "-f", job_id],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **namespace.env})
    try:
        wait_for(lambda: all(step_events(namespace, rank) for rank in (0, 1)), 900,
                 "a training step on both pods")
        rlaunch("cancel", job_id, env=namespace.env)
        assert job_status(job_id, namespace.env)["state"] == "CANCELLED"
        wait_for(lambda: not pods_of(core, namespace.name, job_id), 300, "the pods to go")
        followed, _ = follower.communicate(timeout=120)
    finally:
        follower.kill()
    # Each pod's entrypoint got SIGTERM and passed it on; the ranks saved within the grace.
    stops = [line for line in followed.splitlines() if "SIGTERM: asking the processes" in line]
    assert len({line.split("]")[0] for line in stops}) == 2, followed[-3000:]
    assert followed.count("stopping on SIGTERM") >= 2, followed[-3000:]
    job_dir = next(d for d in namespace.output_root.iterdir() if d.is_dir())
    assert (job_dir / "checkpoints" / "last.ckpt").is_file()
    # Nothing of the job is left: workload, its Jobs, pods, Services, ConfigMaps.
    from kubernetes import client

    selector = f"rlaunch.dev/job={job_id}"
    assert not core.list_namespaced_service(namespace.name, label_selector=selector).items
    assert not core.list_namespaced_config_map(namespace.name, label_selector=selector).items
    custom = client.CustomObjectsApi(core.api_client)
    assert not custom.list_namespaced_custom_object("jobset.x-k8s.io", "v1alpha2",
                                                    namespace.name, "jobsets")["items"]
    assert not client.BatchV1Api(core.api_client).list_namespaced_job(namespace.name).items
    assert not core.list_namespaced_pod(namespace.name).items


def kill_pod_processes(pod) -> int:
    """SIGKILL every process of the pod's containers on its node, as the OOM killer would:
    they are in the pod's cgroup under the node's cgroupRoot (/rlk8s/<node>)."""
    killed = 0
    root = Path("/sys/fs/cgroup/pids/rlk8s")
    for procs in root.glob(f"*/kubepods*/**/pod{pod.metadata.uid}/*/cgroup.procs"):
        for pid in procs.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
    return killed


def test_a_killed_pod_restarts_the_group_once_and_training_resumes(
    namespace: Namespace, cpu_image: str, core
) -> None:
    job_id = submit(namespace, cpu_image, "rk-restart", "--cpus", "1", "--max-restarts", "1",
                    sets=[*TINY_TRAIN_SETS, "epochs=3"])
    # Kill one pod once the first epoch's checkpoint is on the claim.
    wait_for(lambda: [d for d in namespace.output_root.iterdir()
                      if (d / "checkpoints" / "last.ckpt").is_file()], 900, "a checkpoint")
    victim = next(p for p in pods_of(core, namespace.name, job_id)
                  if p.metadata.labels.get("batch.kubernetes.io/job-completion-index") == "1")
    assert kill_pod_processes(victim) > 0
    final = wait_for(lambda: (s := job_status(job_id, namespace.env))["state"]
                     in ("COMPLETED", "FAILED") and s, 1200, "the job to end")
    logs = rlaunch("logs", job_id, env=namespace.env).stdout
    assert final["state"] == "COMPLETED", json.dumps(final) + logs[-3000:]
    assert final["restarts"] == 1
    # The second attempt's pods (new names) resumed from the checkpoint of the first.
    assert "resumed from" in logs, logs[-3000:]


def test_gpu_jobset_is_placed_on_the_advertised_gpus(
    namespace: Namespace, cpu_image: str, core
) -> None:
    # The nodes advertise nvidia.com/gpu: 8 (status patch); no device exists, so the ranks opt
    # in to CPU standing in for it.
    job_id = submit(namespace, cpu_image, "rk-gpu", "--gpus", "2", "--env",
                    "RESNEST_CPU_STANDS_IN_FOR_DEVICES=1")
    final = wait_for(lambda: (s := job_status(job_id, namespace.env))["state"]
                     in ("COMPLETED", "FAILED") and s, 1200, "the job to end")
    logs = rlaunch("logs", job_id, env=namespace.env).stdout
    assert final["state"] == "COMPLETED", json.dumps(final) + logs[-3000:]
    pods = pods_of(core, namespace.name, job_id)
    assert {p.spec.node_name for p in pods} == {"rlk8s-node1", "rlk8s-node2"}
    for pod in pods:
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "2"
    # Four ranks trained (two per pod), and their eval covered the whole validation set.
    for rank in range(4):
        assert step_events(namespace, rank), f"rank {rank} made no training step"
    assert f"tot={VAL_IMAGES}" in logs


def test_time_limit_checkpoints_exits_75_and_the_next_attempt_resumes(
    namespace: Namespace, cpu_image: str, core
) -> None:
    # --time is per attempt: 50 s before it ends (the grace) the pods ask their ranks to save and
    # exit 75; JobSet counts one restart and the new pods resume from the checkpoint.
    job_id = submit(namespace, cpu_image, "rk-time", "--cpus", "1", "--time", "1:30",
                    "--max-restarts", "1", "--opt", "grace_seconds=50",
                    sets=[*TINY_TRAIN_SETS, "epochs=50", "batch_size=1"])
    follower = subprocess.Popen([str(VENV_BIN / "rlaunch"), "logs", "-f", job_id],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **namespace.env})
    try:
        wait_for(lambda: job_status(job_id, namespace.env)["restarts"] == 1, 600,
                 "the first attempt to end at its time limit")
        wait_for(lambda: "resumed from" in rlaunch("logs", job_id, env=namespace.env).stdout,
                 600, "the second attempt to resume")
    finally:
        rlaunch("cancel", job_id, env=namespace.env, check=False)
        followed, _ = follower.communicate(timeout=300)
    assert "time limit: asking the processes to save and stop" in followed, followed[-3000:]
    assert "requeued" in followed, followed[-3000:]


def test_a_workload_the_api_server_refuses_rolls_back_its_configmap(
    namespace: Namespace, core
) -> None:
    # A quota of no JobSets in the namespace: the real API server takes the job's ConfigMap,
    # then refuses the JobSet (quota admission, 403). Nothing of the job may stay behind.
    core.create_namespaced_resource_quota(namespace.name, {
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-jobsets"},
        "spec": {"hard": {"count/jobsets.jobset.x-k8s.io": "0"}}})
    wait_for(lambda: (core.read_namespaced_resource_quota("no-jobsets", namespace.name)
                      .status.hard or {}), 60, "the quota controller to count the namespace")
    done = rlaunch("submit", "--backend", "k8s", "--nodes", "2", "--cpus", "1",
                   "--image", "localhost/rlaunch-cpu:any", "--name", "rk-refused",
                   "--data-dir", "/data", "--output-dir", "/output", *namespace.opts(),
                   env=namespace.env, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert "creating JobSet" in error and "exceeded quota" in error, done.stderr
    assert "rolled back ConfigMap" in error, done.stderr
    assert "Traceback" not in done.stderr
    assert not core.list_namespaced_config_map(
        namespace.name, label_selector="app.kubernetes.io/managed-by=rlaunch").items
    assert json.loads(rlaunch("list", "--json", env=namespace.env).stdout) == []
