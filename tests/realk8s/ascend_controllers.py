"""The stand-ins of tests/k8s/emulators.py as controllers of the real test cluster.

MindX DL's ascend-operator and device plugin and Volcano's controllers cannot be built here, so
their stand-ins run in a thread of the test, against the real API server through `ApiStore`,
the way their upstream controllers run: a loop that lists what exists and reconciles it
(client-go informers resync the same way; ascend-operator's Reconcile, volcano's job controller
`processNextReq`). What differs from `emulators.Cluster` over kmock:

- Pods are created unbound: the real kube-scheduler places them on the nodes that advertise
  `huawei.com/Ascend910: 8` (Volcano's scheduler is not here, so the pods keep the default
  scheduler instead of the job's `schedulerName`, which volcano's createJobPod would copy in:
  pkg/controllers/job/job_controller_util.go). They carry the job as their controlling owner, as
  createJobPod sets it, so the real garbage collector removes them with the job.
- The device plugin allocates cards when it sees a pod bound to a node (ascend-device-plugin
  writes its annotations in Allocate, after the bind); the kubelet then starts the container.
- The operator fills `rings-config-<job>` once every pod of the job has its cards and its pod IP
  (ascend-operator pkg/ranktable/generator: the table is written when all pods are allocated).
- Pod phases come from the kubelets; a finished pod drives the job: all pods Succeeded ->
  Completed (volcano pkg/controllers/job/state/running.go), a Failed pod -> the job's policies
  (`emulators.Cluster._vcjob_event`), a restarted job gets new pods once the old ones are gone.
"""

from __future__ import annotations

import json
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Self

from tests.k8s.emulators import (
    DEVICE_ANNOTATION,
    VCJOBS,
    ApiStore,
    Cluster,
    DevicePlugin,
)

JOB_LABEL = "rlaunch.dev/job"


@dataclass
class BoundDevicePlugin(DevicePlugin):
    """Cards for pods the real scheduler bound: `Ascend910-0..7` and the device IPs of the
    node's cards, server_id the pod UID (recent ascend-device-plugin)."""

    node_ips: dict[str, str] = field(default_factory=dict)  # node name -> InternalIP

    def place(self, pod: dict[str, Any], cards: int) -> None:
        """Left to the real scheduler."""

    def annotations(self, pod: dict[str, Any], cards: int) -> dict[str, str]:
        node_ip = self.node_ips[pod["spec"]["nodeName"]]
        octet = node_ip.rsplit(".", 1)[1]
        chosen = list(range(cards))
        return {
            DEVICE_ANNOTATION: json.dumps({
                "pod_name": pod["metadata"]["name"], "server_id": pod["metadata"]["uid"],
                "host_ip": node_ip,
                "devices": [{"device_id": str(c), "device_ip": f"192.168.{octet}.{c}"}
                            for c in chosen]}),
            "huawei.com/Ascend910": ",".join(f"Ascend910-{c}" for c in chosen)}


@dataclass
class RealCluster(Cluster):
    """`emulators.Cluster` reconciling the workloads of one namespace of a real cluster."""

    errors: list[str] = field(default_factory=list)
    # The last lines of each failed pod's log, read before the policy deletes it.
    failures: list[str] = field(default_factory=list)
    _filled: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def store(self) -> ApiStore:
        assert isinstance(self.kube, ApiStore)
        return self.kube

    def _start(self, pod: dict[str, Any], cards: int) -> None:
        job_name = pod["metadata"]["labels"][JOB_LABEL]
        owner = self.kube.objects(*VCJOBS).get(job_name)
        if owner is not None:
            pod["metadata"]["ownerReferences"] = [{
                "apiVersion": VCJOBS[1], "kind": "Job", "name": job_name,
                "uid": owner["metadata"]["uid"], "controller": True,
                "blockOwnerDeletion": True}]
        pod["metadata"]["namespace"] = self.store.namespace
        for key in ("uid", "creationTimestamp"):
            pod["metadata"].pop(key, None)
        pod.pop("status", None)  # the kubelet's to write
        self.kube.put("pods", pod)
        self.pods[pod["metadata"]["name"]] = pod

    def sync_pods(self) -> None:
        """The pods of the namespace's jobs as the API server has them now (not those being
        deleted; `_leaving` counts those)."""
        self.pods = {name: pod for name, pod in self.kube.objects("pods").items()
                     if JOB_LABEL in pod["metadata"].get("labels", {})}

    def _leaving(self, job: str) -> bool:
        """Pods of `job` still terminating: a restart makes its new pods (same names) only once
        they are gone (volcano state/restarting.go waits for the killed pods)."""
        listed = self.store._call("GET", self.store._path("pods", "v1")
                                  + f"?labelSelector={JOB_LABEL}%3D{job}") or {}
        return bool(listed.get("items"))

    def _record_failure(self, pod: dict[str, Any]) -> None:
        from kubernetes import client

        name = pod["metadata"]["name"]
        try:
            tail = client.CoreV1Api(self.store.api).read_namespaced_pod_log(
                name, self.store.namespace, tail_lines=40)
        except Exception as err:  # noqa: BLE001 - the log is a diagnostic only
            tail = f"(no log: {err})"
        self.failures.append(f"pod {name} failed (exit {_exit_code(pod)}):\n{tail}")

    def allocate_devices(self) -> None:
        for pod in self.pods.values():
            annotations = pod["metadata"].setdefault("annotations", {})
            cards = _asked_cards(pod)
            if not cards or not pod["spec"].get("nodeName") or DEVICE_ANNOTATION in annotations:
                continue
            added = self.plugin.annotations(pod, cards)  # type: ignore[attr-defined]
            self.store._call("PATCH", self.store._path("pods", "v1", pod["metadata"]["name"]),
                             {"metadata": {"annotations": added}},
                             "application/merge-patch+json")
            annotations.update(added)

    def fill_rank_tables(self) -> None:
        """Once per set of pods, when all of the job's pods have their cards and pod IP."""
        for name, job in self.kube.objects(*VCJOBS).items():
            pods = [p for p in self.pods.values() if p["metadata"]["labels"][JOB_LABEL] == name]
            wanted = sum(t["replicas"] for t in job["spec"]["tasks"])
            ready = [p for p in pods if DEVICE_ANNOTATION in p["metadata"]["annotations"]
                     and (p.get("status") or {}).get("podIP")]
            uids = tuple(sorted(p["metadata"]["uid"] for p in ready))
            if len(ready) == wanted == len(pods) and self._filled.get(name) != uids:
                super().fill_rank_tables()
                self._filled[name] = uids

    def drive_vcjobs(self) -> None:
        """Start new jobs, finish or restart them from their pods' phases."""
        for name, job in self.kube.objects(*VCJOBS).items():
            phase = ((job.get("status") or {}).get("state") or {}).get("phase")
            pods = [p for p in self.pods.values() if p["metadata"]["labels"][JOB_LABEL] == name]
            if phase is None or (phase == "Restarting" and not self._leaving(name)):
                self.admit_vcjob(job)
                self.start_vcjob(self.kube.objects(*VCJOBS)[name])
                continue
            if phase != "Running" or not pods:
                continue
            phases = [(p.get("status") or {}).get("phase") for p in pods]
            failed = next((p for p in pods if (p.get("status") or {}).get("phase") == "Failed"),
                          None)
            if failed is not None:
                self._record_failure(failed)
                self._vcjob_event(name, "PodFailed", _exit_code(failed))
            elif all(ph == "Succeeded" for ph in phases):
                self._set_status(VCJOBS, name, {
                    "state": {"phase": "Completed"}, "succeeded": len(pods),
                    "retryCount": self._retries(VCJOBS, name)})

    def reconcile(self) -> None:
        self.sync_pods()
        self.drive_vcjobs()
        self.sync_pods()
        self.allocate_devices()
        self.fill_rank_tables()


def _asked_cards(pod: dict[str, Any]) -> int:
    limits = pod["spec"]["containers"][0].get("resources", {}).get("limits", {})
    return int(limits.get("huawei.com/Ascend910", 0))


def _exit_code(pod: dict[str, Any]) -> int | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        code = (status.get("state") or {}).get("terminated", {}).get("exitCode")
        if code:
            return int(code)
    return None


class ControllerLoop:
    """Runs `cluster.reconcile()` every `period` seconds in a thread until stopped; what goes
    wrong in a round is kept in `cluster.errors` (the test asserts there is none)."""

    def __init__(self, cluster: RealCluster, period: float = 1.0) -> None:
        self.cluster = cluster
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)

    def _run(self, period: float) -> None:
        while not self._stop.is_set():
            try:
                self.cluster.reconcile()
            except Exception:  # noqa: BLE001 - kept for the test to report
                self.cluster.errors.append(traceback.format_exc(limit=3))
            self._stop.wait(period)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
