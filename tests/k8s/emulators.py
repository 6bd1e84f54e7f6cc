"""Stand-ins for the controllers of a MindX DL / Volcano / JobSet cluster, over the kmock server.

None of these can run here (no kube-apiserver, no Ascend cards), so each plays what its upstream
project implements, cited next to the behaviour:

- `DevicePlugin`: schedules a pod on a node and writes its card allocation the way MindX DL's
  ascend-device-plugin does (annotation `ascend.kubectl.kubernetes.io/ascend-910-configuration`
  with server_id, host_ip and the cards' device IPs; `huawei.com/Ascend910: Ascend910-0,...`).
  `server_id` is the pod UID in one variant (recent device plugins) and the node IP in the other.
- `AscendOperator`: mind-cluster's ascend-operator. It creates an AscendJob's pods (the
  `<job>-scheduler-0` / `<job>-worker-<i>` names of kubeflow's common controller, MindSpore's
  variables from pkg/controllers/v1/env.go setMindSporeEnv, `hccl/rankIndex`), and fills the
  rank table ConfigMap `rings-config-<job>` only for the workloads it watches
  (pkg/ranktable/plugins.go: AscendJob, Volcano Job, Deployment, StatefulSet with the
  `ring-controller.atlas` label, or a volume named like common.RanktableStr), building it as
  pkg/ranktable/common/common.go does (rank_id = rankIndex * cards + i, container_ip = pod IP,
  servers sorted by their first rank, "status": "completed").
- `VolcanoJobController`: volcano's job controller. Pods `<job>-<task>-<index>` with
  VC_TASK_INDEX (env plugin); a pod event runs the job's `policies` in order
  (pkg/controllers/job/job_controller_util.go applyPolicies): RestartJob kills every pod and
  starts them again, counting `status.retryCount`; past `maxRetry` the job is Failed.
- `JobSetController`: kubernetes-sigs/jobset. An Indexed child Job whose failed pod fails it once
  `backoffLimit` is used up; a failed child Job restarts the whole JobSet (`status.restarts`)
  until `failurePolicy.maxRestarts`, then the JobSet is Failed (pkg/controllers/jobset_controller.go).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.k8s.conftest import NAMESPACE, KubeServer

DEVICE_ANNOTATION = "ascend.kubectl.kubernetes.io/ascend-910-configuration"
RANK_INDEX_ANNOTATION = "hccl/rankIndex"
RING_LABEL = "ring-controller.atlas"
ACJOBS = ("ascendjobs", "mindxdl.gitee.com/v1")
VCJOBS = ("jobs", "batch.volcano.sh/v1alpha1")
JOBSETS = ("jobsets", "jobset.x-k8s.io/v1alpha2")
BATCH_JOBS = ("jobs", "batch/v1")


@dataclass
class DevicePlugin:
    """Nodes with 8 cards each; places pods one per node and writes their allocation."""

    nodes: list[str]  # node IPs
    server_id: str = "pod-uid"  # or "node-ip"
    cards: int = 8
    _next: int = 0

    def place(self, pod: dict[str, Any], cards: int) -> None:
        node = self.nodes[self._next % len(self.nodes)]
        self._next += 1
        octet = node.rsplit(".", 1)[1]
        pod["spec"]["nodeName"] = node
        pod["status"] = {"phase": "Running", "hostIP": node,
                         "podIP": f"172.16.{octet}.{self._next}"}
        if not cards:
            return
        chosen = list(range(cards))
        server_id = pod["metadata"]["uid"] if self.server_id == "pod-uid" else node
        pod["metadata"]["annotations"][DEVICE_ANNOTATION] = json.dumps({
            "pod_name": pod["metadata"]["name"], "server_id": server_id, "host_ip": node,
            "devices": [{"device_id": str(c), "device_ip": f"192.168.{octet}.{c}"}
                        for c in chosen]})
        pod["metadata"]["annotations"]["huawei.com/Ascend910"] = ",".join(
            f"Ascend910-{c}" for c in chosen)


def _container_env(pod: dict[str, Any]) -> dict[str, str]:
    """The plain env of the pod's first container plus the downward-API fields we use."""
    container = pod["spec"]["containers"][0]
    out: dict[str, str] = {}
    fields = {"status.hostIP": pod["status"].get("hostIP", ""),
              "status.podIP": pod["status"].get("podIP", ""),
              "metadata.uid": pod["metadata"]["uid"]}
    for item in container.get("env", []):
        if "value" in item:
            out[item["name"]] = item["value"]
        else:
            path = item["valueFrom"]["fieldRef"]["fieldPath"]
            if path.startswith("metadata.annotations['"):
                out[item["name"]] = pod["metadata"]["annotations"].get(path[22:-2], "")
            else:
                out[item["name"]] = fields[path]
    return out


def _new_pod(name: str, template: dict[str, Any], extra_env: dict[str, str],
             annotations: dict[str, str]) -> dict[str, Any]:
    spec = json.loads(json.dumps(template["spec"]))
    for key, value in extra_env.items():
        spec["containers"][0].setdefault("env", []).append({"name": key, "value": value})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": str(uuid.uuid4()),
                         "creationTimestamp": "2026-01-01T00:00:00Z",
                         "labels": dict(template["metadata"].get("labels", {})),
                         "annotations": dict(annotations)},
            "spec": spec, "status": {"phase": "Pending"}}


def _cards(template: dict[str, Any]) -> int:
    limits = template["spec"]["containers"][0].get("resources", {}).get("limits", {})
    return int(limits.get("huawei.com/Ascend910", 0))


@dataclass
class Cluster:
    """The controllers of one emulated cluster, reconciled on demand (`reconcile()`)."""

    kube: KubeServer
    plugin: DevicePlugin
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)

    # ---- workload controllers ----------------------------------------------------------------

    def _start(self, pod: dict[str, Any], cards: int) -> None:
        self.plugin.place(pod, cards)
        self.pods[pod["metadata"]["name"]] = pod
        self.kube.put("pods", pod)

    def start_ascendjob(self, job: dict[str, Any]) -> None:
        """The ascend-operator's pods for an AscendJob (Scheduler + Workers)."""
        name = job["metadata"]["name"]
        specs = job["spec"]["replicaSpecs"]
        workers = specs["Worker"]["replicas"]
        cards = _cards(specs["Worker"]["template"])
        port = str(specs["Worker"]["template"]["spec"]["containers"][0]["ports"][0][
            "containerPort"])
        sched = _new_pod(f"{name}-scheduler-0", specs["Scheduler"]["template"],
                         {"MS_ROLE": "MS_SCHED", "MS_SCHED_PORT": port}, {})
        self._start(sched, 0)
        for i in range(workers):
            pod = _new_pod(f"{name}-worker-{i}", specs["Worker"]["template"], {
                "MS_ROLE": "MS_WORKER", "MS_SCHED_HOST": sched["status"]["podIP"],
                "MS_SCHED_PORT": port, "MS_LOCAL_WORKER": str(cards),
                "MS_WORKER_NUM": str(cards * workers), "MS_NODE_RANK": str(i)},
                {RANK_INDEX_ANNOTATION: str(i)})
            self._start(pod, cards)

    def start_vcjob(self, job: dict[str, Any]) -> None:
        """Volcano: `<job>-<task>-<index>` pods with VC_TASK_INDEX (env plugin)."""
        name = job["metadata"]["name"]
        for task in job["spec"]["tasks"]:
            for i in range(task["replicas"]):
                pod = _new_pod(f"{name}-{task['name']}-{i}", task["template"],
                               {"VC_TASK_INDEX": str(i)}, {RANK_INDEX_ANNOTATION: str(i)})
                self._start(pod, _cards(task["template"]))
        self._set_status(VCJOBS, name, {"state": {"phase": "Running"},
                                        "retryCount": self._retries(VCJOBS, name)})

    def start_jobset(self, job: dict[str, Any]) -> None:
        """JobSet: Indexed child Jobs; pods carry the completion index annotation."""
        name = job["metadata"]["name"]
        for rjob in job["spec"]["replicatedJobs"]:
            spec = rjob["template"]["spec"]
            for i in range(spec["completions"]):
                pod = _new_pod(f"{name}-{rjob['name']}-0-{i}-{uuid.uuid4().hex[:5]}",
                               spec["template"], {"JOB_COMPLETION_INDEX": str(i)},
                               {"batch.kubernetes.io/job-completion-index": str(i)})
                self._start(pod, 0)

    def _retries(self, kind: tuple[str, str], name: str) -> int:
        status = self.kube.objects(*kind)[name].get("status") or {}
        return int(status.get("retryCount") or status.get("restarts") or 0)

    def _set_status(self, kind: tuple[str, str], name: str, status: dict[str, Any]) -> None:
        obj = self.kube.objects(*kind)[name]
        obj["status"] = status
        self.kube.put(kind[0], obj, kind[1])

    def start(self) -> None:
        """Start the pods of every workload that has none yet."""
        have = {p["metadata"]["labels"].get("rlaunch.dev/job") for p in self.pods.values()}
        for name, job in self.kube.objects(*ACJOBS).items():
            if name not in have:
                self.start_ascendjob(job)
        for name, job in self.kube.objects(*VCJOBS).items():
            if name not in have:
                self.start_vcjob(job)
        for name, job in self.kube.objects(*JOBSETS).items():
            if name not in have:
                self.start_jobset(job)

    def _kill_all(self, job: str) -> None:
        for name in [n for n, p in self.pods.items()
                     if p["metadata"]["labels"].get("rlaunch.dev/job") == job]:
            self.kube.remove("pods", name)
            del self.pods[name]

    def evict(self, pod_name: str) -> None:
        """A node is lost: its pod is evicted (DisruptionTarget), then the controllers react."""
        pod = self.pods[pod_name]
        job = pod["metadata"]["labels"]["rlaunch.dev/job"]
        pod["status"] = {**pod["status"], "phase": "Failed", "reason": "Evicted",
                         "conditions": [{"type": "DisruptionTarget", "status": "True",
                                         "reason": "EvictionByEvictionAPI"}]}
        self.kube.put("pods", pod)
        if job in self.kube.objects(*VCJOBS):
            self._vcjob_event(job, "PodEvicted")
        elif job in self.kube.objects(*JOBSETS):
            self._jobset_pod_failed(job)

    def _vcjob_event(self, job: str, event: str) -> None:
        """applyPolicies: the first job-level policy whose event matches decides the action."""
        obj = self.kube.objects(*VCJOBS)[job]
        action = next((p["action"] for p in obj["spec"].get("policies", [])
                       if p.get("event") in (event, "*") or event in p.get("events", [])),
                      "SyncJob")
        if action != "RestartJob":
            return
        retries = self._retries(VCJOBS, job) + 1
        self._kill_all(job)
        if retries > obj["spec"].get("maxRetry", 3):
            self._set_status(VCJOBS, job, {"state": {"phase": "Failed"}, "retryCount": retries})
            return
        # Restarting while the old pods go, then Running with new pods.
        self._set_status(VCJOBS, job, {"state": {"phase": "Restarting"}, "retryCount": retries})

    def _jobset_pod_failed(self, job: str) -> None:
        obj = self.kube.objects(*JOBSETS)[job]
        if obj["spec"]["replicatedJobs"][0]["template"]["spec"].get("backoffLimit", 6) > 0:
            return  # the child Job would retry this one pod; nothing group-wide happens
        restarts = self._retries(JOBSETS, job) + 1
        self._kill_all(job)
        if restarts > obj["spec"].get("failurePolicy", {}).get("maxRestarts", 0):
            self._set_status(JOBSETS, job, {"restarts": restarts - 1, "conditions": [
                {"type": "Failed", "status": "True", "reason": "ReachedMaxRestarts"}]})
            return
        self._set_status(JOBSETS, job, {"restarts": restarts})

    def resume(self, job: str) -> None:
        """After a restart: the controller starts the group's pods again."""
        if job in self.kube.objects(*VCJOBS):
            self.start_vcjob(self.kube.objects(*VCJOBS)[job])
        elif job in self.kube.objects(*JOBSETS):
            self.start_jobset(self.kube.objects(*JOBSETS)[job])

    # ---- the MindX DL operator's rank table ----------------------------------------------

    @staticmethod
    def watched(obj: dict[str, Any], kind: tuple[str, str]) -> bool:
        """plugins.go ShouldGenerateRankTable, for the kinds the operator handles at all."""
        if kind not in (ACJOBS, VCJOBS):
            return False  # batch/v1 Jobs (and anything else) have no rank table plugin
        if RING_LABEL in obj["metadata"].get("labels", {}):
            return True
        templates = ([r["template"] for r in obj["spec"]["replicaSpecs"].values()]
                     if kind == ACJOBS else [t["template"] for t in obj["spec"]["tasks"]])
        return any(v["name"] == "ranktable" for t in templates for v in t["spec"]["volumes"])

    def fill_rank_tables(self) -> None:
        for kind in (ACJOBS, VCJOBS, BATCH_JOBS):
            for name, obj in self.kube.objects(*kind).items():
                if not self.watched(obj, kind):
                    continue
                pods = [p for p in self.pods.values()
                        if p["metadata"]["labels"].get("rlaunch.dev/job") == name
                        and DEVICE_ANNOTATION in p["metadata"]["annotations"]]
                servers = []
                for pod in pods:
                    info = json.loads(pod["metadata"]["annotations"][DEVICE_ANNOTATION])
                    rank_index = int(pod["metadata"]["annotations"][RANK_INDEX_ANNOTATION])
                    devices = info["devices"]
                    servers.append({
                        "server_id": info["server_id"], "host_ip": info["host_ip"],
                        "container_ip": pod["status"]["podIP"],
                        "device": [{**d, "rank_id": str(rank_index * len(devices) + i)}
                                   for i, d in enumerate(devices)]})
                servers.sort(key=lambda s: int(s["device"][0]["rank_id"]))
                rings = f"rings-config-{name}"
                if rings not in self.kube.objects("configmaps"):
                    continue  # the operator writes into the job's ConfigMap; none, nothing
                table = {"status": "completed", "version": "1.0",
                         "server_count": str(len(servers)), "server_list": servers}
                cm = self.kube.objects("configmaps")[rings]
                cm["data"] = {"hccl.json": json.dumps(table)}
                self.kube.put("configmaps", cm)

    def reconcile(self) -> None:
        self.start()
        self.fill_rank_tables()

    def pod_env(self, pod_name: str) -> dict[str, str]:
        """What the container's environment holds, from the stored pod."""
        return _container_env(self.pods[pod_name])
