"""Kubernetes backend: an Indexed batch/v1 Job (one pod per node) per training job.

`render` is pure: Jinja templates in `templates/k8s/` become one multi-document YAML stream
(ConfigMap with the entrypoint script and optional rank table, the Ascend operator's rings
ConfigMap, a headless Service, an optional Volcano PodGroup, the Job), which is what `--dry-run`
prints and `kubectl apply -f -` would take. The cluster operations live in `k8s_api` and import
the `kubernetes` client only when they run, so the CLI starts without it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.backends.base import Backend, BackendError, JobStatus, RenderedJob
from launcher.backends.k8s_options import OPTION_HELP, K8sOptions, OptionError, load_rank_table
from launcher.backends.k8s_options import parse_options as parse_k8s_options
from launcher.spec import REQUEUE_EXIT_CODE

if TYPE_CHECKING:
    import jinja2

    from launcher.spec import JobSpec
    from launcher.store import JobRecord

# Extended resources as data (TorchX habit): device kind -> device plugin resource name.
DEVICE_RESOURCES: dict[str, str] = {
    "ascend": "huawei.com/Ascend910",
    "gpu": "nvidia.com/gpu",
}
# What `rlaunch build --target <kind>` names its images; pass --image with the exact tag it
# printed (and a registry) so a job names exactly the code it runs.
DEFAULT_IMAGES: dict[str, str] = {
    "ascend": "rlaunch-ascend:latest",
    "gpu": "rlaunch-gpu:latest",
    "cpu": "rlaunch-cpu:latest",
}
# MindX DL conventions: pods of a ring-managed job carry this label; the operator fills the
# ConfigMap `rings-config-<job>`, mounted at this path in every pod.
ASCEND_RING_LABEL = ("ring-controller.atlas", "ascend-910")
ASCEND_NODE_SELECTOR = {"accelerator": "huawei-Ascend910"}
ASCEND_OPERATOR_RANK_TABLE_DIR = "/user/serverid/devindex/config"
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
# Where --data-pvc / --output-pvc are mounted when no --data-dir / --output-dir is given.
DEFAULT_DATA_DIR = "/data"
DEFAULT_OUTPUT_DIR = "/output"
# Where the images of docker/ install the resnest package (/opt/venv/resnest -> site-packages).
IMAGE_CODE_DIR = "/opt/venv"
JOB_LABEL = "rlaunch.dev/job"
MANIFEST_FILE = "manifests.yaml"
RANK_PREFIX_RE = re.compile(r"^\[rank \d+\]")
# Service names are DNS-1035 labels: they must start with a letter.
SERVICE_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Order of creation; deletion runs in reverse.
TEMPLATES: tuple[str, ...] = (
    "configmap.yaml.j2",
    "rings-configmap.yaml.j2",
    "service.yaml.j2",
    "podgroup.yaml.j2",
    "job.yaml.j2",
)


def templates_dir() -> Path:
    """`templates/k8s`, found through the installed package like every template."""
    from launcher import templating

    return templating.templates_dir() / "k8s"


def _block(text: str, indent: int) -> str:
    """A YAML literal block for multi-line text (readable scripts), JSON when it cannot be one."""
    import yaml

    if text and "\n" in text.rstrip("\n") and text == text.lstrip(" "):
        chomp = "" if text.endswith("\n") and not text.endswith("\n\n") else (
            "-" if not text.endswith("\n") else "+")
        pad = " " * indent
        body = "\n".join(pad + line if line else "" for line in text.rstrip("\n").split("\n"))
        candidate = f"|{chomp}\n{body}"
        if chomp == "+":
            candidate += "\n" * (len(text) - len(text.rstrip("\n")) - 1)
        try:
            if yaml.safe_load("k: " + candidate + "\n") == {"k": text}:
                return candidate
        except yaml.YAMLError:
            pass
    return json.dumps(text, ensure_ascii=False)


def _jinja_env() -> jinja2.Environment:
    import shlex

    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        # bash's ${#array[@]} would open a Jinja comment.
        comment_start_string="{##",
        comment_end_string="##}",
    )
    # JSON is YAML: every value reaches the manifests serialized, never pasted.
    env.filters["q"] = lambda value: json.dumps(value, ensure_ascii=False)
    env.filters["block"] = _block
    env.filters["shell"] = lambda value: shlex.quote(str(value))
    return env


def time_limit_seconds(limit: str | None) -> int | None:
    """Slurm time formats (minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) to seconds."""
    if not limit:
        return None
    days = 0
    text = str(limit)
    if "-" in text:
        day_text, text = text.split("-", 1)
        days = int(day_text)
        parts = [int(p) for p in text.split(":")]
        parts += [0] * (3 - len(parts))
        hours, minutes, seconds = parts
    else:
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            hours, minutes, seconds = 0, parts[0], 0
        elif len(parts) == 2:
            hours, minutes, seconds = 0, parts[0], parts[1]
        else:
            hours, minutes, seconds = parts
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


@dataclass
class Volume:
    """One pod volume and where the trainer container mounts it."""

    name: str
    kind: str  # pvc | configmap | memory | emptydir | hostpath
    mount_path: str
    source: str | None = None
    read_only: bool = False
    size_limit: str | None = None
    host_path_type: str | None = None
    sub_path: str | None = None


def manifest_context(spec: JobSpec, opts: K8sOptions, rank_table: str | None) -> dict[str, Any]:
    """Everything the templates need, computed here so templates only place values."""
    name = spec.name
    kind = spec.device_kind
    ascend = kind == "ascend"
    operator_rank_table = ascend and rank_table is None
    labels = {
        "app.kubernetes.io/name": "resnest",
        "app.kubernetes.io/managed-by": "rlaunch",
        "app.kubernetes.io/component": spec.task,
        JOB_LABEL: name,
    }
    pod_labels = dict(labels)
    if ascend:
        pod_labels[ASCEND_RING_LABEL[0]] = ASCEND_RING_LABEL[1]

    requests: dict[str, str] = {}
    if kind in DEVICE_RESOURCES:
        requests[DEVICE_RESOURCES[kind]] = str(spec.devices_per_node)
    if opts.cpu:
        requests["cpu"] = opts.cpu
    if opts.memory:
        requests["memory"] = opts.memory

    node_selector = dict(ASCEND_NODE_SELECTOR) if ascend else {}
    node_selector.update(opts.node_selector)
    tolerations = [GPU_TOLERATION] if kind == "gpu" else []
    tolerations += [t.to_manifest() for t in opts.tolerations]

    config_name = f"{name}-rlaunch"
    rings_name = f"rings-config-{name}"
    volumes = [Volume("rlaunch", "configmap", ENTRYPOINT_DIR, config_name, read_only=True)]
    if operator_rank_table:
        volumes.append(Volume("ascend-910-config", "configmap", ASCEND_OPERATOR_RANK_TABLE_DIR,
                              rings_name, read_only=True))
    if spec.data_dir and opts.data_pvc:
        volumes.append(Volume("data", "pvc", spec.data_dir, opts.data_pvc, read_only=True))
    if spec.output_dir:
        if opts.output_pvc:
            # One directory per job on a shared claim; `rlaunch gather` reads it back from there.
            volumes.append(Volume("output", "pvc", spec.output_dir, opts.output_pvc,
                                  sub_path=name))
        else:
            volumes.append(Volume("output", "emptydir", spec.output_dir))
    volumes.append(Volume("dshm", "memory", "/dev/shm", size_limit=opts.shm_size))
    if ascend and opts.ascend_driver_mounts:
        volumes += [Volume(vol_name, "hostpath", path, path, read_only=True, host_path_type=kind_)
                    for vol_name, path, kind_ in ASCEND_DRIVER_PATHS]

    env = [("RLAUNCH_JOB", name), ("RLAUNCH_TASK", spec.task)]
    env += sorted((str(k), str(v)) for k, v in spec.env.items())
    python = spec.python or "python3"
    rank_table_path = (f"{ASCEND_OPERATOR_RANK_TABLE_DIR}/hccl.json" if operator_rank_table
                       else f"{ENTRYPOINT_DIR}/hccl.json")
    device_ids = spec.visible_device_ids if ascend else list(range(spec.devices_per_node))
    gang = [(res, str(int(q) * spec.nodes) if res in DEVICE_RESOURCES.values() else q)
            for res, q in requests.items()] if opts.volcano else []
    return {
        "job_name": name,
        "namespace": opts.namespace,
        "labels": labels,
        "job_labels": pod_labels,
        "pod_labels": pod_labels,
        "selector": {JOB_LABEL: name},
        "pod_annotations": {"scheduling.k8s.io/group-name": name} if opts.volcano else {},
        "nodes": spec.nodes,
        "procs_per_node": spec.devices_per_node,
        "device_ids": device_ids,
        "mode": "ascend" if ascend else "dynamic-cluster",
        "command": [python, spec.script, *spec.script_args()],
        "code_dir": spec.code_dir,
        "working_dir": spec.code_dir,
        "requeue_exit_code": REQUEUE_EXIT_CODE,
        "rank_table": rank_table,
        "rank_table_from_operator": operator_rank_table,
        "rank_table_configmap": rings_name if operator_rank_table else None,
        "rings_labels": {**labels, ASCEND_RING_LABEL[0]: ASCEND_RING_LABEL[1]},
        "rank_table_path": rank_table_path,
        "rank_table_timeout": opts.rank_table_timeout,
        "scheduler_host": f"{name}-0.{name}",
        "scheduler_port": spec.master_port or DEFAULT_SCHEDULER_PORT,
        "dns_timeout": 300,
        "config_name": config_name,
        "volcano": opts.volcano,
        "volcano_queue": opts.volcano_queue,
        "gang_resources": gang,
        "backoff_limit": spec.max_restarts,
        "active_deadline_seconds": time_limit_seconds(spec.time_limit),
        "ttl_seconds_after_finished": opts.ttl_after_finished,
        "termination_grace_seconds": opts.grace_seconds,
        "service_account": opts.service_account,
        "image_pull_secrets": [{"name": s} for s in opts.image_pull_secrets],
        "node_selector": node_selector,
        "tolerations": tolerations,
        "priority_class": opts.priority_class,
        "image": spec.image or DEFAULT_IMAGES[kind],
        "entrypoint_path": f"{ENTRYPOINT_DIR}/entrypoint.sh",
        "env": env,
        "requests": sorted(requests.items()),
        "limits": sorted(requests.items()),
        "volumes": volumes,
    }


def render_manifests(spec: JobSpec, opts: K8sOptions) -> tuple[list[dict[str, Any]], str, str]:
    """The objects (creation order), their YAML stream, and the entrypoint script."""
    import yaml

    rank_table = None
    if spec.device_kind == "ascend":
        rank_table = load_rank_table(opts, spec.visible_device_ids)
    context = manifest_context(spec, opts, rank_table)
    env = _jinja_env()
    context["entrypoint"] = env.get_template("entrypoint.sh.j2").render(context)
    docs: list[str] = []
    objects: list[dict[str, Any]] = []
    for template in TEMPLATES:
        if template == "rings-configmap.yaml.j2" and not context["rank_table_from_operator"]:
            continue
        if template == "podgroup.yaml.j2" and not context["volcano"]:
            continue
        text = env.get_template(template).render(context)
        obj = yaml.safe_load(text)
        if not isinstance(obj, dict) or "kind" not in obj:
            raise BackendError(f"template {template} did not render a Kubernetes object")
        docs.append(text if text.endswith("\n") else text + "\n")
        objects.append(obj)
    return objects, "---\n" + "---\n".join(docs), context["entrypoint"]


def split_backend_id(backend_id: str) -> tuple[str | None, str]:
    """`namespace/name` (as submit stores it) -> (namespace, name)."""
    namespace, sep, name = backend_id.rpartition("/")
    return (namespace if sep else None), name


class KubernetesBackend(Backend):
    """Indexed Jobs on Kubernetes: Ascend (device plugin + rank table) and NVIDIA GPUs."""

    name = "k8s"
    options = OPTION_HELP

    def problems(self, spec: JobSpec) -> list[str]:
        out = super().problems(spec)
        try:
            opts = parse_k8s_options(spec.backend_options)
        except OptionError as err:
            return out + err.problems
        if not SERVICE_NAME_RE.match(spec.name):
            out.append(f"name {spec.name!r}: Kubernetes jobs need a name starting with a letter")
        for label, path, pvc in (("--data-dir", spec.data_dir, opts.data_pvc),
                                 ("--output-dir", spec.output_dir, opts.output_pvc)):
            if pvc and not (path and path.startswith("/")):
                out.append(f"{label} {path!r} must be an absolute path inside the pod to mount "
                           f"the PVC {pvc!r} there")
        if (opts.rank_table or opts.device_ips) and spec.device_kind != "ascend":
            out.append("--opt rank_table/device_ips are only for Ascend jobs (--ascend N)")
        elif spec.device_kind == "ascend":
            try:
                table_text = load_rank_table(opts, spec.visible_device_ids)
            except OptionError as err:
                return out + err.problems
            if table_text is not None:
                servers = json.loads(table_text).get("server_list", [])
                if len(servers) != spec.nodes:
                    out.append(f"the rank table lists {len(servers)} servers but the job has "
                               f"--nodes {spec.nodes}")
                elif any(len(s.get("device", [])) != spec.devices_per_node for s in servers):
                    out.append(f"the rank table does not list {spec.devices_per_node} devices "
                               "on every server")
        return out

    def prepare(self, spec: JobSpec) -> JobSpec:
        """A fixed scheduler port (pods have their own IPs) and in-pod data/output paths."""
        changes: dict[str, Any] = {}
        if not spec.master_port:
            changes["master_port"] = DEFAULT_SCHEDULER_PORT
        if not spec.code_dir:
            changes["code_dir"] = IMAGE_CODE_DIR
        if not spec.data_dir and spec.task in ("train", "eval"):
            changes["data_dir"] = DEFAULT_DATA_DIR
        if not spec.output_dir and spec.task in ("train", "eval"):
            changes["output_dir"] = DEFAULT_OUTPUT_DIR
        return spec.replace(**changes) if changes else spec

    def render(self, spec: JobSpec) -> RenderedJob:
        try:
            opts = parse_k8s_options(spec.backend_options)
            _, stream, entrypoint = render_manifests(spec, opts)
        except OptionError as err:
            raise BackendError(str(err)) from err
        return RenderedJob(
            files={MANIFEST_FILE: stream, "entrypoint.sh": entrypoint},
            submit_command=["kubectl", "apply", "-f", f"{{job_dir}}/{MANIFEST_FILE}"],
            stdout_document=stream,
        )

    # ---- cluster operations (kubernetes client imported lazily in k8s_api) ---------------

    def _cluster(self, spec: JobSpec, namespace: str | None = None) -> Any:
        from launcher.backends.k8s_api import Cluster

        opts = parse_k8s_options(spec.backend_options)
        return Cluster.connect(context=opts.context, namespace=namespace or opts.namespace)

    def _record_target(self, record: JobRecord) -> tuple[Any, str]:
        spec = record.job_spec
        namespace, name = split_backend_id(record.backend_id or spec.name)
        return self._cluster(spec, namespace), name

    def submit(self, spec: JobSpec, rendered: RenderedJob, job_dir: Path) -> str:
        import yaml

        # Objects are named after the job id (the job directory's name) so that two jobs with
        # the same --name do not collide; the files in the job directory are what was sent.
        if job_dir.name != spec.name and SERVICE_NAME_RE.match(job_dir.name):
            spec = spec.replace(name=job_dir.name)
            rendered = self.render(spec)
            rendered.write(job_dir)
        objects = [doc for doc in yaml.safe_load_all(rendered.files[MANIFEST_FILE]) if doc]
        cluster = self._cluster(spec)
        cluster.create_all(objects)
        return f"{cluster.namespace}/{spec.name}"

    def status(self, record: JobRecord) -> JobStatus:
        cluster, name = self._record_target(record)
        return cluster.job_status(name)

    def logs(self, record: JobRecord, rank: int | None = None, follow: bool = False) -> Iterator[str]:
        cluster, name = self._record_target(record)
        spec = record.job_spec
        if rank is None:
            yield from cluster.job_logs(name, follow=follow)
            return
        # Ranks of one pod share its log; keep this rank's lines and the unprefixed ones
        # (tracebacks, the entrypoint's own messages).
        own = f"[rank {rank}]"
        for line in cluster.job_logs(name, index=rank // spec.devices_per_node, follow=follow):
            if line.startswith(own) or not RANK_PREFIX_RE.match(line):
                yield line

    def cancel(self, record: JobRecord) -> None:
        cluster, name = self._record_target(record)
        cluster.delete_job(name)

    def fetch_outputs(self, record: JobRecord, dest: Path) -> Path:
        spec = record.job_spec
        opts = parse_k8s_options(spec.backend_options)
        dest.mkdir(parents=True, exist_ok=True)
        if not opts.output_pvc or not spec.output_dir:
            # Outputs lived in the pods' emptyDir; the logs (accuracy lines) are all there is.
            (dest / "NOT-FETCHED.txt").write_text(
                f"job {record.id} ran without --opt output_pvc: its output dir was inside the "
                "pods and is gone; `rlaunch gather` reads the accuracy from the pod logs.\n")
            return dest
        cluster, name = self._record_target(record)
        cluster.copy_from_pvc(
            job_name=name, pvc=opts.output_pvc, dest=dest,
            image=spec.image or DEFAULT_IMAGES[spec.device_kind],
            image_pull_secrets=opts.image_pull_secrets,
            node_selector=opts.node_selector,
            tolerations=[t.to_manifest() for t in opts.tolerations],
        )
        return dest

    def fetch_logs(self, record: JobRecord, dest: Path) -> list[Path]:
        cluster, name = self._record_target(record)
        dest.mkdir(parents=True, exist_ok=True)
        return cluster.save_pod_logs(name, dest)
