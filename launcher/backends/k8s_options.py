"""Kubernetes-only job settings, parsed from `JobSpec.backend_options` (`--opt KEY=VALUE`).

The job spec stays scheduler-neutral; what only Kubernetes needs (namespace, PVCs, pull secrets,
Volcano...) lives here, declared once in `OPTION_HELP` (the backend's `options`, so `--opt` help
and validation come from the same place). Values come as strings from the command line or as
YAML values from a job file; both are accepted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPTION_HELP: dict[str, str] = {
    "namespace": "namespace of the job (default: the kubeconfig context's, else 'default')",
    "context": "kubeconfig context (default: the current one; in a pod: in-cluster config)",
    "data_pvc": "PersistentVolumeClaim with the data set, mounted read-only at --data-dir",
    "output_pvc": "PersistentVolumeClaim for outputs, mounted at --output-dir",
    "image_pull_secrets": "comma-separated Secret names for pulling the image",
    "service_account": "ServiceAccount the pods run as",
    "node_selector": "comma-separated KEY=VALUE node labels the pods require",
    "tolerations": "comma-separated KEY[=VALUE][:EFFECT] taints the pods tolerate",
    "priority_class": "PriorityClass of the pods",
    "workload": "what runs the pods: vcjob (Volcano Job, Ascend default), acjob (MindX DL "
    "AscendJob), jobset (JobSet, GPU/CPU default)",
    "chip": "Ascend chip generation: 910 or 910b (default 910b, what the Ascend image targets)",
    "volcano_queue": "Volcano queue of the job (acjob, vcjob; default 'default')",
    "rank_table": "Ascend: HCCL rank table JSON file (e.g. from `rlaunch ranktable`) to ship "
    "in a ConfigMap, pods pinned to its servers; without it (or device_ips) the MindX DL "
    "operator writes rings-config-<job>",
    "device_ips": "Ascend: YAML/JSON file {node IP: [device IP per card]} to build the rank "
    "table from",
    "rank_table_timeout": "Ascend operator mode: seconds to wait for the rank table (default 600)",
    "ascend_driver_mounts": "true: mount the host's Ascend driver (no Ascend Docker Runtime)",
    "cpu": "CPU request and limit per pod (e.g. 32)",
    "memory": "memory request and limit per pod (e.g. 256Gi)",
    "shm_size": "size limit of the memory-backed /dev/shm (default 16Gi)",
    "ttl_after_finished": "seconds Kubernetes keeps a finished Job and its pods (default 86400)",
    "grace_seconds": "seconds between SIGTERM and SIGKILL, for the final checkpoint (default 120)",
}

DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# Label keys: optional DNS prefix + '/' + name; values: up to 63 of [A-Za-z0-9_.-].
LABEL_NAME_RE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
STRING_KEYS = ("namespace", "context", "data_pvc", "output_pvc", "service_account",
               "priority_class", "workload", "volcano_queue", "rank_table", "device_ips")
SECONDS_KEYS = ("rank_table_timeout", "ttl_after_finished", "grace_seconds")
WORKLOAD_KEYS = ("acjob", "vcjob", "jobset")
CHIP_KEYS = ("910", "910b")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


@dataclass
class Toleration:
    """One pod toleration; `value=None` means operator Exists."""

    key: str
    value: str | None = None
    effect: str | None = None

    def to_manifest(self) -> dict[str, str]:
        out = {"key": self.key, "operator": "Exists" if self.value is None else "Equal"}
        if self.value is not None:
            out["value"] = self.value
        if self.effect:
            out["effect"] = self.effect
        return out


@dataclass
class K8sOptions:
    """The parsed `--opt` values of the k8s backend."""

    namespace: str | None = None
    context: str | None = None
    data_pvc: str | None = None
    output_pvc: str | None = None
    image_pull_secrets: list[str] = field(default_factory=list)
    service_account: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[Toleration] = field(default_factory=list)
    priority_class: str | None = None
    workload: str | None = None
    chip: str = "910b"
    volcano_queue: str | None = None
    rank_table: str | None = None
    device_ips: str | None = None
    rank_table_timeout: int = 600
    ascend_driver_mounts: bool = False
    cpu: str | None = None
    memory: str | None = None
    shm_size: str = "16Gi"
    ttl_after_finished: int = 86400
    grace_seconds: int = 120


class OptionError(ValueError):
    """Bad `--opt` values, one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _words(value: Any) -> list[str]:
    """A list from YAML or a comma-separated string."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [w.strip() for w in str(value).split(",") if w.strip()]


def parse_options(raw: dict[str, Any]) -> K8sOptions:
    """Parse and check every option; raise `OptionError` listing all problems."""
    opts = K8sOptions()
    problems: list[str] = []

    def bad(key: str, value: Any, allowed: str) -> None:
        problems.append(f"--opt {key}={value!r} is not valid: {allowed}")

    for key, value in raw.items():
        if key not in OPTION_HELP:
            continue  # the Backend base class reports unknown keys
        # Types before values: `volcano_queue: null` or a list is not a name, a bool is not a
        # number of seconds. Integers pass as text: `--opt data_pvc=2024` reaches us as YAML 2024.
        if key in STRING_KEYS and (isinstance(value, bool) or not isinstance(value, (str, int))):
            bad(key, value, f"a string, not {type(value).__name__}")
            continue
        if key in SECONDS_KEYS and (isinstance(value, bool) or not isinstance(value, (int, str))):
            bad(key, value, "a whole number of seconds")
            continue
        if key in ("namespace", "service_account", "priority_class", "volcano_queue",
                   "data_pvc", "output_pvc"):
            text = str(value)
            rule = DNS_LABEL_RE if key == "namespace" else DNS_SUBDOMAIN_RE
            if not rule.fullmatch(text):
                bad(key, value, "a Kubernetes name (lowercase letters, digits, '-', '.')")
            else:
                setattr(opts, key, text)
        elif key == "context":
            text = str(value)
            if not text or any(c in text for c in "\n\r\0"):
                bad(key, value, "a kubeconfig context name")
            else:
                opts.context = text
        elif key == "image_pull_secrets":
            names = _words(value)
            for name in names:
                if not DNS_SUBDOMAIN_RE.fullmatch(name):
                    bad(key, name, "comma-separated Secret names")
            opts.image_pull_secrets = names
        elif key == "node_selector":
            items = list(value.items()) if isinstance(value, dict) else [
                (w.partition("=")[0], w.partition("=")[2] if "=" in w else None)
                for w in _words(value)]
            for label, label_value in items:
                label = str(label)
                if (label_value is None or not LABEL_NAME_RE.fullmatch(label)
                        or not LABEL_VALUE_RE.fullmatch(str(label_value))):
                    shown = label if label_value is None else f"{label}={label_value}"
                    bad(key, shown, "comma-separated KEY=VALUE node labels")
                else:
                    opts.node_selector[label] = str(label_value)
        elif key == "tolerations":
            for word in _words(value):
                rest, _, effect = word.partition(":")
                taint_key, sep, taint_value = rest.partition("=")
                if (not LABEL_NAME_RE.fullmatch(taint_key)
                        or (sep and not LABEL_VALUE_RE.fullmatch(taint_value))
                        or (effect and effect not in TAINT_EFFECTS)):
                    bad(key, word, f"KEY[=VALUE][:EFFECT] with EFFECT one of {', '.join(TAINT_EFFECTS)}")
                else:
                    opts.tolerations.append(
                        Toleration(taint_key, taint_value if sep else None, effect or None))
        elif key == "workload":
            if value not in WORKLOAD_KEYS:
                bad(key, value, f"one of {', '.join(WORKLOAD_KEYS)}")
            else:
                opts.workload = value
        elif key == "chip":
            # `--opt chip=910` arrives as the YAML integer 910.
            text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) \
                else None
            if text not in CHIP_KEYS:
                bad(key, value, f"one of {', '.join(CHIP_KEYS)}")
            else:
                opts.chip = text
        elif key == "ascend_driver_mounts":
            word = str(value).strip().lower()
            if word not in TRUE_WORDS + FALSE_WORDS:
                bad(key, value, "true or false")
            else:
                setattr(opts, key, word in TRUE_WORDS)
        elif key in ("rank_table_timeout", "ttl_after_finished", "grace_seconds"):
            text = str(value)
            number = int(text) if text.isdigit() and len(text) < 10 else -1
            if not 0 <= number <= 10**8:
                bad(key, value, "a whole number of seconds")
            else:
                setattr(opts, key, number)
        elif key in ("cpu", "memory", "shm_size"):
            text = str(value)
            if not QUANTITY_RE.fullmatch(text):
                bad(key, value, "a Kubernetes quantity such as 32, 500m, 256Gi")
            else:
                setattr(opts, key, text)
        elif key in ("rank_table", "device_ips"):
            setattr(opts, key, str(value))
    if opts.rank_table and opts.device_ips:
        problems.append("--opt rank_table and --opt device_ips exclude each other: give one")
    if problems:
        raise OptionError(problems)
    return opts


def load_rank_table(opts: K8sOptions, device_ids: list[int]) -> str | None:
    """The rank table JSON to ship (from `rank_table` or built from `device_ips`), or None."""
    from launcher.ranktable import (
        RankTableError,
        build_rank_table,
        check_rank_table,
        load_device_ips,
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
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise OptionError([f"--opt rank_table={path!r} cannot be read as JSON: {err}"]) from err
    problems = check_rank_table(table)
    if not problems and table.get("status") != "completed":
        problems = ['status must be "completed"']
    if problems:
        raise OptionError([f"--opt rank_table={path!r}: {p}" for p in problems])
    return json.dumps(table, indent=2) + "\n"
