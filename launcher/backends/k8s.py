"""Kubernetes backend: one workload object per job, of a kind the cluster's controllers run.

- Ascend (MindX DL): a Volcano Job (default), labelled so that the ascend-operator writes the
  job's rank table, or an AscendJob run on the operator's MindSpore variables; or a static rank
  table shipped by rlaunch, pods pinned to its servers. docs/kubernetes.md says why the Volcano
  Job is the default (its group restart does not depend on MindX DL's fault handling).
- NVIDIA GPUs (and CPU): a JobSet (default) or a Volcano Job; both restart the whole group when
  one pod fails or is evicted (docs/kubernetes.md: which restarts count against
  --max-restarts).

`render` is pure: templates in `templates/k8s/` (through the one Jinja environment of
`launcher.templating`) become one multi-document YAML stream, which is what `--dry-run` prints
and exactly what `submit` creates. Object names come from `k8s_names`. Cluster operations live in
`k8s_api`, which imports the `kubernetes` client only when they run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from launcher.ascend import CHIPS, IMAGE_CHIP, RESOURCE_NAME
from launcher.backends.base import (
    CANCELLED,
    RUNNING,
    UNKNOWN,
    Backend,
    BackendError,
    JobStatus,
    RenderedJob,
    signal_window_problems,
)
from launcher.backends.k8s_names import (
    JOB_LABEL,
    NODE_TASK,
    JobNames,
    names_for,
)
from launcher.backends.k8s_options import (
    K8sOptions,
    OptionError,
    load_rank_table,
    option_problems,
    toleration_manifest,
    workload_of,
)
from launcher.spec import SpecError, time_limit_seconds
from resnest.contract import DEVICE_KIND_ENV, REQUEUE_EXIT_CODE

if TYPE_CHECKING:
    from launcher.spec import JobSpec
    from launcher.store import JobRecord

# Extended resources as data (TorchX habit): device kind -> device plugin resource name.
DEVICE_RESOURCES: dict[str, str] = {"ascend": RESOURCE_NAME, "gpu": "nvidia.com/gpu"}
# What `rlaunch build --target <kind>` names its images. Only a dry run shows them: they exist
# on the machine that built them, in no registry a node pulls from (Kubernetes would look for
# docker.io/library/rlaunch-...), so submit wants --image with the pushed reference.
DEFAULT_IMAGES: dict[str, str] = {
    "ascend": "rlaunch-ascend:latest",
    "gpu": "rlaunch-gpu:latest",
    "cpu": "rlaunch-cpu:latest",
}
# MindX DL: the operator writes the rank table of a job labelled `ring-controller.atlas`
# (mind-cluster component/ascend-operator/pkg/ranktable/plugins.go ShouldGenerateRankTable)
# into its ConfigMap rings-config-<job>, which pods mount here under this volume name
# (Ascend/mindcluster-deploy samples/train/basic-training/ranktable/yaml/910b/a800_mindspore_vcjob.yaml).
OPERATOR_RANK_TABLE_DIR = "/user/serverid/devindex/config"
OPERATOR_RANK_TABLE_VOLUME = "ascend-910-config"
ASCEND_CONTAINER = "ascend"  # the AscendJob container name the operator requires
ASCEND_DRIVER_PATHS: tuple[tuple[str, str, str], ...] = (
    ("ascend-driver", "/usr/local/Ascend/driver", "Directory"),
    ("ascend-add-ons", "/usr/local/Ascend/add-ons", "DirectoryOrCreate"),
    ("npu-smi", "/usr/local/sbin/npu-smi", "File"),
    ("ascend-install-info", "/etc/ascend_install.info", "File"),
)
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
ENTRYPOINT_DIR = "/opt/rlaunch"
# Every pod has its own IP, so one fixed port serves all jobs.
DEFAULT_SCHEDULER_PORT = 8118
# Volcano's own queue, what its webhook puts into a Volcano Job without one
# (volcano pkg/webhooks/admission/jobs/mutate/mutate_job.go). The ascend-operator instead GETs
# the AscendJob's queue by name before it creates anything, and an empty name fails that
# (ascend-operator pkg/controllers/v1/ascendjob_validate.go validateBasicInfo): always render one.
DEFAULT_VOLCANO_QUEUE = "default"
# The user (and group) the images of docker/ run as (`USER 1000:1000`). The pods run as them and
# own their volumes through fsGroup: kubelet creates a missing subPath directory as root
# (pkg/kubelet/kubelet_pods.go makeMounts), and a block-backed claim's root is root:root 0755.
IMAGE_UID = 1000
# The AscendJob's Scheduler pod runs only MindSpore's scheduler process: no cards, any node, a
# small share of CPU and memory (MindX DL's sample Scheduler asks for nothing at all:
# mindcluster-deploy samples/train/basic-training/without-ranktable/mindspore/
# mindspore_multinodes_acjob_910b.yaml). Gang admission counts it with the Workers.
SCHEDULER_RESOURCES = {"cpu": "1", "memory": "4Gi"}
# MindX DL fault handling (mind-cluster docs/en/scheduling/usage/resumable_training/
# 06_configuring_the_job_yaml_file.md): `fault-scheduling: grace` deletes a faulty job's pods
# gracefully and reschedules them; `fault-retry-times: N` makes the operator treat a failed pod
# as a restart while MindX's Volcano plugin has retries left (ascend-operator
# pkg/controllers/v1/unconditaional_retry.go isUnconditionalRetryJob, job.go reconcileWithFailed).
FAULT_SCHEDULING_LABEL = "fault-scheduling"
FAULT_RETRY_LABEL = "fault-retry-times"
# HCCL's wait for its peers' links at rank-table init: 120 s by default, 120-7200 allowed (CANN
# environment variable reference, HCCL_CONNECT_TIMEOUT). Rank-table pods start when every pod has
# its cards, then pull images of different sizes: give them MindSpore's own cluster-forming time.
HCCL_CONNECT_TIMEOUT_SECONDS = 1800
# Kueue admits a JobSet carrying this label through the named LocalQueue (kueue
# pkg/controller/constants: QueueLabel).
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Exit codes the controllers must tell apart (resnest/contract.py, resnest/train.py main):
# a usage error is never retried.
USAGE_ERROR_EXIT_CODE = 2
# Where --data-pvc / --output-pvc are mounted when no --data-dir / --output-dir is given.
DEFAULT_DATA_DIR = "/data"
DEFAULT_OUTPUT_DIR = "/output"
# Where the images of docker/ install the resnest package (/opt/venv/resnest -> site-packages).
IMAGE_CODE_DIR = "/opt/venv"
# MindSpore's dynamic cluster waits MS_TOPO_TIMEOUT for its peers (30 min by default, MindSpore
# tutorials parallel/dynamic_cluster.md); the entrypoint waits for node 0 as long.
TOPO_TIMEOUT_SECONDS = 1800
MANIFEST_FILE = "manifests.yaml"
RANK_PREFIX_RE = re.compile(r"^\[rank \d+\]")
ROLE_LABEL = "rlaunch.dev/role"
# Service and pod host names are DNS-1035 labels: they must start with a letter.
SERVICE_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass
class Volume:
    """One pod volume (`kind` is its pod-spec key) and where the container mounts it."""

    name: str
    kind: str
    source: dict[str, Any]
    mount_path: str
    read_only: bool = False
    sub_path: str | None = None


def job_names(spec: JobSpec, opts: K8sOptions) -> JobNames:
    """Names of the objects of `spec`, after its job id (submit sets it before rendering)."""
    return names_for(spec.job_id or spec.name, workload_of(spec, opts))


def _volumes(spec: JobSpec, opts: K8sOptions, names: JobNames, operator_table: bool) -> list[Volume]:
    volumes = [Volume("rlaunch", "configMap", {"name": names.config_map}, ENTRYPOINT_DIR,
                      read_only=True)]
    if operator_table:
        volumes.append(Volume(OPERATOR_RANK_TABLE_VOLUME, "configMap", {"name": names.rings_config},
                              OPERATOR_RANK_TABLE_DIR, read_only=True))
    if spec.data_dir and opts.data_pvc:
        volumes.append(Volume("data", "persistentVolumeClaim",
                              {"claimName": opts.data_pvc, "readOnly": True}, spec.data_dir,
                              read_only=True))
    if spec.output_dir:
        if opts.output_pvc:
            # One directory per job on a shared claim; `rlaunch gather` reads it back from there.
            volumes.append(Volume("output", "persistentVolumeClaim", {"claimName": opts.output_pvc},
                                  spec.output_dir, sub_path=names.job))
        else:
            volumes.append(Volume("output", "emptyDir", {}, spec.output_dir))
    volumes.append(Volume("dshm", "emptyDir", {"medium": "Memory", "sizeLimit": opts.shm_size},
                          "/dev/shm"))
    if spec.device_kind == "ascend" and opts.ascend_driver_mounts:
        volumes += [Volume(name, "hostPath", {"path": path, "type": kind}, path, read_only=True)
                    for name, path, kind in ASCEND_DRIVER_PATHS]
    return volumes


def _affinity(spec: JobSpec, labels: dict[str, str], pinned_hosts: list[str]) -> dict[str, Any]:
    """One node pod per server; with a static rank table, only on the servers it lists."""
    affinity: dict[str, Any] = {}
    if spec.nodes > 1:
        affinity["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": labels}, "topologyKey": "kubernetes.io/hostname"}]}
    if pinned_hosts:
        affinity["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": pinned_hosts}]}]}}
    return affinity


def _table_hosts(rank_table: str | None) -> list[str]:
    """The node names a static rank table's servers can have: host_ip, else server_id."""
    if rank_table is None:
        return []
    servers = json.loads(rank_table)["server_list"]
    return sorted({str(s.get("host_ip") or s["server_id"]) for s in servers})


def manifest_context(spec: JobSpec, opts: K8sOptions, rank_table: str | None) -> dict[str, Any]:
    """The data the templates place: the job's names and labels, its pod, its entrypoint."""
    names = names_for(spec.job_id or spec.name, workload_of(spec, opts))
    workload, ascend = names.workload.key, spec.device_kind == "ascend"
    # MindX DL's documented MindSpore modes (Ascend/mindcluster-deploy samples/train/
    # basic-training): an AscendJob runs "without ranktable" on the operator's MindSpore
    # variables; a Volcano Job reads the rank table the operator writes to rings-config-<job>.
    operator_table = ascend and rank_table is None and workload == "vcjob"
    labels = {"app.kubernetes.io/name": "resnest", "app.kubernetes.io/managed-by": "rlaunch",
              "app.kubernetes.io/component": spec.task, JOB_LABEL: names.job}
    chip = CHIPS[spec.ascend_chip or IMAGE_CHIP]
    job_labels = dict(labels)
    if ascend:
        job_labels["ring-controller.atlas"] = chip.ring_label
        if workload == "acjob":
            job_labels["framework"] = "mindspore"
            if spec.max_restarts > 0:
                job_labels[FAULT_SCHEDULING_LABEL] = "grace"
                job_labels[FAULT_RETRY_LABEL] = str(spec.max_restarts)
    node_labels = {**job_labels, ROLE_LABEL: NODE_TASK}
    resources: dict[str, str] = {}
    if spec.device_kind in DEVICE_RESOURCES:
        resources[DEVICE_RESOURCES[spec.device_kind]] = str(spec.devices_per_node)
    resources.update({k: v for k, v in (("cpu", opts.cpu), ("memory", opts.memory)) if v})
    resources.update(opts.extra_resources)
    node_selector = dict(opts.node_selector)
    if ascend:
        node_selector.setdefault("accelerator-type", chip.accelerator_type(spec.devices_per_node))
    env_fields = [("HOST_IP", "status.hostIP"), ("POD_IP", "status.podIP"),
                  ("POD_UID", "metadata.uid")]
    if ascend:
        # Volcano's Ascend plugin writes the allocated cards in this annotation; MindX DL's
        # samples hand it to the Ascend Docker Runtime (recent operators add the same variable
        # to an AscendJob themselves: pkg/controllers/v1/env.go setAscendVisibleDevicesEnv).
        env_fields.append(("ASCEND_VISIBLE_DEVICES", f"metadata.annotations['{RESOURCE_NAME}']"))
    env = [("RLAUNCH_JOB", names.job), ("RLAUNCH_TASK", spec.task),
           (DEVICE_KIND_ENV, spec.device_kind), *sorted(spec.env.items())]
    pod = {
        "labels": node_labels,
        "service_account": opts.service_account,
        "image_pull_secrets": [{"name": s} for s in opts.image_pull_secrets],
        "node_selector": node_selector,
        "tolerations": ([GPU_TOLERATION] if spec.device_kind == "gpu" else [])
        + [toleration_manifest(t) for t in opts.tolerations],
        "affinity": _affinity(spec, {JOB_LABEL: names.job, ROLE_LABEL: NODE_TASK},
                              _table_hosts(rank_table)),
        "grace_seconds": opts.grace_seconds,
        "security_context": {"runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID,
                             "fsGroup": IMAGE_UID, "fsGroupChangePolicy": "OnRootMismatch",
                             **({"supplementalGroups": [int(g) for g in opts.supplemental_groups]}
                                if opts.supplemental_groups else {})},
        "annotations": dict(opts.pod_annotations),
        "host_network": opts.host_network,
        "container": ASCEND_CONTAINER if ascend else "trainer",
        "image": spec.image or DEFAULT_IMAGES[spec.device_kind],
        "entrypoint_path": f"{ENTRYPOINT_DIR}/entrypoint.sh",
        "working_dir": spec.code_dir,
        "env_fields": env_fields,
        "env": env,
        "resources": resources,
        # The AscendJob operator reads MS_SCHED_PORT from the port named ascendjob-port.
        "port_name": "ascendjob-port" if workload == "acjob" else "scheduler",
        "port": spec.master_port or DEFAULT_SCHEDULER_PORT,
        "volumes": _volumes(spec, opts, names, operator_table),
    }
    limit = time_limit_seconds(spec.time_limit)
    entry = {
        "mode": "ascend" if ascend else "dynamic",
        # Where an Ascend pod's ranks come from: a rank table, or the AscendJob operator's env.
        "ranks_from_table": rank_table is not None or operator_table,
        "procs_per_node": spec.devices_per_node,
        "world_size": spec.world_size,
        "command": [spec.python or "python3", spec.script, *spec.script_args()],
        "requeue_exit_code": REQUEUE_EXIT_CODE,
        "checkpoint_after": max(limit - opts.grace_seconds, 1) if limit else None,
        "rank_table_path": (f"{OPERATOR_RANK_TABLE_DIR}/hccl.json" if operator_table
                            else f"{ENTRYPOINT_DIR}/hccl.json"),
        "rank_entry_path": f"{ENTRYPOINT_DIR}/rank_entry.py",
        "wait_for_table": operator_table,
        "rank_table_timeout": opts.rank_table_timeout,
        "node_rank_env": "JOB_COMPLETION_INDEX" if workload == "jobset" else "VC_TASK_INDEX",
        "topo_timeout": TOPO_TIMEOUT_SECONDS,
        "hccl_connect_timeout": HCCL_CONNECT_TIMEOUT_SECONDS,
    }
    # Kueue's label on the JobSet only: on pods it would make Kueue's pod integration gate them.
    workload_labels = {**job_labels, KUEUE_QUEUE_LABEL: opts.kueue_queue} if opts.kueue_queue \
        else job_labels
    return {"names": names, "namespace": opts.namespace, "labels": labels,
            "job_labels": job_labels, "workload_labels": workload_labels, "nodes": spec.nodes, "max_restarts": spec.max_restarts,
            "ttl_seconds_after_finished": opts.ttl_after_finished,
            "queue": opts.volcano_queue or DEFAULT_VOLCANO_QUEUE,
            "usage_error_exit_code": USAGE_ERROR_EXIT_CODE,
            "priority_class": opts.priority_class, "rank_table": rank_table, "pod": pod,
            "entry": entry}


def render_manifests(spec: JobSpec, opts: K8sOptions) -> tuple[list[dict[str, Any]], str, str]:
    """The objects (creation order), their YAML stream, and the entrypoint script."""
    import yaml

    from launcher import rank_entry
    from launcher.templating import render_template

    rank_table = load_rank_table(opts, spec.visible_device_ids) \
        if spec.device_kind == "ascend" else None
    ctx = manifest_context(spec, opts, rank_table)
    ctx["entrypoint"] = render_template("k8s/entrypoint.sh.j2", **ctx)
    ctx["rank_entry"] = Path(rank_entry.__file__).read_text(encoding="utf-8")
    ctx["node_pod"] = render_template("k8s/pod.yaml.j2", **ctx).rstrip("\n")
    templates = ["k8s/configmap.yaml.j2"]
    if ctx["entry"]["wait_for_table"]:
        templates.append("k8s/rings-configmap.yaml.j2")
    workload = ctx["names"].workload.key
    if workload == "acjob":
        # The Scheduler pod: no cards, any node, small requests. It keeps the volumes: it runs
        # the training script, which checks --data-dir before it becomes MindSpore's scheduler.
        scheduler = {**ctx["pod"], "labels": {**ctx["pod"]["labels"], ROLE_LABEL: "scheduler"},
                     "resources": dict(SCHEDULER_RESOURCES),
                     "node_selector": dict(opts.node_selector),
                     "annotations": {}, "host_network": False,
                     "affinity": {}}
        ctx["scheduler_pod"] = render_template("k8s/pod.yaml.j2", **{**ctx, "pod": scheduler}) \
            .rstrip("\n")
    templates.append(f"k8s/{'ascendjob' if workload == 'acjob' else workload}.yaml.j2")
    docs: list[str] = []
    objects: list[dict[str, Any]] = []
    for template in templates:
        text = render_template(template, **ctx)
        obj = yaml.safe_load(text)
        if not isinstance(obj, dict) or "kind" not in obj:
            raise BackendError(f"template {template} did not render a Kubernetes object")
        docs.append(text if text.endswith("\n") else text + "\n")
        objects.append(obj)
    return objects, "---\n" + "---\n".join(docs), ctx["entrypoint"]


class ImageRequiredError(SpecError, BackendError):
    """A usage error (exit 2) that only submit can raise, since a dry run may omit --image;
    as a BackendError the submit command also drops the job record it had started."""


def split_backend_id(backend_id: str) -> tuple[str | None, str]:
    """`namespace/name` (as submit stores it) -> (namespace, name)."""
    namespace, sep, name = backend_id.rpartition("/")
    return (namespace if sep else None), name


class KubernetesBackend(Backend):
    """AscendJobs / Volcano Jobs / JobSets on Kubernetes (MindX DL for Ascend, NVIDIA GPUs)."""

    name = "k8s"
    options_type = K8sOptions
    # Slurm words with no Kubernetes meaning: an error, not silence (launcher/backends/base.py).
    unused_fields: ClassVar[tuple[str, ...]] = (
        "partition", "account", "qos", "constraint", "scheduler_args")

    def problems(self, spec: JobSpec, opts: K8sOptions) -> list[str]:
        out = super().problems(spec, opts) + option_problems(spec, opts)
        out += signal_window_problems(spec, "grace_seconds", opts.grace_seconds,
                                      "the pods would be told to checkpoint")
        if not SERVICE_NAME_RE.fullmatch(spec.job_id or spec.name):
            out.append(f"name {spec.name!r}: Kubernetes jobs need a name starting with a letter")
        if spec.image and (spec.image.startswith("/") or "#" in spec.image):
            out.append(f"--image {spec.image!r} is a file path or an enroot URI: Kubernetes "
                       "pulls images by reference ([registry/]name[:tag])")
        for label, path, pvc in (("--data-dir", spec.data_dir, opts.data_pvc),
                                 ("--output-dir", spec.output_dir, opts.output_pvc)):
            if pvc and not (path and path.startswith("/")):
                out.append(f"{label} {path!r} must be an absolute path inside the pod to mount "
                           f"the PVC {pvc!r} there")
        if spec.device_kind == "ascend" and not (opts.rank_table and opts.device_ips):
            out += self._rank_table_problems(spec, opts)
        return out

    @staticmethod
    def _rank_table_problems(spec: JobSpec, opts: K8sOptions) -> list[str]:
        try:
            table_text = load_rank_table(opts, spec.visible_device_ids)
        except OptionError as err:
            return err.problems
        if table_text is None:
            return []
        servers = json.loads(table_text).get("server_list", [])
        if len(servers) != spec.nodes:
            return [(f"the rank table lists {len(servers)} servers but the job has "
                    f"--nodes {spec.nodes}")]
        if any(len(s.get("device", [])) != spec.devices_per_node for s in servers):
            return [f"the rank table does not list {spec.devices_per_node} devices on every server"]
        return []

    def prepare(self, spec: JobSpec, opts: K8sOptions) -> tuple[JobSpec, K8sOptions]:
        """In-pod defaults (port, paths), and the chip our image targets written down in the
        spec (it decides the placement rules JobSpec.problems applies, launcher/ascend.py)."""
        changes: dict[str, Any] = {}
        if not spec.master_port:
            changes["master_port"] = DEFAULT_SCHEDULER_PORT
        if not spec.code_dir:
            changes["code_dir"] = IMAGE_CODE_DIR
        if not spec.data_dir and spec.task in ("train", "eval"):
            changes["data_dir"] = DEFAULT_DATA_DIR
        if not spec.output_dir and spec.task in ("train", "eval"):
            changes["output_dir"] = DEFAULT_OUTPUT_DIR
        if spec.device_kind == "ascend" and spec.ascend_chip is None:
            changes["ascend_chip"] = IMAGE_CHIP
        return (spec.replace(**changes) if changes else spec), opts

    def render(self, spec: JobSpec, opts: K8sOptions) -> RenderedJob:
        try:
            _, stream, entrypoint = render_manifests(spec, opts)
        except OptionError as err:
            raise BackendError(str(err)) from err
        return RenderedJob(
            files={MANIFEST_FILE: stream, "entrypoint.sh": entrypoint},
            submit_command=["kubectl", "create", "-f", f"{{job_dir}}/{MANIFEST_FILE}"],
            stdout_document=stream,
        )

    # ---- cluster operations (kubernetes client imported lazily in k8s_api) ---------------

    def _cluster(self, opts: K8sOptions, namespace: str | None = None) -> Any:
        from launcher.backends.k8s_api import Cluster

        return Cluster.connect(context=opts.context, namespace=namespace or opts.namespace)

    def _record_target(self, record: JobRecord) -> tuple[Any, JobNames]:
        spec = record.job_spec
        namespace, name = split_backend_id(record.backend_id or spec.job_id or spec.name)
        opts = self.options_of(spec)
        return self._cluster(opts, namespace), names_for(name, workload_of(spec, opts))

    def submit(self, spec: JobSpec, rendered: RenderedJob, job_dir: Path) -> str:
        """Create exactly the objects `render` returned (and `--dry-run` printed), in order."""
        import yaml

        if not spec.image:
            raise ImageRequiredError([(
                "--backend k8s needs --image REGISTRY/NAME:TAG that every node can pull "
                f"(the default {DEFAULT_IMAGES[spec.device_kind]} exists only where "
                "`rlaunch build` made it): push it and pass the pushed reference")])
        objects = [doc for doc in yaml.safe_load_all(rendered.files[MANIFEST_FILE]) if doc]
        opts = self.options_of(spec)
        cluster = self._cluster(opts)
        self._check_claims(spec, opts, cluster)
        cluster.create_all(objects)
        return f"{cluster.namespace}/{job_names(spec, opts).job}"

    @staticmethod
    def _check_claims(spec: JobSpec, opts: K8sOptions, cluster: Any) -> None:
        """Every node pod mounts the claims: with several nodes a ReadWriteOnce claim would
        attach to one node only and leave the other pods ContainerCreating (Multi-Attach)."""
        if spec.nodes < 2:
            return
        for option, claim, shared in (("data_pvc", opts.data_pvc, ("ReadOnlyMany", "ReadWriteMany")),
                                      ("output_pvc", opts.output_pvc, ("ReadWriteMany",))):
            if not claim or (option == "data_pvc" and not spec.data_dir) \
                    or (option == "output_pvc" and not spec.output_dir):
                continue
            modes = cluster.claim_access_modes(claim)
            if modes is not None and not set(modes) & set(shared):
                raise BackendError(
                    f"--opt {option}={claim}: the claim is {'/'.join(modes) or 'of no access mode'}"
                    f", but the {spec.nodes} node pods all mount it: it must be "
                    f"{' or '.join(shared)}")

    def status(self, record: JobRecord) -> JobStatus:
        cluster, names = self._record_target(record)
        return cluster.job_status(names)

    def many_states(self, records: list[JobRecord]) -> dict[str, JobStatus]:
        """The states of many jobs of one sweep (same namespace and workload kind) from one
        list call, read from each workload object's own status (no pod calls)."""
        from launcher.backends.k8s_api import workload_state

        cluster, names = self._record_target(records[0])
        found = {str((o.get("metadata") or {}).get("name")): o
                 for o in cluster.list_workloads(names.workload)}
        states = {}
        for record in records:
            job = split_backend_id(record.backend_id or record.job_spec.job_id or "")[1]
            obj = found.get(job)
            if obj is None:
                states[record.id] = JobStatus(
                    UNKNOWN, detail=f"{names.workload.kind} {job} not found in namespace "
                    f"{cluster.namespace} (cancelled, or removed after its TTL)")
            elif (obj.get("metadata") or {}).get("deletionTimestamp"):
                states[record.id] = JobStatus(CANCELLED, detail="being deleted")
            else:
                state, restarts, detail = workload_state(names_for(job, names.workload.key), obj)
                states[record.id] = JobStatus(state or RUNNING, restarts,
                                              detail or f"{names.workload.kind} {job} active")
        return states

    def logs(self, record: JobRecord, rank: int | None = None, follow: bool = False) -> Iterator[str]:
        cluster, names = self._record_target(record)
        spec = record.job_spec
        if rank is None:
            yield from cluster.job_logs(names, spec.nodes, follow=follow)
            return
        # Ranks of one pod share its log; keep this rank's lines and the unprefixed ones
        # (tracebacks, the entrypoint's own messages). From the operator's rank table a rank
        # may be on any pod; everywhere else pod i runs ranks i * cards ...
        own = f"[rank {rank}]"
        index = cluster.node_of_rank(names, rank) if self._operator_table(spec) else None
        if index is None:
            index = rank // spec.devices_per_node
        for line in cluster.job_logs(names, spec.nodes, index=index, follow=follow):
            if line.startswith(own) or not RANK_PREFIX_RE.match(line):
                yield line

    def _operator_table(self, spec: JobSpec) -> bool:
        opts = self.options_of(spec)
        return (spec.device_kind == "ascend" and workload_of(spec, opts) == "vcjob"
                and not (opts.rank_table or opts.device_ips))

    def cancel(self, record: JobRecord) -> None:
        cluster, names = self._record_target(record)
        cluster.delete_job(names)

    def fetch_outputs(self, record: JobRecord, dest: Path) -> Path:
        spec = record.job_spec
        opts = self.options_of(spec)
        if not opts.output_pvc or not spec.output_dir:
            # Outputs lived in the pods' emptyDir; the logs (accuracy lines) are all there is.
            dest.mkdir(parents=True, exist_ok=True)
            (dest / "NOT-FETCHED.txt").write_text(
                f"job {record.id} ran without --opt output_pvc: its output dir was inside the "
                "pods and is gone; `rlaunch gather` reads the accuracy from the pod logs.\n")
            return dest
        cluster, names = self._record_target(record)
        cluster.copy_from_pvc(
            names=names, pvc=opts.output_pvc, dest=dest,
            image=spec.image or DEFAULT_IMAGES[spec.device_kind],
            image_pull_secrets=opts.image_pull_secrets,
            node_selector=opts.node_selector,
            tolerations=[toleration_manifest(t) for t in opts.tolerations],
        )
        return dest

    def fetch_logs(self, record: JobRecord, dest: Path) -> list[Path]:
        cluster, names = self._record_target(record)
        dest.mkdir(parents=True, exist_ok=True)
        return cluster.save_pod_logs(names, dest)
