"""Stand-ins for the controllers of a MindX DL / Volcano / JobSet cluster, over the kmock server
or (tests/realk8s/ascend_controllers.py) as controllers of the real test cluster.

MindX DL and Volcano cannot be built here (their modules are not served; no Ascend cards), so
each plays what its upstream project implements, cited next to the behaviour:

- `DevicePlugin`: schedules a pod on a node and writes its card allocation the way MindX DL's
  ascend-device-plugin does (annotation `ascend.kubectl.kubernetes.io/ascend-910-configuration`
  with server_id, host_ip and the cards' device IPs; `huawei.com/Ascend910: Ascend910-0,...`).
  `server_id` is the pod UID in one variant (recent device plugins) and the node IP in the other.
- `AscendOperator`: mind-cluster's ascend-operator. It validates an AscendJob first (with gang
  scheduling, the default, it GETs the job's Volcano queue by name: pkg/controllers/v1/
  ascendjob_validate.go validateBasicInfo), creates its pods (the
  `<job>-scheduler-0` / `<job>-worker-<i>` names of kubeflow's common controller, MindSpore's
  variables from pkg/controllers/v1/env.go setMindSporeEnv, `hccl/rankIndex`), fails the job
  on a failed pod unless MindX DL's fault retry applies (job.go reconcileWithFailed), and fills the
  rank table ConfigMap `rings-config-<job>` only for the workloads it watches
  (pkg/ranktable/plugins.go: AscendJob, Volcano Job, Deployment, StatefulSet with the
  `ring-controller.atlas` label, or a volume named like common.RanktableStr), building it as
  pkg/ranktable/common/common.go does (rank_id = rankIndex * cards + i, container_ip = pod IP,
  servers sorted by their first rank, "status": "completed"). After a restart the previous
  attempt's completed table stays until `fill_rank_tables` runs again (pod.go
  handleCompletedRankTable keeps it until it sees the new pods).
- `VolcanoJobController`: volcano's job controller. Its webhook turns `maxRetry: 0` into 3
  (pkg/webhooks/admission/jobs/mutate/mutate_job.go). Pods `<job>-<task>-<index>` with
  VC_TASK_INDEX (env plugin); a pod event runs the first of the job's `policies` whose event or
  exit code matches (pkg/controllers/job/job_controller_util.go applyPolicies): RestartJob kills
  every pod and counts `status.retryCount` (state/running.go), and the restart fails the job
  once `retryCount >= maxRetry` (state/restarting.go); TerminateJob ends it (Terminated).
- `JobSetController`: kubernetes-sigs/jobset over Kubernetes' Job controller. A failed pod fails
  its Indexed child Job through the Job's `podFailurePolicy` (kubernetes
  pkg/controller/job/pod_failure_policy.go: reason PodFailurePolicy, message "... matching
  FailJob rule at index N") or once `backoffLimit` is used up (BackoffLimitExceeded); the
  JobSet's first matching `failurePolicy.rules` entry acts, RestartJobSet by default, counted
  against `maxRestarts` unless the action is RestartJobSetAndIgnoreMaxRestarts
  (pkg/controllers/failure_policy.go).

The controllers read and write objects only through `objects`, `put` and `remove`: kmock's
store directly (tests/k8s/conftest.py KubeServer), or any Kubernetes API server through the
official client (`ApiStore`, the same calls over HTTP; a real kube-apiserver keeps pod status in
its status subresource, which `put` writes too).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from tests.k8s.conftest import NAMESPACE

DEVICE_ANNOTATION = "ascend.kubectl.kubernetes.io/ascend-910-configuration"
RANK_INDEX_ANNOTATION = "hccl/rankIndex"
RING_LABEL = "ring-controller.atlas"
ACJOBS = ("ascendjobs", "mindxdl.gitee.com/v1")
VCJOBS = ("jobs", "batch.volcano.sh/v1alpha1")
JOBSETS = ("jobsets", "jobset.x-k8s.io/v1alpha2")
BATCH_JOBS = ("jobs", "batch/v1")
# What the ascend-operator reads for MindX DL's fault retry: this label on the job, and the
# retries MindX's Volcano plugin has left for it in volcano-system/vcjob-fault-npu-cm
# (ascend-operator pkg/controllers/v1/consts.go, unconditaional_retry.go).
FAULT_RETRY_LABEL = "fault-retry-times"
# Volcano's webhook default for maxRetry (mutate_job.go DefaultMaxRetry).
VOLCANO_DEFAULT_MAX_RETRY = 3


class ObjectStore(Protocol):
    """Where the emulated controllers read and write objects (one namespace)."""

    def objects(self, plural: str, group_version: str = "v1") -> dict[str, dict[str, Any]]: ...

    def put(self, plural: str, obj: dict[str, Any], group_version: str = "v1") -> None: ...

    def remove(self, plural: str, name: str, group_version: str = "v1") -> None: ...


@dataclass
class ApiStore:
    """`ObjectStore` over a Kubernetes API server, through the official client's REST calls."""

    api: Any  # kubernetes.client.ApiClient
    namespace: str = NAMESPACE

    def _path(self, plural: str, group_version: str, name: str = "") -> str:
        base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        return f"{base}/namespaces/{self.namespace}/{plural}" + (f"/{name}" if name else "")

    def _call(self, method: str, path: str, body: Any = None,
              content_type: str = "application/json") -> Any:
        """One REST call (the client's own serialization and credentials); None on 404."""
        request = self.api.param_serialize(
            method=method, resource_path=path, body=body, auth_settings=["BearerToken"],
            header_params={"Accept": "application/json", "Content-Type": content_type})
        resp = self.api.call_api(*request[:2], header_params=request[2], body=request[3],
                                 post_params=request[4])
        resp.read()
        if resp.status == 404:
            return None
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {resp.data[:300]!r}")
        return json.loads(resp.data or b"null")

    def objects(self, plural: str, group_version: str = "v1") -> dict[str, dict[str, Any]]:
        listed = self._call("GET", self._path(plural, group_version)) or {}
        return {o["metadata"]["name"]: o for o in listed.get("items") or []
                if not o["metadata"].get("deletionTimestamp")}

    def put(self, plural: str, obj: dict[str, Any], group_version: str = "v1") -> None:
        path = self._path(plural, group_version, obj["metadata"]["name"])
        body = {k: v for k, v in obj.items() if k != "status"}
        if self._call("GET", path) is None:
            stored = self._call("POST", self._path(plural, group_version), body)
            obj["metadata"]["uid"] = (stored or {}).get("metadata", {}).get("uid",
                                                                           obj["metadata"].get("uid"))
        else:
            self._call("PATCH", path, body, "application/merge-patch+json")
        if "status" in obj:
            self._call("PATCH", path + "/status", {"status": obj["status"]},
                       "application/merge-patch+json")

    def remove(self, plural: str, name: str, group_version: str = "v1") -> None:
        self._call("DELETE", self._path(plural, group_version, name))


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


def _condition(kind: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": kind, "status": "True", "reason": reason, "message": message}


@dataclass
class Cluster:
    """The controllers of one emulated cluster, reconciled on demand (`reconcile()`).

    `queues`: the Volcano queues that exist (Volcano's installer creates `default`).
    `mindx_fault_plugin`: MindX DL's Volcano plugin with fault handling is installed; it keeps
    each retry job's remain-retry-times in volcano-system/vcjob-fault-npu-cm, starting from the
    job's fault-retry-times label (modelled, not read: mind-cluster component/ascend-for-volcano).
    """

    kube: ObjectStore
    plugin: DevicePlugin
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    queues: set[str] = field(default_factory=lambda: {"default"})
    mindx_fault_plugin: bool = False
    remain_retry_times: dict[str, int] = field(default_factory=dict)

    # ---- workload controllers ----------------------------------------------------------------

    def _start(self, pod: dict[str, Any], cards: int) -> None:
        self.kube.put("pods", pod)  # created first: an API server gives it its uid
        self.plugin.place(pod, cards)
        self.pods[pod["metadata"]["name"]] = pod
        self.kube.put("pods", pod)

    def validate_ascendjob(self, job: dict[str, Any]) -> str | None:
        """ascendjob_validate.go validateJob. validateBasicInfo: successPolicy "" or AllWorkers;
        with gang scheduling (enabled by default, ascend-operator main.go) and a
        schedulingPolicy, the queue is read by name, and client-go refuses an empty name
        before sending (rest/request.go Name). validateSpec / checkReplicaSpecs: the framework
        label's replica types (MindSpore: Scheduler, Worker), no replica count 0, leaders of
        exactly 1, a container named "ascend" with an image, NPUs asked by every non-Scheduler
        "ascend" container, a Scheduler when more than one NPU is asked in all."""
        spec = job["spec"]
        if spec.get("successPolicy", "") not in ("", "AllWorkers"):
            return "SuccessPolicyError: job success policy is invalid"
        policy = spec.get("runPolicy", {}).get("schedulingPolicy")
        if policy is not None:
            queue = policy.get("queue", "")
            if not queue:
                return "QueueGetFailed: resource name may not be empty"
            if queue not in self.queues:
                return f'QueueGetFailed: queues.scheduling.volcano.sh "{queue}" not found'
        framework = job["metadata"].get("labels", {}).get("framework")
        allowed = {"mindspore": {"Scheduler", "Worker"}, "pytorch": {"Master", "Worker"},
                   "tensorflow": {"Chief", "Worker"}}.get(str(framework))
        if allowed is None:
            return f"FrameworkLabelError: framework label {framework!r} is not supported"
        specs = spec.get("replicaSpecs") or {}
        npus = 0
        for rtype, replica in specs.items():
            if rtype not in allowed:
                return f"ReplicaTypeError: replicaType is {rtype} but must be one of {allowed}"
            if replica.get("replicas", 1) == 0:
                return f"ReplicaTypeError: replicaType<{rtype}> replicas is 0"
            if rtype != "Worker" and replica.get("replicas", 1) != 1:
                return f"ReplicaTypeError: replicaType<{rtype}> replicas is invalid"
            containers = replica["template"]["spec"].get("containers", [])
            if any(not c.get("image") for c in containers):
                return f"ContainerError: Image is undefined in the container of {rtype}"
            ascend = [c for c in containers if c["name"] == "ascend"]
            if not ascend:
                return f"ContainerError: There is no container named ascend in {rtype}"
            asked = _cards(replica["template"])
            if asked == 0 and rtype != "Scheduler":
                return f"ContainerError: replicaType<{rtype}> req npu<0> is invalid"
            if rtype == "Worker":
                npus += asked * replica.get("replicas", 1)
        if framework == "mindspore" and "Scheduler" not in specs and npus > 1:
            return "ReplicaTypeError: schdeuler not found, but need 1 while req npu more than 1"
        return None

    def start_ascendjob(self, job: dict[str, Any]) -> None:
        """The ascend-operator's pods for an AscendJob (Scheduler + Workers), once it is valid."""
        name = job["metadata"]["name"]
        problem = self.validate_ascendjob(job)
        if problem:
            # ascendjob_controller.go Reconcile: Failed, reason JobValidFailed; no pods.
            self._set_status(ACJOBS, name, {"conditions": [
                _condition("Failed", "JobValidFailed", problem)]})
            return
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
        status = self.kube.objects(*ACJOBS)[name].get("status") or {}
        self._set_status(ACJOBS, name, {**status, "conditions": [
            c for c in status.get("conditions", []) if c["type"] != "Restarting"]
            + [_condition("Running", "JobRunning")]})

    def admit_vcjob(self, job: dict[str, Any]) -> None:
        """Volcano's mutating webhook: maxRetry 0 (or none) becomes 3 (mutate_job.go)."""
        if not job["spec"].get("maxRetry"):
            job["spec"]["maxRetry"] = VOLCANO_DEFAULT_MAX_RETRY
            self.kube.put(VCJOBS[0], job, VCJOBS[1])

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
        """Start the pods of every workload that has none yet (and is not finished)."""
        have = {p["metadata"]["labels"].get("rlaunch.dev/job") for p in self.pods.values()}
        for name, job in self.kube.objects(*ACJOBS).items():
            finished = {c["type"] for c in (job.get("status") or {}).get("conditions", [])} \
                & {"Failed", "Succeeded"}
            if name not in have and not finished:
                self.start_ascendjob(job)
        for name, job in self.kube.objects(*VCJOBS).items():
            if name not in have and "status" not in job:
                self.admit_vcjob(job)
                self.start_vcjob(self.kube.objects(*VCJOBS)[name])
        for name, job in self.kube.objects(*JOBSETS).items():
            if name not in have and "status" not in job:
                self.start_jobset(job)

    def _job_pods(self, job: str) -> list[str]:
        return [n for n, p in self.pods.items()
                if p["metadata"]["labels"].get("rlaunch.dev/job") == job]

    def _kill_all(self, job: str) -> None:
        for name in self._job_pods(job):
            self.kube.remove("pods", name)
            del self.pods[name]

    def evict(self, pod_name: str) -> None:
        """A node is lost: its pod is evicted (DisruptionTarget), then the controllers react."""
        pod = self.pods[pod_name]
        pod["status"] = {**pod["status"], "phase": "Failed", "reason": "Evicted",
                         "conditions": [{"type": "DisruptionTarget", "status": "True",
                                         "reason": "EvictionByEvictionAPI"}]}
        self.kube.put("pods", pod)
        self._pod_failed(pod, "PodEvicted", None)

    def exits(self, pod_name: str, exit_code: int) -> None:
        """A pod's container ends with `exit_code` (a crash, a usage error, exit 75 after a
        checkpoint at --time); the pod is Failed and the controllers react."""
        pod = self.pods[pod_name]
        container = pod["spec"]["containers"][0]["name"]
        pod["status"] = {**pod["status"], "phase": "Failed", "containerStatuses": [
            {"name": container, "state": {"terminated": {"exitCode": exit_code}}}]}
        self.kube.put("pods", pod)
        self._pod_failed(pod, "PodFailed", exit_code)

    def _pod_failed(self, pod: dict[str, Any], event: str, exit_code: int | None) -> None:
        job = pod["metadata"]["labels"]["rlaunch.dev/job"]
        if job in self.kube.objects(*VCJOBS):
            self._vcjob_event(job, event, exit_code)
        elif job in self.kube.objects(*JOBSETS):
            self._jobset_pod_failed(job, pod)
        elif job in self.kube.objects(*ACJOBS):
            self._ascendjob_pod_failed(job)

    def _vcjob_event(self, job: str, event: str, exit_code: int | None) -> None:
        """applyPolicies: the first job-level policy whose event or exit code matches acts."""
        obj = self.kube.objects(*VCJOBS)[job]
        action = "SyncJob"
        for policy in obj["spec"].get("policies", []):
            events = policy.get("events") or ([policy["event"]] if "event" in policy else [])
            if events and (event in events or "*" in events):
                action = policy["action"]
                break
            if exit_code and policy.get("exitCode") == exit_code:
                action = policy["action"]
                break
        retries = self._retries(VCJOBS, job)
        if action in ("TerminateJob", "AbortJob"):
            self._kill_all(job)
            phase = "Terminated" if action == "TerminateJob" else "Aborted"
            self._set_status(VCJOBS, job, {"state": {"phase": phase}, "retryCount": retries})
            return
        if action != "RestartJob":
            return
        # running.go: RestartJob kills the pods and counts the retry; restarting.go: the job
        # fails when retryCount >= maxRetry, else goes back to Pending for new pods.
        retries += 1
        self._kill_all(job)
        if retries >= obj["spec"]["maxRetry"]:
            self._set_status(VCJOBS, job, {"state": {"phase": "Failed"}, "retryCount": retries})
            return
        self._set_status(VCJOBS, job, {"state": {"phase": "Restarting"}, "retryCount": retries})

    @staticmethod
    def child_job_failure(job_spec: dict[str, Any], pod: dict[str, Any]) -> tuple[str, str]:
        """(reason, message) of the Indexed child Job a failed pod ends (backoffLimit 0):
        pod_failure_policy.go matchPodFailurePolicy, else BackoffLimitExceeded."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        statuses = pod["status"].get("containerStatuses", [])
        conditions = pod["status"].get("conditions", [])
        for index, rule in enumerate((job_spec.get("podFailurePolicy") or {}).get("rules", [])):
            if rule["action"] != "FailJob":
                continue  # Ignore / Count / FailIndex: not used by rlaunch
            on_codes = rule.get("onExitCodes")
            if on_codes:
                for cs in statuses:
                    code = cs["state"].get("terminated", {}).get("exitCode", 0)
                    inside = code in on_codes["values"]
                    if code and inside == (on_codes["operator"] == "In"):
                        return "PodFailurePolicy", (
                            f"Container {cs['name']} for pod {namespace}/{name} failed with exit "
                            f"code {code} matching FailJob rule at index {index}")
            for pattern in rule.get("onPodConditions", []):
                for cond in conditions:
                    if (cond["type"], cond["status"]) == (pattern["type"], pattern["status"]):
                        return "PodFailurePolicy", (
                            f"Pod {namespace}/{name} has condition {cond['type']} matching "
                            f"FailJob rule at index {index}")
        return "BackoffLimitExceeded", "Job has reached the specified backoff limit"

    def _jobset_pod_failed(self, job: str, pod: dict[str, Any]) -> None:
        obj = self.kube.objects(*JOBSETS)[job]
        child = obj["spec"]["replicatedJobs"][0]["template"]["spec"]
        if child.get("backoffLimit", 6) > 0:
            return  # the child Job would retry this one pod; nothing group-wide happens
        reason, message = self.child_job_failure(child, pod)
        policy = obj["spec"].get("failurePolicy", {})
        # failure_policy.go: the first rule whose reasons and message patterns match acts.
        action = "RestartJobSet"
        for rule in policy.get("rules", []):
            reasons = rule.get("onJobFailureReasons") or []
            patterns = rule.get("onJobFailureMessagePatterns") or []
            if (not reasons or reason in reasons) and (
                    not patterns or any(re.search(p, message) for p in patterns)):
                action = rule["action"]
                break
        status = dict(obj.get("status") or {})
        counted = int(status.get("restartsCountTowardsMax") or 0)
        self._kill_all(job)
        if action == "FailJobSet":
            status["conditions"] = [_condition("Failed", "FailJobSetFailurePolicyAction",
                                               "applying FailJobSet failure policy action")]
        elif action == "RestartJobSet" and counted >= policy.get("maxRestarts", 0):
            status["conditions"] = [_condition("Failed", "ReachedMaxRestarts",
                                               "jobset failed due to reaching max number of "
                                               "restarts")]
        else:
            status["restarts"] = int(status.get("restarts") or 0) + 1
            if action == "RestartJobSet":
                status["restartsCountTowardsMax"] = counted + 1
        self._set_status(JOBSETS, job, status)

    def _ascendjob_pod_failed(self, job: str) -> None:
        """job.go checkSpecStatus -> reconcileWithFailed: a failed pod fails the job, unless the
        job is an unconditional-retry job (label fault-retry-times > 0 with gang scheduling) and
        MindX's Volcano plugin has retries left for it; then it is Restarting. A finished job's
        pods go as runPolicy.cleanPodPolicy says (kubeflow common DeletePodsAndServices; the
        operator defaults it to None, pkg/api/v1/defaults.go): None deletes only Pending pods."""
        obj = self.kube.objects(*ACJOBS)[job]
        labels = obj["metadata"].get("labels", {})
        retry_label = str(labels.get(FAULT_RETRY_LABEL, ""))
        unconditional = retry_label.isdigit() and int(retry_label) > 0
        remain = self.remain_retry_times.setdefault(job, int(retry_label)) \
            if unconditional and self.mindx_fault_plugin else None
        if remain is not None and remain >= 1:
            # MindX's fault handling deletes the group; the operator recreates it (resume()).
            self.remain_retry_times[job] = remain - 1
            self._kill_all(job)
            self._set_status(ACJOBS, job, {"conditions": [_condition(
                "Restarting", "JobRestarting",
                f"AscendJob <{NAMESPACE}/{job}> is unconditional retry job and remain retry "
                f"times is <{remain}>.")]})
            return
        message = (f"AscendJob <{NAMESPACE}/{job}> has failed because pod failed and remain "
                   "retry times is 0." if remain == 0 else
                   f"AscendJob <{NAMESPACE}/{job}> has failed because has pod failed.")
        self._set_status(ACJOBS, job, {"conditions": [_condition("Failed", "JobFailed", message)]})
        clean = obj["spec"].get("runPolicy", {}).get("cleanPodPolicy", "None")
        for name in self._job_pods(job):
            phase = self.pods[name]["status"]["phase"]
            if clean == "All" or (clean == "Running" and phase in ("Running", "Pending")) \
                    or phase == "Pending":
                self.kube.remove("pods", name)
                del self.pods[name]

    def resume(self, job: str) -> None:
        """After a restart: the controller starts the group's pods again."""
        if job in self.kube.objects(*VCJOBS):
            self.start_vcjob(self.kube.objects(*VCJOBS)[job])
        elif job in self.kube.objects(*JOBSETS):
            self.start_jobset(self.kube.objects(*JOBSETS)[job])
        elif job in self.kube.objects(*ACJOBS):
            self.start_ascendjob(self.kube.objects(*ACJOBS)[job])

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
