"""The typed job spec: the one source of truth that CLI flags, YAML job files and templates share.

A `JobSpec` is plain data. Each field says its type (the annotation) and, when `rlaunch submit`
sets it, its flag and help (`FLAG` metadata): the submit options, the type checks and the
messages all come from that one place. `JobSpec.problems()` checks every field's type before its
value and lists every problem as one line naming the field, or the flag when the value came from
the command line (`origin`). Backends add their own checks on top (`Backend.problems(spec)`).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Union

from launcher.ascend import CHIPS, STRICT_CHIP, placement_problems
from resnest.contract import DEVICE_KIND_ENV, DEVICE_KINDS

TASKS: tuple[str, ...] = ("train", "eval", "export")
# The training entry points (issue 3) run as script files because msrun launches script paths.
TASK_SCRIPTS: dict[str, str] = {
    "train": "resnest/train.py",
    "eval": "resnest/eval.py",
    "export": "resnest/export.py",
}

# All patterns are used with `fullmatch` and ASCII classes: `$` would let a trailing newline
# through and `\d` would accept non-ASCII digits that no scheduler parses.
# Job names end up in scheduler names, file names and Kubernetes labels; keep them boring.
JOB_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
# Scheduler words (partition, account, qos): what Slurm itself accepts, no shell metacharacters.
# The first character is never '-', so a value cannot read as an option.
SCHEDULER_WORD_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+@-]{0,127}")
# Slurm constraint expressions: features joined by & | , with optional [ ] ( ) and *counts.
CONSTRAINT_RE = re.compile(r"[A-Za-z0-9_\[(][A-Za-z0-9_.&|,\[\]()*-]{0,255}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
OVERRIDE_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
# Slurm time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
TIME_LIMIT_RE = re.compile(
    r"[0-9]{1,8}|[0-9]{1,8}:[0-9]{2}|[0-9]{1,8}:[0-9]{2}:[0-9]{2}"
    r"|[0-9]{1,5}-[0-9]{1,2}(:[0-9]{2}){0,2}"
)
# One image reference: [registry[:port]/]path[:tag], lower-case path components (Docker's
# reference grammar, distribution/reference, sha256 digests only).
IMAGE_REF_RE = re.compile(
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@sha256:[0-9a-f]{64})?"
)
CARD_RANGE_RE = re.compile(r"([0-9]{1,100})(?:-([0-9]{1,100}))?")
# Per device kind, the most devices one node can have (Ascend: the chip's rules, launcher/ascend.py).
MAX_DEVICES_PER_NODE: dict[str, int] = {
    "gpu": 16, "cpu": 1024, "ascend": max(c.cards_per_server for c in CHIPS.values())}
MAX_NODES = 100_000
MAX_RESTARTS = 1000
# Environment variables the launcher sets itself: `--env` must not contradict them.
RESERVED_ENV: dict[str, str] = {DEVICE_KIND_ENV: "set from --gpus/--ascend/--cpus"}
# A job file is a handful of lines; refuse to read a device or a runaway file into memory.
MAX_JOB_FILE_BYTES = 1 << 20
# Characters no path, name or option value may hold: no scheduler line format survives them.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class SpecError(ValueError):
    """Raised with every problem of a spec, one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Flag:
    """How `rlaunch submit` sets a field: the option, its help, and for lists/dicts a metavar.

    A list field is a repeated option; a dict field a repeated KEY=VALUE option. `choices`
    restrict a string field at the command line (the spec checks the same set itself).
    """

    flag: str
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None


def _cli(flag: str, help: str, **kw: Any) -> dict[str, Flag]:
    return {"flag": Flag(flag, help, **kw)}


# Flags that set `device_kind` and `devices_per_node` together (one rank per device).
DEVICE_FLAGS: dict[str, str] = {"--gpus": "gpu", "--ascend": "ascend", "--cpus": "cpu"}
DEVICE_FLAG_HELP: dict[str, str] = {
    "--gpus": "GPUs per node (one rank each), 1-16.",
    "--ascend": "Ascend cards per node: 1, 2, 4 or 8 (16 with --ascend-chip 910b).",
    "--cpus": "CPU ranks per node (local default: 1).",
}


@dataclass
class JobSpec:
    """Everything a backend needs to run one job.

    `devices_per_node` devices of `device_kind` on each of `nodes` nodes; one rank per device
    (for `cpu`, one rank per requested CPU worker). `overrides` are the training config's
    `--set key=value` pairs; `args` are extra arguments for the task's entry point (e.g.
    `--checkpoint C` for eval). `backend_options` holds backend-specific settings (k8s namespace,
    PVC names, ...) that each backend validates itself.
    """

    name: str = field(default="resnest", metadata=_cli(
        "--name", "Job name: lowercase letters, digits, '-' (default resnest)."))
    task: str = field(default="train", metadata=_cli(
        "--task", "Default train.", choices=TASKS))
    backend: str = field(default="local", metadata=_cli(
        "--backend", "Where to run (default local)."))
    nodes: int = field(default=1, metadata=_cli("--nodes", "Number of nodes (default 1)."))
    # Set by --gpus / --ascend / --cpus (DEVICE_FLAGS).
    devices_per_node: int = 1
    device_kind: str = "cpu"
    # Ascend only: which cards of each server (default 0..devices_per_node-1).
    device_ids: list[int] | None = field(default=None, metadata=_cli(
        "--ascend-devices", "Which Ascend cards, e.g. 4-7 (default 0..N-1).", metavar="CARDS"))
    # Ascend only: the chip generation, which decides the card rules (launcher/ascend.py).
    # None: the backend's default (k8s: the image's chip), else the strict 910 rules.
    ascend_chip: str | None = field(default=None, metadata=_cli(
        "--ascend-chip", "Ascend chip: 910 (rings of 4 cards) or 910b (8- or 16-card servers); "
        "default: k8s 910b, else the 910 rules.", choices=tuple(CHIPS)))
    image: str | None = field(default=None, metadata=_cli(
        "--image", "Container image (container backends)."))
    data_dir: str | None = field(default=None, metadata=_cli(
        "--data-dir", "Data set folder with train/ and val/."))
    output_dir: str | None = field(default=None, metadata=_cli(
        "--output-dir", "Checkpoints, metrics and the eval result go here."))
    config: str | None = field(default=None, metadata=_cli("--config", "Training config YAML."))
    overrides: list[str] = field(default_factory=list, metadata=_cli(
        "--set", "Config override, checked against the training config at submit.",
        metavar="KEY=VALUE"))
    args: list[str] = field(default_factory=list, metadata=_cli(
        "--arg", "Extra argument for the task's entry point."))
    time_limit: str | None = field(default=None, metadata=_cli(
        "--time", "Time limit (Slurm syntax, e.g. 02:00:00)."))
    partition: str | None = field(default=None, metadata=_cli(
        "--partition", "Scheduler partition."))
    account: str | None = field(default=None, metadata=_cli("--account", "Scheduler account."))
    qos: str | None = field(default=None, metadata=_cli("--qos", "Scheduler QOS."))
    constraint: str | None = field(default=None, metadata=_cli(
        "--constraint", "Node feature constraint."))
    env: dict[str, str] = field(default_factory=dict, metadata=_cli(
        "--env", "Environment of the ranks.", metavar="KEY=VALUE"))
    scheduler_args: list[str] = field(default_factory=list, metadata=_cli(
        "--scheduler-arg", "Extra scheduler option, e.g. --exclusive."))
    max_restarts: int = field(default=3, metadata=_cli(
        "--max-restarts", "Requeues after preemption, 0-1000 (default 3)."))
    backend_options: dict[str, Any] = field(default_factory=dict, metadata=_cli(
        "--opt", "Backend-specific option.", metavar="KEY=VALUE"))
    # Where the code and its interpreter live on the nodes (a shared filesystem for Slurm,
    # this checkout for local, the image's paths for containers). Filled in by `with_defaults`.
    code_dir: str | None = None
    python: str | None = None
    # msrun scheduler port; None: the backend picks (local: a free port, slurm: from the job id).
    master_port: int | None = field(default=None, metadata=_cli(
        "--master-port", "Port of the msrun scheduler, 1024-65535."))
    # The job store id (`<name>-<6 hex>`), chosen by `rlaunch submit` before anything is
    # rendered, so that what `--dry-run` prints is what `submit` sends (k8s object names use it).
    job_id: str | None = None
    # Where each field's value came from: a flag ("--gpus") or a job file's path. Only for
    # messages; not stored, not compared.
    origin: dict[str, str] = field(default_factory=dict, compare=False, repr=False,
                                   metadata={"stored": False})

    # ---- derived values (pure) -------------------------------------------------------------

    @property
    def world_size(self) -> int:
        """Total number of ranks: one per device on every node."""
        return self.nodes * self.devices_per_node

    @property
    def visible_device_ids(self) -> list[int]:
        """The device indices used on each node."""
        if self.device_ids is not None:
            return list(self.device_ids)
        return list(range(self.devices_per_node))

    @property
    def script(self) -> str:
        """Entry point path relative to `code_dir`."""
        return TASK_SCRIPTS[self.task]

    def script_args(self) -> list[str]:
        """Arguments for the task's entry point, unquoted (templates quote them)."""
        argv: list[str] = []
        if self.task in ("train", "eval") and self.data_dir:
            argv += ["--data-dir", self.data_dir]
        if self.task in ("train", "eval") and self.output_dir:
            argv += ["--output-dir", self.output_dir]
        if self.config:
            argv += ["--config", self.config]
        for item in self.overrides:
            argv += ["--set", item]
        return argv + list(self.args)

    # ---- validation --------------------------------------------------------------------------

    def label(self, name: str) -> str:
        """How messages name field `name`: its flag when the value came from the command line,
        `FILE: field` when it came from a job file, else the field's name."""
        source = self.origin.get(name)
        if source is None:
            return name
        if source.startswith("-"):
            return source
        return f"{source}: {name}"

    def option_label(self, key: str) -> str:
        """How messages name backend option `key`: `--opt key`, or `FILE: backend_options.key`
        when a job file set it."""
        source = self.origin.get(f"backend_options.{key}", self.origin.get("backend_options"))
        if source is None or source.startswith("-"):
            return f"--opt {key}"
        return f"{source}: backend_options.{key}"

    def type_problems(self) -> list[str]:
        """Fields whose value has the wrong type (checked before any value is looked at)."""
        out: list[str] = []
        for name, hint in field_types().items():
            out += _type_problems(self.label(name), getattr(self, name), hint)
        return out

    def problems(self) -> list[str]:
        """Every problem with this spec, one line each; empty when it is valid."""
        wrong_types = self.type_problems()
        if wrong_types:
            return wrong_types
        out: list[str] = []
        for name, check in _FIELD_CHECKS.items():
            out += check(self, self.label(name), getattr(self, name))
        for whole_spec_check in _SPEC_CHECKS:
            out += whole_spec_check(self)
        return out

    def validate(self) -> JobSpec:
        """Raise `SpecError` listing every problem; return self when valid."""
        problems = self.problems()
        if problems:
            raise SpecError(problems)
        return self

    # ---- (de)serialization -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict of the stored fields (the job store and job files use it)."""
        data = dataclasses.asdict(self)
        del data["origin"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> JobSpec:
        """Build from a dict, rejecting unknown keys (with the known ones) and wrong types.

        `source` (a job file's path) is remembered in `origin` so messages can name it.
        """
        known = stored_fields()
        unknown = sorted((k for k in data if k not in known), key=str)
        where = f"{source}: " if source else ""
        if unknown:
            raise SpecError([
                f"{where}unknown job spec field {k!r}; known fields: {', '.join(sorted(known))}"
                for k in unknown
            ])
        origin = {k: source for k in data} if source else {}
        spec = cls(**data, origin=origin)
        wrong = spec.type_problems()
        if wrong:
            raise SpecError(wrong)
        return spec

    @classmethod
    def from_yaml(cls, path: str | Path) -> JobSpec:
        """Load a YAML job file (`--file job.yaml`): a mapping of JobSpec fields (not `job_id`,
        which `rlaunch submit` chooses)."""
        data = read_yaml_mapping(Path(path), "job file")
        if data.get("job_id") is not None:
            raise SpecError([f"{path}: job_id is chosen by rlaunch submit; remove it"])
        return cls.from_dict(data, source=str(path))

    def replace(self, **changes: Any) -> JobSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# ---- fields: types and flags ---------------------------------------------------------------


@cache
def field_types() -> dict[str, Any]:
    """Field name -> resolved type annotation, for every stored field."""
    hints = typing.get_type_hints(JobSpec)
    return {name: hints[name] for name in stored_fields()}


@cache
def stored_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(JobSpec) if f.metadata.get("stored", True))


@cache
def field_defaults() -> dict[str, Any]:
    """Field name -> its default value (a fresh one for list/dict fields)."""
    return {name: getattr(JobSpec(), name) for name in stored_fields()}


def cli_fields() -> dict[str, Flag]:
    """Field name -> its submit flag, in field order (the device flags are DEVICE_FLAGS)."""
    return {f.name: f.metadata["flag"] for f in dataclasses.fields(JobSpec)
            if "flag" in f.metadata}


def describe(value: Any) -> str:
    """A value's YAML kind for messages: `null`, `a boolean (True)`, `a list`, ..."""
    if value is None:
        return "null"
    kinds = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
             (list, "a list"), (dict, "a mapping"))
    for kind, text in kinds:
        if isinstance(value, kind):
            return text if isinstance(value, (list, dict)) else f"{text} ({value!r})"
    return type(value).__name__


def _type_name(hint: Any) -> str:
    if hint is int:
        return "an integer"
    if hint is str:
        return "a string"
    if hint is Any:
        return "any value"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        named = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"a list of {_plural(args[0])}"
    if origin is dict:
        return f"a mapping of {_plural(args[0])} to {_plural(args[1])}"
    return getattr(hint, "__name__", str(hint))


def _plural(hint: Any) -> str:
    return "values" if hint is Any else _type_name(hint).split(" ", 1)[1] + "s"


def _type_problems(label: str, value: Any, hint: Any) -> list[str]:
    """Why `value` does not have type `hint` (bool is not an int, null is not a string)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return []
        (hint,) = [a for a in args if a is not type(None)]
        if value is None:
            return [f"{label} must be {_type_name(hint)}, not null"]
        return _type_problems(label, value, hint)
    if hint is Any:
        return []
    if origin is list:
        if not isinstance(value, list):
            return [f"{label} must be {_type_name(hint)}, not {describe(value)}"]
        return [p for i, item in enumerate(value)
                for p in _type_problems(f"{label}[{i}]", item, args[0])]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{label} must be {_type_name(hint)}, not {describe(value)}"]
        out = []
        for key, item in value.items():
            out += _type_problems(f"{label} key {key!r}", key, args[0])
            out += _type_problems(f"{label} {key}", item, args[1])
        return out
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if ok:
        return []
    # YAML reads an unquoted 910, 0x1f or yes as a number or boolean.
    quote = " (quote it in YAML)" if hint is str and isinstance(value, (int, float)) else ""
    return [f"{label} must be {_type_name(hint)}, not {describe(value)}{quote}"]


# ---- fields: value checks (types are right by now) -----------------------------------------

FieldCheck = Callable[[JobSpec, str, Any], list[str]]


def _int_range(lo: int, hi: int) -> FieldCheck:
    def check(spec: JobSpec, label: str, value: int | None) -> list[str]:
        if value is None or lo <= value <= hi:
            return []
        return [f"{label} {value} must be {lo}-{hi}"]
    return check


def _pattern(regex: re.Pattern[str], what: str) -> FieldCheck:
    def check(spec: JobSpec, label: str, value: str | None) -> list[str]:
        if value is None or regex.fullmatch(value):
            return []
        return [f"{label} {value!r} {what}"]
    return check


def _one_of(allowed: tuple[str, ...]) -> FieldCheck:
    def check(spec: JobSpec, label: str, value: str) -> list[str]:
        return [] if value in allowed else [f"{label} {value!r} is not one of {', '.join(allowed)}"]
    return check


def _one_line(spec: JobSpec, label: str, value: str | None) -> list[str]:
    """Paths reach shell lines (quoted) and YAML/JSON (serialized): anything but control
    characters (newline, NUL, ...), which no scheduler line or log format survives."""
    if value is None or not CONTROL_RE.search(value):
        return []
    return [f"{label} {value!r} contains a newline or control character, which is not allowed"]


def _image(spec: JobSpec, label: str, value: str | None) -> list[str]:
    """A registry reference (enroot's `registry#name:tag` too), or an absolute path to an image
    file or bundle (Apptainer's .sif, enroot's .sqsh, an OCI bundle for runc): Slurm's container
    runtimes take those."""
    if value is None or IMAGE_REF_RE.fullmatch(value):
        return []
    registry, sep, ref = value.partition("#")  # enroot/pyxis: registry#name:tag
    if sep and re.fullmatch(r"[a-zA-Z0-9.-]+(?::[0-9]+)?", registry) and IMAGE_REF_RE.fullmatch(ref):
        return []
    if value.startswith("/") and not CONTROL_RE.search(value):
        return []
    what = "is not an image reference ([registry/]name[:tag], lower-case name) nor an absolute path"
    return [f"{label} {value!r} {what} to an image file"]


def _nonempty_one_line(spec: JobSpec, label: str, value: str | None) -> list[str]:
    """Like `_one_line`, and an empty string is not a path (it would silently mean "none")."""
    if value == "":
        return [f"{label} is empty: give a path or leave it out"]
    return _one_line(spec, label, value)


def _no_nul(spec: JobSpec, label: str, values: list[str]) -> list[str]:
    return [f"{label} {v!r} contains a NUL byte" for v in values if "\0" in v]


def _devices_per_node(spec: JobSpec, label: str, value: int) -> list[str]:
    if spec.device_kind == "ascend":  # the card and ring rules depend on the chip
        chip = CHIPS[spec.ascend_chip if spec.ascend_chip in CHIPS else STRICT_CHIP]
        return placement_problems(value, spec.visible_device_ids, chip, label,
                                         spec.label("device_ids"))
    most = MAX_DEVICES_PER_NODE.get(spec.device_kind)
    if most is None or 1 <= value <= most:
        return []
    kind = "" if label.startswith("-") else f" for a {spec.device_kind} job"
    return [f"{label} {value} must be 1-{most}{kind}"]


def _device_ids(spec: JobSpec, label: str, value: list[int] | None) -> list[str]:
    if value is not None and spec.device_kind != "ascend":
        return [f"{label} is only for Ascend jobs (--ascend)"]
    return []


def _ascend_chip(spec: JobSpec, label: str, value: str | None) -> list[str]:
    if value is None:
        return []
    if spec.device_kind != "ascend":
        return [f"{label} is only for Ascend jobs (--ascend)"]
    return _one_of(tuple(CHIPS))(spec, label, value)


def _env(spec: JobSpec, label: str, value: dict[str, str]) -> list[str]:
    out = [f"{label} {key!r} is not a valid environment variable name "
           "(letters, digits and _, not starting with a digit)"
           for key in value if not ENV_NAME_RE.fullmatch(key)]
    out += [f"{label} {key} cannot be set: the launcher sets it ({RESERVED_ENV[key]})"
            for key in value if key in RESERVED_ENV]
    return out + [f"{label} {key}: the value contains a NUL byte"
                  for key, item in value.items() if "\0" in item]


def _overrides(spec: JobSpec, label: str, value: list[str]) -> list[str]:
    out = []
    for item in value:
        key, sep, rest = item.partition("=")
        if not sep or not OVERRIDE_KEY_RE.fullmatch(key) or CONTROL_RE.search(rest):
            out.append(f"{label} {item!r} must look like key=value on one line "
                       "(key: letters, digits, _ .)")
    return out


def _backend_options(spec: JobSpec, label: str, value: dict[str, Any]) -> list[str]:
    """Generic part only (each backend checks its keys and values): no control characters in
    any string, which would reach a manifest or script line."""
    out = []
    for key, item in value.items():
        texts = [key, *(item if isinstance(item, list) else [item])]
        if any(isinstance(t, str) and CONTROL_RE.search(t) for t in texts):
            out.append(f"{label} {key}={item!r} contains a newline or control character")
    return out


_FIELD_CHECKS: dict[str, FieldCheck] = {
    "name": _pattern(JOB_NAME_RE, "is not a valid job name: use 1-40 lowercase letters, digits "
                                  "and '-', starting and ending with a letter or digit"),
    "task": _one_of(TASKS),
    "nodes": _int_range(1, MAX_NODES),
    "device_kind": _one_of(DEVICE_KINDS),
    "devices_per_node": _devices_per_node,
    "device_ids": _device_ids,
    "ascend_chip": _ascend_chip,
    "max_restarts": _int_range(0, MAX_RESTARTS),
    "master_port": _int_range(1024, 65535),
    "time_limit": _pattern(TIME_LIMIT_RE, "is not a Slurm time: use minutes, MM:SS, HH:MM:SS "
                                          "or D-HH:MM:SS"),
    **{name: _pattern(SCHEDULER_WORD_RE, "has characters a scheduler does not accept (allowed: "
                                         "1-128 letters, digits, _ . : + @ -, not "
                                         "starting with . : + @ -)")
       for name in ("partition", "account", "qos")},
    "constraint": _pattern(CONSTRAINT_RE, "is not a Slurm feature expression (allowed: letters, "
                                          "digits, _ . - & | , [ ] ( ) *)"),
    "image": _image,
    "env": _env,
    "overrides": _overrides,
    **{name: _one_line for name in ("data_dir", "output_dir")},
    **{name: _nonempty_one_line for name in ("config", "code_dir", "python")},
    "args": _no_nul,
    "scheduler_args": _no_nul,
    "backend_options": _backend_options,
}


def _task_needs(spec: JobSpec) -> list[str]:
    out = []
    if spec.task in ("train", "eval") and not spec.data_dir:
        out.append(f"a {spec.task} job needs --data-dir")
    if spec.task == "train" and not spec.output_dir:
        out.append("a train job needs --output-dir")
    if spec.task == "export" and spec.world_size != 1:
        out.append(f"an export job runs one process, not {spec.world_size}: use one device")
    return out


_SPEC_CHECKS: tuple[Callable[[JobSpec], list[str]], ...] = (_task_needs,)


# ---- inputs --------------------------------------------------------------------------------


def parse_card_list(text: str, label: str, highest: int = 7) -> list[int]:
    """`0-7`, `0,1,2,3` or `4-7` -> card numbers; bounds are checked before a range is built,
    so `0-99999999999` is one line, not a list of that length."""
    ids: list[int] = []
    for part in text.split(","):
        match = CARD_RANGE_RE.fullmatch(part.strip())
        if not match:
            allowed = f"a card list like 0-7 or 0,1,2,3 (cards 0-{highest})"
            raise SpecError([f"{label} {text!r} is not {allowed}"])
        lo, hi = int(match[1]), int(match[2] or match[1])
        if hi > highest:
            raise SpecError([f"{label} {text!r}: card {hi} is out of range 0-{highest}"])
        if hi < lo:
            raise SpecError([f"{label} {text!r}: range {part.strip()} runs backwards"])
        ids.extend(range(lo, hi + 1))
    if len(set(ids)) != len(ids):
        raise SpecError([f"{label} {text!r} names a card twice"])
    return ids


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping, or SpecError with one line saying why it is not one."""
    import yaml

    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_JOB_FILE_BYTES + 1)
    except OSError as err:
        raise SpecError([f"{what} {str(path)!r} cannot be read: {err.strerror or err}"]) from None
    if len(raw) > MAX_JOB_FILE_BYTES:
        raise SpecError([f"{what} {str(path)!r} is larger than {MAX_JOB_FILE_BYTES} bytes"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        byte = raw[err.start]
        where = f"byte {byte:#04x} at offset {err.start}"
        raise SpecError([f"{what} {str(path)!r} is not UTF-8 text ({where})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError([f"{what} {str(path)!r} is not valid YAML{where}: {problem}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = describe(data)
        raise SpecError([f"{what} {str(path)!r} must be a mapping of job spec fields, not {kind}"])
    return data
