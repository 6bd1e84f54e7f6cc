"""Cluster operations of the k8s backend, through the official `kubernetes` client.

Imported only when a k8s job is submitted or inspected (the client costs ~0.5 s to import).
ConfigMaps and pods go through the core API; the workload (AscendJob, Volcano Job, JobSet)
through the custom-objects API. Every API failure becomes a `BackendError` with one line that
names what was attempted and why it failed (401/403/404/409/422, unreachable server).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import queue
import secrets
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from launcher.backends.base import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    REQUEUED,
    RUNNING,
    UNKNOWN,
    BackendError,
    JobStatus,
)
from launcher.backends.k8s_names import GATHER_LABEL, JOB_LABEL, WORKLOADS, JobNames, Workload

# The training container: "ascend" in Ascend pods (the AscendJob operator requires it).
CONTAINERS = ("ascend", "trainer")
# Waiting reasons that will not fix themselves: worth showing first.
BAD_WAITING_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                       "CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff")
REQUEST_TIMEOUT = (10, 60)  # connect, read seconds for non-streaming calls
GATHER_MARK = "RLAUNCH-GATHER"
# base64 grows 4/3; stay well under the kubelet's default 10 MiB log rotation.
GATHER_ARCHIVE_LIMIT = 6 * 1024 * 1024


def explain(err: Exception, what: str, host: str = "") -> str:
    """One line for the user: what failed and why."""
    if isinstance(err, ApiException):
        message = err.reason or ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = json.loads(err.body).get("message") or message
        status = err.status
        why = {
            401: "unauthorized: the cluster rejected the credentials of the kubeconfig context",
            403: f"forbidden: {message}",
            404: f"not found: {message}",
            409: f"already exists: {message} (cancel the old job or pick another --name)",
            422: f"rejected as invalid: {message}",
        }.get(status, f"API error {status} {err.reason}: {message}")
        return f"{what}: {why}"
    return f"{what}: cannot reach the Kubernetes API at {host or '?'}: {_connection_failure(err)}"


def _connection_failure(err: Exception) -> str:
    """The innermost reason of a failed connection ("Connection refused", a TLS error), not
    urllib3's retry wrapper that repeats the URL."""
    inner: BaseException = err
    while isinstance(getattr(inner, "reason", None), BaseException):
        inner = inner.reason  # MaxRetryError -> NewConnectionError / SSLError / timeout
    cause: BaseException | None = inner
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return str(cause.strerror)
        cause = cause.__cause__ or cause.__context__
    return f"{type(inner).__name__}: {inner}"


@contextlib.contextmanager
def api_call(what: str, host: str = "") -> Iterator[None]:
    """Turn client, HTTP and connection errors into one-line `BackendError`s."""
    import urllib3

    try:
        yield
    except ApiException as err:
        raise BackendError(explain(err, what, host)) from err
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise BackendError(explain(err, what, host)) from err


def _created(pod: Any) -> float:
    stamp = pod.metadata.creation_timestamp
    return stamp.timestamp() if stamp is not None else 0.0


def pending_reason(pod: Any) -> str | None:
    """Why a pod is not running yet (Unschedulable, ImagePullBackOff...), or None."""
    status = pod.status
    for cs in (status.container_statuses or []) + (status.init_container_statuses or []):
        waiting = cs.state.waiting if cs.state else None
        if waiting and waiting.reason and waiting.reason != "ContainerCreating":
            return f"{waiting.reason}: {waiting.message or ''}".rstrip(": ")
    for cond in status.conditions or []:
        if cond.type == "PodScheduled" and cond.status == "False":
            return f"{cond.reason or 'Unschedulable'}: {cond.message or ''}".rstrip(": ")
    return None


def _terminated_exit_code(pod: Any) -> int | None:
    for cs in pod.status.container_statuses or []:
        if cs.name in CONTAINERS and cs.state and cs.state.terminated:
            return int(cs.state.terminated.exit_code)
    return None


def _true_conditions(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in status.get("conditions") or [] if str(c.get("status")) == "True"]


def _condition_detail(cond: dict[str, Any]) -> str:
    return f"{cond.get('reason') or cond.get('type')}: {cond.get('message') or ''}".rstrip(": ")


# Volcano Job phases (volcano-sh/apis pkg/apis/batch/v1alpha1/job.go JobPhase) that decide the
# state; the others (Pending, Running, Completing...) are read from the pods.
VCJOB_FINAL = {"Completed": COMPLETED, "Failed": FAILED, "Aborted": FAILED,
               "Terminated": FAILED, "Restarting": REQUEUED}


def waiting_reason(obj: dict[str, Any]) -> str:
    """Why a workload has no pods yet, as its controller says: the newest condition that
    carries a reason (the ascend-operator's PodGroupPending "the cluster resource is not
    enough", PodGroupNotInitialized, SyncServiceFailed...: mind-cluster ascend-operator
    pkg/controllers/v1/job.go, docs/en/scheduling/api/ascend_job.md), or Volcano's state."""
    status = obj.get("status") or {}
    state = status.get("state") or {}
    if state.get("reason") or state.get("message"):
        return _condition_detail({"type": state.get("phase"), **state})
    conditions = [c for c in status.get("conditions") or [] if c.get("reason")]
    if conditions:
        newest = max(enumerate(conditions), key=lambda ic: (
            str(ic[1].get("lastTransitionTime") or ic[1].get("lastUpdateTime") or ""), ic[0]))[1]
        return _condition_detail(newest)
    return "no pods yet"


def workload_state(names: JobNames, obj: dict[str, Any]) -> tuple[str | None, int, str]:
    """(state or None, restarts, detail) from the workload object's own status.

    None: the object says nothing final, the pods tell. Restarts are what the controller
    counts: Volcano `status.retryCount`, JobSet `status.restarts`; an AscendJob (kubeflow common
    JobStatus) keeps no count, only a `Restarting` condition.
    """
    status = obj.get("status") or {}
    key = names.workload.key
    if key == "vcjob":
        phase = str((status.get("state") or {}).get("phase") or "")
        restarts = int(status.get("retryCount") or 0)
        state = VCJOB_FINAL.get(phase)
        message = (status.get("state") or {}).get("message") or ""
        return state, restarts, f"Volcano Job {phase}: {message}".rstrip(": ") if state else ""
    true = {c.get("type"): c for c in _true_conditions(status)}
    if key == "jobset":
        # kubernetes-sigs/jobset api/jobset/v1alpha2/jobset_types.go JobSetConditionType
        restarts = int(status.get("restarts") or 0)
        if "Completed" in true:
            return COMPLETED, restarts, _condition_detail(true["Completed"])
        if "Failed" in true:
            return FAILED, restarts, _condition_detail(true["Failed"])
        return None, restarts, ""
    # AscendJob: kubeflow common JobConditionType (Created, Running, Restarting, Succeeded, Failed).
    if "Succeeded" in true:
        return COMPLETED, 0, _condition_detail(true["Succeeded"])
    if "Failed" in true:
        return FAILED, 0, _condition_detail(true["Failed"])
    if "Restarting" in true:
        return REQUEUED, 1, _condition_detail(true["Restarting"])
    return None, 0, ""


@dataclass
class Cluster:
    """An API client bound to one namespace."""

    api: Any  # kubernetes.client.ApiClient
    namespace: str

    @classmethod
    def connect(cls, context: str | None = None, namespace: str | None = None) -> Cluster:
        """kubeconfig ($KUBECONFIG or ~/.kube/config, optional context), else in-cluster."""
        import os

        # Read KUBECONFIG now: the client captures it once, at its own import.
        config_file = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        try:
            api = config.new_client_from_config(config_file=config_file, context=context)
            if namespace is None:
                contexts, active = config.list_kube_config_contexts(config_file=config_file)
                chosen = next((c for c in contexts if c["name"] == context), active) if context \
                    else active
                namespace = ((chosen or {}).get("context") or {}).get("namespace")
        except config.ConfigException as err:
            if context:
                raise BackendError(f"kubeconfig context {context!r}: {err}") from err
            try:
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                raise BackendError(
                    "no Kubernetes credentials: set KUBECONFIG (or ~/.kube/config), "
                    f"--opt context=NAME, or run inside a pod ({err})") from err
            api = client.ApiClient(configuration)
            if namespace is None:
                ns_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                with contextlib.suppress(OSError):
                    namespace = ns_file.read_text().strip()
        return cls(api=api, namespace=namespace or "default")

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    @property
    def core(self) -> Any:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> Any:
        return client.CustomObjectsApi(self.api)

    def _call(self, what: str) -> contextlib.AbstractContextManager[None]:
        return api_call(what, self.host)

    # ---- create / delete -----------------------------------------------------------------

    @staticmethod
    def _workload(api_version: str, kind: str) -> Any:
        for workload in WORKLOADS.values():
            if (workload.api_version, workload.kind) == (api_version, kind):
                return workload
        raise BackendError(f"cannot handle object of kind {kind!r} ({api_version})")

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create one object of the kinds the manifests hold; returns what the server stored."""
        kind, name, ns = obj["kind"], obj["metadata"]["name"], self.namespace
        with self._call(f"creating {kind} {name} in namespace {ns}"):
            # The raw response: the client's own decoding of custom objects can return None.
            if kind == "ConfigMap":
                resp = self.core.create_namespaced_config_map(
                    ns, obj, _request_timeout=REQUEST_TIMEOUT, _preload_content=False)
            else:
                w = self._workload(obj["apiVersion"], kind)
                resp = self.custom.create_namespaced_custom_object(
                    w.group, w.version, ns, w.plural, obj, _request_timeout=REQUEST_TIMEOUT,
                    _preload_content=False)
            try:
                made = json.loads(resp.data)
            except ValueError:
                made = None
            return made if isinstance(made, dict) else {}

    def own(self, config_map: str, owner: dict[str, Any]) -> None:
        """Make the workload `owner` (as the server returned it) own a ConfigMap, so that the
        garbage collector removes it with the workload (TTL or any deletion)."""
        meta = owner.get("metadata") or {}
        uid = meta.get("uid")
        if not uid:
            raise BackendError(f"{owner.get('kind')} {meta.get('name')}: the server returned "
                               "no uid, so nothing can be owned by it")
        ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
               "uid": uid}
        with self._call(f"setting the owner of ConfigMap {config_map} to {owner['kind']} "
                        f"{meta['name']}"):
            self.core.patch_namespaced_config_map(
                config_map, self.namespace, {"metadata": {"ownerReferences": [ref]}},
                _request_timeout=REQUEST_TIMEOUT)

    def delete(self, api_version: str, kind: str, name: str) -> bool:
        """Delete one object (workloads: pods first, foreground); False if it was not there."""
        ns = self.namespace
        try:
            with self._call(f"deleting {kind} {name} in namespace {ns}"):
                if kind == "ConfigMap":
                    self.core.delete_namespaced_config_map(name, ns,
                                                           _request_timeout=REQUEST_TIMEOUT)
                elif kind == "Pod":
                    self.core.delete_namespaced_pod(name, ns, _request_timeout=REQUEST_TIMEOUT)
                else:
                    w = self._workload(api_version, kind)
                    self.custom.delete_namespaced_custom_object(
                        w.group, w.version, ns, w.plural, name, propagation_policy="Foreground",
                        _request_timeout=REQUEST_TIMEOUT)
        except BackendError as err:
            cause = err.__cause__
            if isinstance(cause, ApiException) and cause.status == 404:
                return False
            raise
        return True

    def create_all(self, objects: list[dict[str, Any]]) -> None:
        """Create in order, then hand the ConfigMaps to the workload (owner references: they
        go with it, by TTL or any deletion; they are created first because the MindX DL
        operator caches a missing rings-config). If a step fails, delete what this call
        created and re-raise."""
        created: list[dict[str, Any]] = []
        try:
            owner: dict[str, Any] | None = None
            for obj in objects:
                made = self.create(obj)
                created.append(obj)
                if obj["kind"] != "ConfigMap":
                    owner = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": {
                        "name": obj["metadata"]["name"],
                        "uid": (made.get("metadata") or {}).get("uid")}}
            if owner is not None:
                for obj in created:
                    if obj["kind"] == "ConfigMap":
                        self.own(obj["metadata"]["name"], owner)
        except BackendError as err:
            undone, left = [], []
            for done in reversed(created):
                label = f"{done['kind']} {done['metadata']['name']}"
                try:
                    self.delete(done["apiVersion"], done["kind"], done["metadata"]["name"])
                    undone.append(label)
                except BackendError:
                    left.append(label)
            note = f"; rolled back {', '.join(undone)}" if undone else ""
            note += f"; could NOT delete {', '.join(left)}" if left else ""
            raise BackendError(f"{err}{note}") from err

    def claim_access_modes(self, claim: str) -> list[str] | None:
        """The access modes of a PersistentVolumeClaim, or None when it cannot be read (not
        there yet, or no permission to read claims): then nothing can be said."""
        try:
            with self._call(f"reading PersistentVolumeClaim {claim}"):
                pvc = self.core.read_namespaced_persistent_volume_claim(
                    claim, self.namespace, _request_timeout=REQUEST_TIMEOUT)
        except BackendError as err:
            if isinstance(err.__cause__, ApiException) and err.__cause__.status in (403, 404):
                return None
            raise
        modes = (pvc.status.access_modes if pvc.status else None) or \
            (pvc.spec.access_modes if pvc.spec else None)
        return [str(m) for m in modes or []]

    def delete_job(self, names: JobNames) -> list[str]:
        """Delete the workload (its pods first) and our ConfigMaps; returns what was there."""
        deleted = []
        for api_version, kind, name in reversed(names.owned_objects(operator_rank_table=True)):
            if self.delete(api_version, kind, name):
                deleted.append(f"{kind} {name}")
        return deleted

    # ---- status --------------------------------------------------------------------------

    def read_workload(self, names: JobNames) -> dict[str, Any] | None:
        w = names.workload
        try:
            with self._call(f"reading {w.kind} {names.job} in namespace {self.namespace}"):
                return dict(self.custom.get_namespaced_custom_object(
                    w.group, w.version, self.namespace, w.plural, names.job,
                    _request_timeout=REQUEST_TIMEOUT))
        except BackendError as err:
            if isinstance(err.__cause__, ApiException) and err.__cause__.status == 404:
                return None
            raise

    def list_workloads(self, workload: Workload) -> list[dict[str, Any]]:
        """Every object of one workload kind in the namespace, in one list call."""
        with self._call(f"listing {workload.kind} objects in namespace {self.namespace}"):
            found = self.custom.list_namespaced_custom_object(
                workload.group, workload.version, self.namespace, workload.plural,
                _request_timeout=REQUEST_TIMEOUT)
        items = found.get("items") if isinstance(found, dict) else None
        return [dict(i) for i in items or [] if isinstance(i, dict)]

    def pods(self, names: JobNames) -> list[Any]:
        """Pods of the job, oldest first."""
        with self._call(f"listing pods of job {names.job}"):
            found = self.core.list_namespaced_pod(
                self.namespace, label_selector=f"{JOB_LABEL}={names.job}",
                _request_timeout=REQUEST_TIMEOUT).items
        # The selector is the server's job; checking again keeps a sloppy server honest.
        found = [p for p in found if (p.metadata.labels or {}).get(JOB_LABEL) == names.job]
        return sorted(found, key=_created)

    def current_pods(self, names: JobNames) -> dict[int, Any]:
        """The newest pod of each node index (a restart makes new pods)."""
        latest: dict[int, Any] = {}
        for pod in self.pods(names):
            index = names.node_index(pod.metadata.name, pod.metadata.annotations or {})
            if index is not None:
                latest[index] = pod
        return dict(sorted(latest.items()))

    def job_status(self, names: JobNames) -> JobStatus:
        """Scheduler-neutral state from the workload's status and its pods' phases."""
        obj = self.read_workload(names)
        kind = names.workload.kind
        if obj is None:
            return JobStatus(UNKNOWN, detail=f"{kind} {names.job} not found in namespace "
                             f"{self.namespace} (cancelled, or removed after its TTL)")
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            return JobStatus(CANCELLED, detail="being deleted")
        state, restarts, detail = workload_state(names, obj)
        if state in (COMPLETED, FAILED):
            codes = [c for c in (_terminated_exit_code(p) for p in self.pods(names))
                     if c not in (None, 0)]
            exit_code = 0 if state == COMPLETED else (codes[-1] if codes else None)
            return JobStatus(state, restarts, detail, exit_code=exit_code)
        if state == REQUEUED:
            return JobStatus(REQUEUED, restarts, detail)
        pods = self.current_pods(names)
        if not pods:
            return JobStatus(REQUEUED if restarts else PENDING, restarts, waiting_reason(obj))
        waiting = []
        for index, pod in pods.items():
            if pod.status.phase == "Pending":
                reason = pending_reason(pod) or "ContainerCreating"
                waiting.append(f"node {index} ({pod.metadata.name}) {reason}")
        running = sum(1 for p in pods.values() if p.status.phase == "Running")
        if waiting:
            bad = [w for w in waiting if any(r in w for r in BAD_WAITING_REASONS)]
            return JobStatus(REQUEUED if restarts else PENDING, restarts,
                             f"{len(waiting)}/{len(pods)} pods pending: "
                             + "; ".join(bad or waiting))
        if running:
            return JobStatus(RUNNING, restarts, f"{running}/{len(pods)} pods running")
        return JobStatus(RUNNING, restarts, "pods finishing")

    # ---- logs ----------------------------------------------------------------------------

    @staticmethod
    def _container(pod: Any) -> str:
        names = [c.name for c in (pod.spec.containers if pod.spec else [])]
        return next((n for n in names if n in CONTAINERS), names[0] if names else CONTAINERS[-1])

    def pod_log(self, pod_name: str, container: str) -> str:
        with self._call(f"reading the log of pod {pod_name}"):
            return str(self.core.read_namespaced_pod_log(
                pod_name, self.namespace, container=container, _request_timeout=REQUEST_TIMEOUT))

    def _stream_pod(self, pod_name: str, container: str) -> Iterator[str]:
        """Follow one pod's log, line by line, until its container ends."""
        with self._call(f"following the log of pod {pod_name}"):
            resp = self.core.read_namespaced_pod_log(
                pod_name, self.namespace, container=container, follow=True,
                _preload_content=False)
            buffer = b""
            try:
                for chunk in resp.stream(4096, decode_content=True):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        yield line.decode("utf-8", "replace")
                if buffer:
                    yield buffer.decode("utf-8", "replace")
            finally:
                resp.release_conn()

    def job_logs(self, names: JobNames, nodes: int, index: int | None = None,
                 follow: bool = False, poll_seconds: float = 2.0) -> Iterator[str]:
        """Log lines of the node pods (all, or one index); `follow` streams until the end."""
        if not follow:
            pods = self.current_pods(names)
            if index is not None:
                pods = {i: p for i, p in pods.items() if i == index}
            for pod in pods.values():
                if pod.status.phase == "Pending":
                    continue
                yield from self.pod_log(pod.metadata.name, self._container(pod)).splitlines()
            return
        lines: queue.Queue[tuple[str, str | BaseException | None]] = queue.Queue()
        wanted = [index] if index is not None else list(range(nodes))
        for i in wanted:
            threading.Thread(target=self._follow_index, args=(names, i, lines, poll_seconds),
                             daemon=True).start()
        open_streams = len(wanted)
        while open_streams:
            kind, item = lines.get()
            if kind == "line":
                yield str(item)
            elif kind == "error":
                assert isinstance(item, BaseException)
                raise item
            else:
                open_streams -= 1

    def _follow_index(self, names: JobNames, index: int, out: queue.Queue[Any],
                      poll_seconds: float) -> None:
        """Stream each pod of one index in turn until the job ends. Pods are told apart by UID:
        Volcano and the ascend-operator give a restarted pod the same name. A stream that ends
        while its pod still runs was dropped (API server or kubelet): it is opened again and
        the lines already passed on are skipped."""
        sent: dict[str, int] = {}
        done: set[str] = set()
        try:
            while True:
                pod = self.current_pods(names).get(index)
                uid = str(pod.metadata.uid or pod.metadata.name) if pod is not None else ""
                if pod is not None and uid not in done and pod.status.phase != "Pending":
                    count = 0
                    for line in self._stream_pod(pod.metadata.name, self._container(pod)):
                        count += 1
                        if count > sent.get(uid, 0):
                            out.put(("line", line))
                    sent[uid] = max(sent.get(uid, 0), count)
                    now = self.current_pods(names).get(index)
                    if now is None or str(now.metadata.uid or now.metadata.name) != uid \
                            or now.status.phase != "Running":
                        done.add(uid)
                        continue
                status = self.job_status(names)
                # A workload that is gone was cancelled (or removed after its TTL): nothing
                # more will run, so the follow ends as it does for a finished job.
                if status.finished or status.state == UNKNOWN:
                    break
                time.sleep(poll_seconds)
        except Exception as err:  # noqa: BLE001  (any failure must reach the consumer thread)
            out.put(("error", err))
            return
        out.put(("done", None))

    def node_of_rank(self, names: JobNames, rank: int) -> int | None:
        """The node index of the pod that runs `rank` by the operator's rank table: its entry
        names the pod by container_ip (pod IP) or server_id (pod UID, or the node IP when
        every pod has its own node). The operator assigns ranks in its own pod order
        (ascend-operator pkg/controllers/v1/pod.go updateRankIndex), not by pod index. None
        when there is no table, or it does not say (it is read as untrusted data)."""
        try:
            with self._call(f"reading ConfigMap {names.rings_config}"):
                cm = self.core.read_namespaced_config_map(
                    names.rings_config, self.namespace, _request_timeout=REQUEST_TIMEOUT)
            table = json.loads((cm.data or {}).get("hccl.json") or "{}")
        except (BackendError, ValueError):
            return None
        servers = table.get("server_list") if isinstance(table, dict) else None
        for server in servers if isinstance(servers, list) else []:
            if not isinstance(server, dict) or not isinstance(server.get("device"), list):
                continue
            if str(rank) not in {str(d.get("rank_id")) for d in server["device"]
                                 if isinstance(d, dict)}:
                continue
            wanted = {str(server.get("container_ip") or ""), str(server.get("server_id") or "")}
            wanted.discard("")
            for index, pod in self.current_pods(names).items():
                ids = {str(pod.status.pod_ip or ""), str(pod.metadata.uid or ""),
                       str(pod.status.host_ip or "")}
                if wanted & ids:
                    return index
        return None

    def save_pod_logs(self, names: JobNames, dest: Path) -> list[Path]:
        """Write the newest pod log of each node index to dest/node<index>.log, and the
        AscendJob Scheduler pod's (MindSpore's scheduler process) to dest/scheduler.log."""
        written = []
        scheduler = names.scheduler_pod
        if scheduler:
            for pod in self.pods(names):
                if pod.metadata.name == scheduler and pod.status.phase != "Pending":
                    path = dest / "scheduler.log"
                    path.write_text(self.pod_log(scheduler, self._container(pod)),
                                    encoding="utf-8")
                    written.append(path)
        for index, pod in self.current_pods(names).items():
            if pod.status.phase == "Pending":
                continue
            path = dest / f"node{index}.log"
            path.write_text(self.pod_log(pod.metadata.name, self._container(pod)),
                            encoding="utf-8")
            written.append(path)
        return written

    # ---- gather: a short-lived pod reads the output PVC ----------------------------------

    @staticmethod
    def gather_pod_manifest(pod_name: str, job: str, pvc: str, image: str,
                            image_pull_secrets: list[str], node_selector: dict[str, str],
                            tolerations: list[dict[str, str]]) -> dict[str, Any]:
        """A pod that prints the job's output directory as base64 tar.gz on its log.

        Rendered from templates/k8s/gather-pod.yaml.j2 and gather.sh.j2: checkpoints travel
        only while the archive stays under GATHER_ARCHIVE_LIMIT, otherwise they are listed
        (RLAUNCH-GATHER-REMOTE lines) and stay on the claim.
        """
        import yaml

        from launcher.templating import render_template

        script = render_template("k8s/gather.sh.j2", archive_limit=GATHER_ARCHIVE_LIMIT,
                                 mark=GATHER_MARK)
        return dict(yaml.safe_load(render_template(
            "k8s/gather-pod.yaml.j2", pod_name=pod_name, job=job, pvc=pvc, image=image,
            labels={GATHER_LABEL: job}, script=script,
            image_pull_secrets=[{"name": s} for s in image_pull_secrets],
            node_selector=node_selector, tolerations=tolerations)))

    def copy_from_pvc(self, names: JobNames, pvc: str, dest: Path, image: str,
                      image_pull_secrets: list[str], node_selector: dict[str, str],
                      tolerations: list[dict[str, str]], timeout: float = 600,
                      poll_seconds: float = 2.0) -> list[Path]:
        """Run the gather pod, unpack what it printed into `dest`, always delete the pod."""
        pod_name = f"{names.gather_prefix}{secrets.token_hex(3)}"
        body = self.gather_pod_manifest(pod_name, names.job, pvc, image, image_pull_secrets,
                                        node_selector, tolerations)
        with self._call(f"creating gather pod {pod_name}"):
            self.core.create_namespaced_pod(self.namespace, body, _request_timeout=REQUEST_TIMEOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                with self._call(f"reading gather pod {pod_name}"):
                    pod = self.core.read_namespaced_pod(pod_name, self.namespace,
                                                        _request_timeout=REQUEST_TIMEOUT)
                phase = pod.status.phase if pod.status else None
                if phase == "Succeeded":
                    break
                reason = pending_reason(pod) if pod.status else None
                if phase == "Failed" or (reason and any(r in reason for r in BAD_WAITING_REASONS)):
                    raise BackendError(f"gather pod {pod_name} failed: {reason or phase}; "
                                       f"its log: {self.pod_log(pod_name, 'gather')[-300:]!r}")
                if time.monotonic() > deadline:
                    raise BackendError(f"gather pod {pod_name} did not finish in {timeout:.0f}s "
                                       f"({reason or phase})")
                time.sleep(poll_seconds)
            return unpack_gather_log(self.pod_log(pod_name, "gather"), dest)
        finally:
            with contextlib.suppress(BackendError):
                self.delete("v1", "Pod", pod_name)


def unpack_gather_log(log: str, dest: Path) -> list[Path]:
    """Decode the gather pod's base64 tar.gz (checking its size) and extract it safely."""
    begin, end = f"{GATHER_MARK}-BEGIN", f"{GATHER_MARK}-END"
    lines = log.splitlines()
    try:
        start = lines.index(begin)
        stop = next(i for i, line in enumerate(lines) if line.startswith(end))
        expected = int(lines[stop].split()[1])
    except (ValueError, StopIteration, IndexError) as err:
        raise BackendError("gather pod output is incomplete (log rotated or truncated?); "
                           "use `kubectl cp` for large outputs") from err
    remote = [line.split(" ", 1)[1] for line in lines[:start]
              if line.startswith(f"{GATHER_MARK}-REMOTE ")]
    payload = base64.b64decode("".join(lines[start + 1:stop]))
    if len(payload) != expected:
        raise BackendError(f"gather pod output is {len(payload)} bytes, expected {expected} "
                           "(log truncated?)")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
        names = [m.name for m in tar.getmembers() if m.isfile()]
    paths = [dest / name for name in names]
    if remote:
        note = dest / "remote-checkpoints.txt"
        note.write_text("Too large for the log transfer; still on the output claim "
                        "(copy with `kubectl cp` from a pod that mounts it):\n"
                        + "\n".join(remote) + "\n")
        paths.append(note)
    return paths
