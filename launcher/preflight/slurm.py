"""Slurm: the partition, its devices and time limit, the account and QOS, the image.

Facts come from `scontrol show partition -o` (one line per partition, KEY=VALUE), `sinfo -h -N
-o '%N|%c|%G|%t'` (one line per node and partition) and `sacctmgr -n -P show account|qos NAME`
(answers only where slurmdbd runs; elsewhere the check is skipped and says why).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.preflight import Check, failed, passed, skipped

if TYPE_CHECKING:
    from launcher.spec import JobSpec

TIMEOUT_SECONDS = 20
UNLIMITED = ("UNLIMITED", "INFINITE")


@dataclass
class NodeFacts:
    name: str
    cpus: int
    gres: dict[str, int]  # gres name -> count (all types together)
    gres_types: dict[str, set[str]]  # gres name -> its types (gpu:a100:8 -> {"a100"})
    state: str


@dataclass
class SlurmFacts:
    """What the controller and the accounting database said (None: could not be asked)."""

    partitions: dict[str, dict[str, str]] | None
    partitions_error: str | None = None
    nodes: list[NodeFacts] = field(default_factory=list)
    # name -> exists; None when sacctmgr cannot answer (then `accounting_error` says why).
    account_exists: bool | None = None
    qos_exists: bool | None = None
    accounting_error: str | None = None


def _run(argv: list[str]) -> tuple[int, str, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=TIMEOUT_SECONDS)
    except FileNotFoundError:
        return 127, "", f"{argv[0]} is not installed or not on PATH"
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]} did not answer within {TIMEOUT_SECONDS} s"
    return done.returncode, done.stdout, done.stderr


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


# ---- parsing (pure) --------------------------------------------------------------------------


def parse_partitions(text: str) -> dict[str, dict[str, str]]:
    """`scontrol show partition -o` -> name -> fields."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        if "PartitionName" in fields:
            out[fields["PartitionName"]] = fields
    return out


def parse_gres(text: str) -> tuple[dict[str, int], dict[str, set[str]]]:
    """sinfo's %G (`gpu:8`, `gpu:a100:4(S:0-1),npu:8`, `(null)`) -> counts and types by name."""
    counts: dict[str, int] = {}
    types: dict[str, set[str]] = {}
    for item in re.split(r",(?![^(]*\))", text):
        parts = item.split("(")[0].strip().split(":")
        if len(parts) < 2 or not parts[-1].isdigit():
            continue
        counts[parts[0]] = counts.get(parts[0], 0) + int(parts[-1])
        if len(parts) == 3:
            types.setdefault(parts[0], set()).add(parts[1])
    return counts, types


def parse_nodes(text: str) -> list[NodeFacts]:
    """`sinfo -h -N -o '%N|%c|%G|%t'` -> one NodeFacts per node (first line of each wins)."""
    nodes: dict[str, NodeFacts] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4 or not parts[1].isdigit() or parts[0] in nodes:
            continue
        counts, types = parse_gres(parts[2])
        nodes[parts[0]] = NodeFacts(parts[0], int(parts[1]), counts, types, parts[3])
    return list(nodes.values())


def parse_time(text: str) -> int | None:
    """Slurm time (`M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`) -> seconds; None for
    UNLIMITED/INFINITE or anything unreadable."""
    text = text.strip()
    if text.upper() in UNLIMITED or not text:
        return None
    days = 0
    if "-" in text:
        head, _, text = text.partition("-")
        if not head.isdigit():
            return None
        days = int(head)
        parts = text.split(":")
        if not all(p.isdigit() for p in parts) or len(parts) > 3:
            return None
        h, m, s = ([int(p) for p in parts] + [0, 0])[:3]
        return ((days * 24 + h) * 60 + m) * 60 + s
    parts = text.split(":")
    if not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    numbers = [int(p) for p in parts]
    if len(numbers) == 1:
        return numbers[0] * 60
    if len(numbers) == 2:
        return numbers[0] * 60 + numbers[1]
    return (numbers[0] * 60 + numbers[1]) * 60 + numbers[2]


# ---- gathering (side effects) ----------------------------------------------------------------


# The field that holds an entity's name in `sacctmgr show` (sacctmgr(1) "FORMAT" per entity).
SACCTMGR_NAME_FIELD = {"account": "account", "qos": "name"}


def _sacctmgr_exists(kind: str, name: str) -> tuple[bool | None, str | None]:
    code, out, err = _run(["sacctmgr", "-n", "-P", "show", kind, name,
                           f"format={SACCTMGR_NAME_FIELD[kind]}"])
    if code != 0:
        return None, _last_line(err or out)
    return any(line.strip().lower() == name.lower() for line in out.splitlines()), None


def gather(spec: JobSpec) -> SlurmFacts:
    code, out, err = _run(["scontrol", "show", "partition", "-o"])
    if code != 0:
        return SlurmFacts(None, partitions_error=_last_line(err or out))
    facts = SlurmFacts(parse_partitions(out))
    name = partition_name(spec, facts.partitions or {})
    if name:
        code, out, _ = _run(["sinfo", "-h", "-N", "-p", name, "-o", "%N|%c|%G|%t"])
        facts.nodes = parse_nodes(out) if code == 0 else []
    if spec.account:
        facts.account_exists, facts.accounting_error = _sacctmgr_exists("account", spec.account)
    if spec.qos and facts.accounting_error is None:
        facts.qos_exists, facts.accounting_error = _sacctmgr_exists("qos", spec.qos)
    return facts


# ---- decisions (pure) ------------------------------------------------------------------------


def partition_name(spec: JobSpec, partitions: dict[str, dict[str, str]]) -> str | None:
    """The partition the job lands in: --partition, else the cluster's default."""
    if spec.partition:
        return spec.partition
    return next((n for n, f in partitions.items() if f.get("Default") == "YES"), None)


def decide(spec: JobSpec, opts: Any, facts: SlurmFacts) -> list[Check]:
    if facts.partitions is None:
        return [failed("slurm.partition", f"cannot ask Slurm for its partitions: "
                       f"{facts.partitions_error}; is this a login node of the cluster?")]
    checks = [_partition(spec, facts)]
    if checks[0].failed:
        return checks + _accounting(spec, facts, None) + [_image(spec, opts)]
    name = partition_name(spec, facts.partitions) or ""
    part = facts.partitions[name]
    checks += [_devices(spec, opts, facts, name), _time(spec, part, name)]
    return checks + _accounting(spec, facts, part) + [_image(spec, opts)]


def _partition(spec: JobSpec, facts: SlurmFacts) -> Check:
    partitions = facts.partitions or {}
    known = ", ".join(sorted(partitions)) or "none"
    name = partition_name(spec, partitions)
    if name is None:
        return failed("slurm.partition", f"the cluster has no default partition: give "
                      f"--partition (partitions: {known})")
    if name not in partitions:
        return failed("slurm.partition", f"partition {name!r} does not exist: use one of "
                      f"{known} (sinfo -s lists them)")
    state = partitions[name].get("State", "UP")
    if state not in ("UP",):
        return failed("slurm.partition", f"partition {name!r} is {state}: jobs will not start "
                      "there; pick another partition")
    nodes = len(facts.nodes)
    if nodes < spec.nodes:
        return failed("slurm.partition", f"partition {name!r} has {nodes} node(s), the job asks "
                      f"for --nodes {spec.nodes}")
    how = "" if spec.partition else " (the default)"
    return passed("slurm.partition", f"partition {name!r}{how} is UP with {nodes} node(s)")


def _gres_name(spec: JobSpec, opts: Any) -> str | None:
    if spec.device_kind == "gpu":
        return "gpu"
    if spec.device_kind == "ascend":
        return str(opts.ascend_gres)
    return None


def _devices(spec: JobSpec, opts: Any, facts: SlurmFacts, name: str) -> Check:
    gres = _gres_name(spec, opts)
    per_node = spec.devices_per_node
    if gres is None:
        fits = [n for n in facts.nodes if n.cpus >= per_node]
        if len(fits) < spec.nodes:
            most = max((n.cpus for n in facts.nodes), default=0)
            return failed("slurm.devices", f"--cpus {per_node} on {spec.nodes} node(s): only "
                          f"{len(fits)} node(s) of {name!r} have that many CPUs (most: {most})")
        return passed("slurm.devices", f"{len(fits)} node(s) of {name!r} have {per_node} CPUs")
    having = [n for n in facts.nodes if n.gres.get(gres, 0) > 0]
    if not having:
        offered = sorted({g for n in facts.nodes for g in n.gres}) or ["none"]
        return failed("slurm.devices", f"partition {name!r} offers no gres {gres!r} (its gres: "
                      f"{', '.join(offered)}): pick a partition with {spec.device_kind} nodes")
    fits = [n for n in having if n.gres[gres] >= per_node]
    if len(fits) < spec.nodes:
        most = max(n.gres[gres] for n in having)
        return failed("slurm.devices", f"{per_node} {gres} per node on {spec.nodes} node(s): "
                      f"{len(fits)} node(s) of {name!r} have that many (most per node: {most})")
    types = sorted({t for n in fits for t in n.gres_types.get(gres, ())})
    kind = f" ({', '.join(types)})" if types else ""
    return passed("slurm.devices", f"{len(fits)} node(s) of {name!r} have {per_node} or more "
                  f"{gres}{kind}")


def _time(spec: JobSpec, part: dict[str, str], name: str) -> Check:
    max_text = part.get("MaxTime", "UNLIMITED")
    limit = parse_time(max_text)
    if spec.time_limit is None:
        default = part.get("DefaultTime", "NONE")
        return passed("slurm.time", f"no --time: the partition's default ({default}, "
                      f"MaxTime {max_text}) applies")
    asked = parse_time(spec.time_limit)
    if asked is not None and limit is not None and asked > limit:
        return failed("slurm.time", f"--time {spec.time_limit} is over the MaxTime of "
                      f"partition {name!r} ({max_text}): ask for {max_text} or less (Slurm "
                      "would keep the job pending with Reason=PartitionTimeLimit)")
    return passed("slurm.time", f"--time {spec.time_limit} fits MaxTime {max_text}")


def _accounting(spec: JobSpec, facts: SlurmFacts, part: dict[str, str] | None) -> list[Check]:
    checks = []
    for what, value, exists, allow in (("account", spec.account, facts.account_exists,
                                        "AllowAccounts"),
                                       ("qos", spec.qos, facts.qos_exists, "AllowQos")):
        name = f"slurm.{what}"
        if not value:
            continue
        allowed = (part or {}).get(allow, "ALL")
        if allowed != "ALL" and value not in allowed.split(","):
            checks.append(failed(name, f"--{what} {value!r} may not use this partition "
                                 f"({allow}={allowed})"))
        elif exists is None:
            checks.append(skipped(name, f"--{what} {value!r} not checked: sacctmgr cannot "
                                  f"answer ({facts.accounting_error})"))
        elif not exists:
            checks.append(failed(name, f"--{what} {value!r} does not exist in Slurm's "
                                 f"accounting: `sacctmgr show {what}` lists them"))
        else:
            checks.append(passed(name, f"--{what} {value!r} exists"))
    return checks


def _image(spec: JobSpec, opts: Any) -> Check:
    """The image in the form the job's container runtime reads, present where it must be."""
    runtime = opts.container_runtime
    image = spec.image
    if not image:
        return passed("slurm.image", "no --image: the ranks run this checkout's Python")
    if image.startswith("/"):
        path = Path(image)
        if not path.exists():
            return failed("slurm.image", f"--image {image!r} does not exist (the nodes read it "
                          "from the shared filesystem): build or copy it there first")
        if runtime == "apptainer" and not (path.is_file() and image.endswith(".sif")):
            return failed("slurm.image", f"--image {image!r}: apptainer runs a .sif file "
                          "(apptainer build x.sif docker-archive://...)")
        if runtime == "pyxis" and not (path.is_file() and image.endswith(".sqsh")):
            return failed("slurm.image", f"--image {image!r}: pyxis/enroot runs a .sqsh file "
                          "(enroot import) or a registry#image reference")
        return passed("slurm.image", f"{image!r} exists for {runtime}")
    if runtime == "apptainer":
        return failed("slurm.image", f"--image {image!r}: apptainer needs an absolute .sif "
                      "path here (apptainer reads a bare reference as a file name)")
    registry, sep, _ = image.partition("/")
    if runtime == "pyxis" and "#" not in image and sep and ("." in registry or ":" in registry):
        rest = image[len(registry) + 1:]
        return failed("slurm.image", f"--image {image!r}: enroot reads this as a Docker Hub "
                      f"name; write the registry with '#': {registry}#{rest}")
    return skipped("slurm.image", f"{image!r} is pulled from its registry when the job "
                   "starts; not checked here")
