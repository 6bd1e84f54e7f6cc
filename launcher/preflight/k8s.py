"""Kubernetes: the API and credentials, namespace, claims, the workload's CRDs and controllers,
devices the nodes advertise, the Volcano queue or Kueue LocalQueue.

Facts are read as plain JSON (`_preload_content=False`: what the server sends is untrusted and
may be partial) through the backend's own client setup (`Cluster.connect`). A 403 on a
cluster-wide read (nodes, deployments in every namespace) skips that check and says so: many
users may submit jobs without being allowed to look at the whole cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from launcher.preflight import Check, failed, passed, skipped

if TYPE_CHECKING:
    from launcher.spec import JobSpec

# The controllers each workload needs, by Deployment name as their upstream manifests install
# them: mind-cluster ascend-operator (`ascend-operator-manager`, namespace mindx-dl), Volcano
# (volcano-sh/volcano installer: `volcano-controllers`, `volcano-scheduler`, volcano-system),
# JobSet (kubernetes-sigs/jobset config: `jobset-controller-manager`, jobset-system). An
# AscendJob's pods name `schedulerName: volcano`, so it needs Volcano's scheduler too.
CONTROLLERS: dict[str, tuple[str, ...]] = {
    "acjob": ("ascend-operator-manager", "volcano-scheduler"),
    "vcjob": ("volcano-controllers", "volcano-scheduler"),
    "jobset": ("jobset-controller-manager",),
}
VOLCANO_QUEUE_CRD = ("scheduling.volcano.sh", "v1beta1", "queues")
VOLCANO_DEFAULT_QUEUE = "default"
# Kueue (kubernetes-sigs/kueue config/components/crd: namespaced LocalQueues of group
# kueue.x-k8s.io; its manager Deployment `kueue-controller-manager`). Without Kueue the JobSet's
# queue label is ignored and the job runs outside any quota; with Kueue and no such LocalQueue
# the JobSet stays suspended. The version is read from the CRD (v1beta1, later v1beta2).
KUEUE_GROUP, KUEUE_LOCAL_QUEUES = "kueue.x-k8s.io", "localqueues"
KUEUE_CONTROLLER = "kueue-controller-manager"
# Access modes several nodes can mount at once (the data claim is mounted read-only).
SHARED_MODES = {"output": ("ReadWriteMany",), "data": ("ReadWriteMany", "ReadOnlyMany")}
REQUEST_TIMEOUT = (5, 20)


@dataclass
class K8sFacts:
    """What the API server said. `api_error`: it could not be asked at all."""

    host: str = ""
    namespace: str = ""
    api_error: str | None = None
    namespace_status: int | None = None  # HTTP status of reading the namespace (200, 404...)
    claims: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None: not found
    crds: dict[str, bool] = field(default_factory=dict)
    # Deployment name -> ready replicas (0 when present but not ready); None: not readable.
    controllers: dict[str, int] | None = None
    controllers_error: str | None = None
    # Node name -> allocatable quantity of the device resource; None: not readable.
    node_devices: dict[str, str] | None = None
    nodes_error: str | None = None
    queue_exists: bool | None = None  # the Volcano queue; None: not looked up
    local_queue_exists: bool | None = None  # the Kueue LocalQueue; None: not looked up


def resource_name(device_kind: str) -> str:
    from launcher.ascend import RESOURCE_NAME

    return {"ascend": RESOURCE_NAME, "gpu": "nvidia.com/gpu", "cpu": "cpu"}[device_kind]


def workload_key(spec: JobSpec, opts: Any) -> str:
    from launcher.backends.k8s_options import workload_of

    return str(workload_of(spec, opts))


def crd_names(workload: str, kueue: bool = False) -> list[str]:
    from launcher.backends.k8s_names import WORKLOADS

    w = WORKLOADS[workload]
    names = [f"{w.plural}.{w.group}"]
    if workload in ("acjob", "vcjob"):
        names.append(f"{VOLCANO_QUEUE_CRD[2]}.{VOLCANO_QUEUE_CRD[0]}")
    if kueue:
        names.append(f"{KUEUE_LOCAL_QUEUES}.{KUEUE_GROUP}")
    return names


def controllers_of(workload: str, opts: Any) -> tuple[str, ...]:
    return CONTROLLERS[workload] + ((KUEUE_CONTROLLER,) if opts.kueue_queue else ())


def served_version(crd: Any) -> str | None:
    """The version a CRD serves (its storage version first), from its JSON; None if none."""
    spec = crd.get("spec") if isinstance(crd, dict) else None
    versions = [v for v in (spec.get("versions") if isinstance(spec, dict) else None) or []
                if isinstance(v, dict) and v.get("served") and isinstance(v.get("name"), str)]
    versions.sort(key=lambda v: not v.get("storage"))
    return versions[0]["name"] if versions else None


def quantity(text: str) -> float:
    """A Kubernetes quantity of devices or CPUs ("8", "15500m") as a number; 0 if unreadable."""
    text = str(text).strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return 0.0


# ---- gathering (side effects) ----------------------------------------------------------------


def gather(spec: JobSpec, opts: Any) -> K8sFacts:
    from kubernetes.client import ApiextensionsV1Api, AppsV1Api, CoreV1Api, CustomObjectsApi
    from kubernetes.client.rest import ApiException

    from launcher.backends.base import BackendError
    from launcher.backends.k8s_api import Cluster, explain

    facts = K8sFacts()
    try:
        cluster = Cluster.connect(opts.context, opts.namespace)
    except BackendError as err:
        facts.api_error = str(err)
        return facts
    facts.host, facts.namespace = cluster.host, cluster.namespace
    core, ext = CoreV1Api(cluster.api), ApiextensionsV1Api(cluster.api)
    apps, custom = AppsV1Api(cluster.api), CustomObjectsApi(cluster.api)

    def read(call: Any, *args: Any) -> tuple[int, Any]:
        """(HTTP status, parsed body or None); connection errors propagate."""
        try:
            response = call(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as err:
            return int(err.status or 0), None
        try:
            return 200, json.loads(response.data)
        except ValueError:
            return 200, None

    import urllib3

    try:
        status, _ = read(core.read_namespace, cluster.namespace)
    except (urllib3.exceptions.HTTPError, OSError) as err:  # the server does not answer
        facts.api_error = explain(err, "reading the namespace", cluster.host)
        return facts
    if status == 401:
        facts.api_error = "the API server rejected the credentials of the kubeconfig context " \
                          "(401 Unauthorized)"
        return facts
    facts.namespace_status = status
    for role in ("data", "output"):
        name = getattr(opts, f"{role}_pvc")
        if name:
            code, body = read(core.read_namespaced_persistent_volume_claim, str(name),
                              cluster.namespace)
            facts.claims[role] = body if code == 200 and isinstance(body, dict) else None
    workload = workload_key(spec, opts)
    crd_bodies = {}
    for crd in crd_names(workload, bool(opts.kueue_queue)):
        code, crd_bodies[crd] = read(ext.read_custom_resource_definition, crd)
        facts.crds[crd] = code == 200
    code, body = read(apps.list_deployment_for_all_namespaces)
    if code == 200 and isinstance(body, dict):
        facts.controllers = {}
        for item in body.get("items") or []:
            name = str(((item or {}).get("metadata") or {}).get("name", ""))
            ready = ((item or {}).get("status") or {}).get("readyReplicas") or 0
            if name in controllers_of(workload, opts):
                facts.controllers[name] = max(facts.controllers.get(name, 0), int(ready))
    else:
        facts.controllers_error = f"listing Deployments was refused ({code})"
    code, body = read(core.list_node)
    if code == 200 and isinstance(body, dict):
        resource = resource_name(spec.device_kind)
        facts.node_devices = {
            str((n.get("metadata") or {}).get("name", "?")):
                str(((n.get("status") or {}).get("allocatable") or {}).get(resource, "0"))
            for n in body.get("items") or [] if isinstance(n, dict)}
    else:
        facts.nodes_error = f"listing nodes was refused ({code})"
    if workload in ("acjob", "vcjob") and facts.crds.get(crd_names(workload)[1]):
        queue = str(opts.volcano_queue or VOLCANO_DEFAULT_QUEUE)
        group, version, plural = VOLCANO_QUEUE_CRD
        code, _ = read(custom.get_cluster_custom_object, group, version, plural, queue)
        facts.queue_exists = code == 200
    kueue_crd = f"{KUEUE_LOCAL_QUEUES}.{KUEUE_GROUP}"
    served = served_version(crd_bodies.get(kueue_crd)) if facts.crds.get(kueue_crd) else None
    if opts.kueue_queue and served:
        code, _ = read(custom.get_namespaced_custom_object, KUEUE_GROUP, served,
                       cluster.namespace, KUEUE_LOCAL_QUEUES, str(opts.kueue_queue))
        facts.local_queue_exists = code == 200
    return facts


# ---- decisions (pure) ------------------------------------------------------------------------


def decide(spec: JobSpec, opts: Any, facts: K8sFacts) -> list[Check]:
    if facts.api_error:
        return [failed("k8s.api", f"{facts.api_error}; check KUBECONFIG / --opt context")]
    checks = [passed("k8s.api", f"{facts.host} answers with these credentials")]
    ns = facts.namespace
    if facts.namespace_status == 404:
        checks.append(failed("k8s.namespace", f"namespace {ns!r} does not exist: create it "
                             "(kubectl create namespace) or pick one with --opt namespace"))
    elif facts.namespace_status == 200:
        checks.append(passed("k8s.namespace", f"namespace {ns!r} exists"))
    else:
        checks.append(skipped("k8s.namespace", f"namespace {ns!r} cannot be read with these "
                              f"credentials ({facts.namespace_status})"))
    checks += _claims(spec, opts, facts)
    workload = workload_key(spec, opts)
    checks += _crds(workload, facts)
    checks.append(_controllers(workload, controllers_of(workload, opts), facts))
    checks.append(_devices(spec, facts))
    if facts.queue_exists is not None:
        queue = str(opts.volcano_queue or VOLCANO_DEFAULT_QUEUE)
        checks.append(passed("k8s.queue", f"Volcano queue {queue!r} exists")
                      if facts.queue_exists else
                      failed("k8s.queue", f"Volcano queue {queue!r} does not exist: create it or "
                             "name another with --opt volcano_queue"))
    if facts.local_queue_exists is not None:
        queue = str(opts.kueue_queue)
        checks.append(passed("k8s.queue", f"Kueue LocalQueue {queue!r} exists in namespace {ns!r}")
                      if facts.local_queue_exists else
                      failed("k8s.queue", f"Kueue LocalQueue {queue!r} does not exist in "
                             f"namespace {ns!r}: Kueue would keep the JobSet suspended; create it "
                             "or name another with --opt kueue_queue"))
    return checks


def _claims(spec: JobSpec, opts: Any, facts: K8sFacts) -> list[Check]:
    checks = []
    for role, claim in facts.claims.items():
        name = getattr(opts, f"{role}_pvc")
        check = f"k8s.{role}_claim"
        if claim is None:
            checks.append(failed(check, f"PersistentVolumeClaim {name!r} does not exist in "
                                 f"namespace {facts.namespace!r}: create it or fix "
                                 f"--opt {role}_pvc"))
            continue
        modes = list((claim.get("spec") or {}).get("accessModes") or [])
        phase = (claim.get("status") or {}).get("phase", "?")
        if spec.nodes > 1 and not any(m in SHARED_MODES[role] for m in modes):
            shown = ", ".join(modes) or "without access modes"
            wanted = " or ".join(SHARED_MODES[role])
            checks.append(failed(check, f"claim {name!r} is {shown}: {spec.nodes} nodes cannot "
                                 f"all mount it; use a {wanted} claim"))
            continue
        checks.append(passed(check, f"claim {name!r} exists ({', '.join(modes)}, {phase})"))
    return checks


def _crds(workload: str, facts: K8sFacts) -> list[Check]:
    checks = []
    for crd, present in facts.crds.items():
        if present:
            checks.append(passed("k8s.crd", f"CRD {crd} is installed"))
        elif crd.endswith(f".{KUEUE_GROUP}"):
            checks.append(failed("k8s.crd", f"CRD {crd} is not installed: --opt kueue_queue "
                                 "needs Kueue (without it the queue label is ignored and the "
                                 "JobSet runs outside any quota); install Kueue or leave the "
                                 "option out"))
        else:
            checks.append(failed("k8s.crd", f"CRD {crd} is not installed: the {workload} "
                                 "workload needs its operator (docs/kubernetes.md), or pick "
                                 "another with --opt workload"))
    return checks


def _controllers(workload: str, wanted: tuple[str, ...], facts: K8sFacts) -> Check:
    if facts.controllers is None:
        return skipped("k8s.controller", f"{facts.controllers_error}: cannot see whether "
                       f"{', '.join(wanted)} run")
    missing = [n for n in wanted if n not in facts.controllers]
    idle = [n for n in wanted if facts.controllers.get(n) == 0]
    if idle:
        return failed("k8s.controller", f"{', '.join(idle)} has no ready replica: the "
                      f"{workload} would sit unscheduled; look at its pods")
    if missing:
        # Not proof of absence: a controller may run under another name or outside the cluster
        # (the test cluster runs the JobSet manager as a process behind its webhook Service).
        return skipped("k8s.controller", f"no Deployment {', '.join(missing)} in any namespace: "
                       f"cannot tell whether a {workload} controller runs under another name; "
                       "if none does, install it")
    return passed("k8s.controller", f"{', '.join(wanted)} running")


def _devices(spec: JobSpec, facts: K8sFacts) -> Check:
    resource = resource_name(spec.device_kind)
    if facts.node_devices is None:
        return skipped("k8s.devices", f"{facts.nodes_error}: cannot count {resource}")
    per_node = spec.devices_per_node
    fits = sorted(n for n, q in facts.node_devices.items() if quantity(q) >= per_node)
    if len(fits) < spec.nodes:
        most = max((quantity(q) for q in facts.node_devices.values()), default=0)
        return failed("k8s.devices", f"{spec.nodes} node(s) with {per_node} {resource} needed: "
                      f"{len(fits)} of {len(facts.node_devices)} node(s) advertise that many "
                      f"(most: {most:g}); is the device plugin running?")
    return passed("k8s.devices", f"{len(fits)} node(s) advertise {per_node} or more {resource}")
