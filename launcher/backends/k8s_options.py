"""Kubernetes-only job settings: the k8s backend's `--opt` options, declared once.

The job spec stays scheduler-neutral; what only Kubernetes needs (namespace, PVCs, pull secrets,
Volcano...) is a field of `K8sOptions` here. launcher/options.py derives the parsing, the checks,
the messages, `rlaunch options --backend k8s` and the table in docs/kubernetes.md from these
declarations.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from launcher.backends.k8s_names import WORKLOADS, WORKLOADS_FOR_KIND
from launcher.options import int_range, matches, option

if TYPE_CHECKING:
    from launcher.spec import JobSpec

DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
# Label keys: optional DNS prefix + '/' + name; values: up to 63 of [A-Za-z0-9_.-].
LABEL_NAME_RE = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
LABEL_VALUE_RE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
QUANTITY_RE = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
KUBERNETES_NAME = "a Kubernetes name (lowercase letters, digits, '-', '.')"
QUANTITY = "a Kubernetes quantity such as 32, 500m, 256Gi"
SECONDS = int_range(0, 10**8)


class OptionError(ValueError):
    """Bad `--opt` values (or the files they name), one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _context_name(value: str) -> str | None:
    return None if value.strip() and value == value.strip() else "a kubeconfig context name"


def _node_label(item: tuple[str, str]) -> str | None:
    key, value = item
    if LABEL_NAME_RE.fullmatch(key) and LABEL_VALUE_RE.fullmatch(value):
        return None
    return "a node label KEY=VALUE"


def _toleration(word: str) -> str | None:
    rest, _, effect = word.partition(":")
    key, sep, value = rest.partition("=")
    if (LABEL_NAME_RE.fullmatch(key) and (not sep or LABEL_VALUE_RE.fullmatch(value))
            and (not effect or effect in TAINT_EFFECTS)):
        return None
    return f"KEY[=VALUE][:EFFECT] with EFFECT one of {', '.join(TAINT_EFFECTS)}"


def toleration_manifest(word: str) -> dict[str, str]:
    """One pod toleration from `KEY[=VALUE][:EFFECT]` (no VALUE: operator Exists)."""
    rest, _, effect = word.partition(":")
    key, sep, value = rest.partition("=")
    out = {"key": key, "operator": "Equal" if sep else "Exists"}
    if sep:
        out["value"] = value
    if effect:
        out["effect"] = effect
    return out


def workload_of(spec: JobSpec, opts: K8sOptions) -> str:
    """The workload key: `--opt workload=` or the device kind's default."""
    return opts.workload or WORKLOADS_FOR_KIND[spec.device_kind][0]


def _jobset_workload(spec: JobSpec, opts: K8sOptions) -> str | None:
    workload = workload_of(spec, opts)
    return None if workload == "jobset" else f"Kueue queues the JobSet, not a {workload}"


def _group_id(value: str) -> str | None:
    ok = value.isdigit() and len(value) < 11 and int(value) < 2**32 - 1
    return None if ok else "numeric group ids (0 to 4294967294)"


def _annotation(item: tuple[str, str]) -> str | None:
    key, value = item
    if LABEL_NAME_RE.fullmatch(key) and not any(c in value for c in "\n\r\0"):
        return None
    return "KEY=VALUE pod annotations (KEY like a label key)"


def _extra_resource(item: tuple[str, str]) -> str | None:
    name, quantity = item
    if "/" in name and LABEL_NAME_RE.fullmatch(name) and QUANTITY_RE.fullmatch(quantity):
        return None
    return "NAME=QUANTITY extended resources (e.g. rdma/hca_shared_devices_a=1)"


def _volcano_workload(spec: JobSpec, opts: K8sOptions) -> str | None:
    workload = workload_of(spec, opts)
    return None if workload in ("acjob", "vcjob") else f"a {workload} is not queued by Volcano"


@dataclass(frozen=True)
class K8sOptions:
    """The k8s backend's `--opt` options (launcher/options.py reads these declarations)."""

    namespace: str | None = option(
        "Namespace of the job.", check=matches(DNS_LABEL_RE, "a Kubernetes namespace name "
                                               "(lowercase letters, digits, '-')"),
        default_text="the kubeconfig context's, else default")
    context: str | None = option(
        "Kubeconfig context.", check=_context_name,
        default_text="the current one; in a pod, in-cluster config")
    data_pvc: str | None = option(
        "PersistentVolumeClaim with the data set, mounted read-only at --data-dir.",
        check=matches(DNS_SUBDOMAIN_RE, KUBERNETES_NAME))
    output_pvc: str | None = option(
        "PersistentVolumeClaim for outputs, mounted at --output-dir (rlaunch gather reads it).",
        check=matches(DNS_SUBDOMAIN_RE, KUBERNETES_NAME))
    image_pull_secrets: list[str] = option(
        "Secret names for pulling the image.", default_factory=list,
        check=matches(DNS_SUBDOMAIN_RE, KUBERNETES_NAME))
    service_account: str | None = option(
        "ServiceAccount the pods run as.", check=matches(DNS_SUBDOMAIN_RE, KUBERNETES_NAME))
    node_selector: dict[str, str] = option(
        "Node labels the pods require.", default_factory=dict, check=_node_label)
    tolerations: list[str] = option(
        "Taints the pods tolerate, each KEY[=VALUE][:EFFECT].", default_factory=list,
        check=_toleration)
    priority_class: str | None = option(
        "PriorityClass of the pods.", check=matches(DNS_SUBDOMAIN_RE, KUBERNETES_NAME))
    workload: str | None = option(
        "What runs the pods: vcjob (Volcano Job; any), acjob (MindX DL AscendJob; Ascend), "
        "jobset (JobSet; GPU, CPU).", choices=tuple(WORKLOADS),
        default_text="vcjob for Ascend, else jobset")
    volcano_queue: str | None = option(
        "Volcano queue of the job (acjob, vcjob).",
        check=matches(DNS_SUBDOMAIN_RE, KUBERNETES_NAME), use=_volcano_workload,
        default_text="default")
    rank_table: str | None = option(
        "HCCL rank table JSON file (e.g. from rlaunch ranktable) to ship in a ConfigMap, pods "
        "pinned to its servers; without it or device_ips the MindX DL operator writes "
        "rings-config-<job>.", kinds=("ascend",))
    device_ips: str | None = option(
        "YAML/JSON file {node IP: [device IP per card]} to build the rank table from.",
        kinds=("ascend",))
    rank_table_timeout: int = option(
        "Seconds to wait for the operator's rank table.", 600, kinds=("ascend",),
        check=SECONDS)
    ascend_driver_mounts: bool = option(
        "Mount the host's Ascend driver (clusters without the Ascend Docker Runtime).", False,
        kinds=("ascend",))
    cpu: str | None = option("CPU request and limit per pod (e.g. 32).",
                             check=matches(QUANTITY_RE, QUANTITY))
    memory: str | None = option("Memory request and limit per pod (e.g. 256Gi).",
                                check=matches(QUANTITY_RE, QUANTITY))
    shm_size: str = option("Size limit of the memory-backed /dev/shm.", "16Gi",
                           check=matches(QUANTITY_RE, QUANTITY))
    ttl_after_finished: int = option(
        "Seconds Kubernetes keeps a finished job and its pods.", 86400, check=SECONDS)
    grace_seconds: int = option(
        "Seconds between SIGTERM and SIGKILL, for the final checkpoint.", 120, check=SECONDS)
    supplemental_groups: list[str] = option(
        "Extra group ids of the pods' processes, e.g. the host's HwHiAiUser group that owns "
        "/dev/davinci* when it is not 1000.", default_factory=list, check=_group_id)
    kueue_queue: str | None = option(
        "Kueue LocalQueue of the JobSet (label kueue.x-k8s.io/queue-name): Kueue admits all its "
        "pods at once.", check=matches(LABEL_VALUE_RE, "a label value"), use=_jobset_workload)
    pod_annotations: dict[str, str] = option(
        "Annotations of the node pods (e.g. k8s.v1.cni.cncf.io/networks for Multus, "
        "huawei.com/schedule_policy for MindX DL).", default_factory=dict, check=_annotation)
    extra_resources: dict[str, str] = option(
        "Extended resources each node pod asks for (request and limit), e.g. RDMA NICs.",
        default_factory=dict, check=_extra_resource)
    host_network: bool = option(
        "Run the node pods in the host's network (NCCL/HCCL on the host's NICs); DNS policy "
        "ClusterFirstWithHostNet.", False)


def option_problems(spec: JobSpec, opts: K8sOptions) -> list[str]:
    """Rules between options and the job that no single declaration states."""
    out = []
    allowed = WORKLOADS_FOR_KIND.get(spec.device_kind, ())
    if opts.workload and opts.workload not in allowed:
        out.append(f"{spec.option_label('workload')} {opts.workload} cannot run "
                   f"{spec.device_kind} jobs (allowed: {', '.join(allowed)})")
    if opts.rank_table and opts.device_ips:
        out.append(f"{spec.option_label('rank_table')} and {spec.option_label('device_ips')} "
                   "exclude each other: give one")
    return out


def load_rank_table(opts: K8sOptions, device_ids: list[int]) -> str | None:
    """The rank table JSON to ship (from `rank_table` or built from `device_ips`), or None."""
    from launcher.ranktable import (
        RankTableError,
        build_rank_table,
        check_rank_table,
        load_device_ips,
        read_rank_table,
    )

    if opts.device_ips:
        try:
            ips = load_device_ips(Path(opts.device_ips))
            if not ips or not isinstance(next(iter(ips.values())), dict):
                raise RankTableError(
                    f"--opt device_ips={opts.device_ips!r} must map node IP -> device IPs "
                    "(an hccn.conf names no node)")
            return build_rank_table(ips, device_ids).render()  # type: ignore[arg-type]
        except RankTableError as err:
            raise OptionError([str(err)]) from err
    if not opts.rank_table:
        return None
    path = opts.rank_table
    try:
        table = read_rank_table(Path(path))
    except RankTableError as err:
        raise OptionError([f"--opt rank_table={path!r} cannot be read as JSON: {err}"]) from None
    problems = check_rank_table(table)
    if not problems and table.get("status") != "completed":
        problems = ['status must be "completed"']
    if problems:
        raise OptionError([f"--opt rank_table={path!r}: {p}" for p in problems])
    return json.dumps(table, indent=2) + "\n"
