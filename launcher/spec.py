"""The typed job spec: the one source of truth that CLI flags, YAML job files and templates share.

A `JobSpec` is plain data. `JobSpec.problems()` lists every validation problem as one clear line
each, before anything is rendered or submitted; `JobSpec.validate()` raises `SpecError` with them.
Backends add their own checks on top (`Backend.problems(spec)`), e.g. keys of `backend_options`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKS: tuple[str, ...] = ("train", "eval", "export")
DEVICE_KINDS: tuple[str, ...] = ("gpu", "ascend", "cpu")

# The training entry points (issue 3) run as script files because msrun launches script paths.
TASK_SCRIPTS: dict[str, str] = {
    "train": "resnest/train.py",
    "eval": "resnest/eval.py",
    "export": "resnest/export.py",
}
# Exit code of resnest/train.py after SIGTERM/SIGUSR1 once it has saved a checkpoint.
REQUEUE_EXIT_CODE = 75

# Job names end up in scheduler names, file names and Kubernetes labels; keep them boring.
JOB_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
# Scheduler words (partition, account, qos): what Slurm itself accepts, no shell metacharacters.
SCHEDULER_WORD_RE = re.compile(r"^[A-Za-z0-9_.:+@-]{1,128}$")
# Slurm constraint expressions: features joined by & | , with optional [ ] ( ) and *counts.
CONSTRAINT_RE = re.compile(r"^[A-Za-z0-9_.&|,\[\]()*-]{1,256}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OVERRIDE_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
# Slurm time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
TIME_LIMIT_RE = re.compile(r"^(\d+|\d+:\d{2}|\d+:\d{2}:\d{2}|\d+-\d+(:\d{2}){0,2})$")


class SpecError(ValueError):
    """Raised with every problem of a spec, one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class JobSpec:
    """Everything a backend needs to run one job.

    `devices_per_node` devices of `device_kind` on each of `nodes` nodes; one rank per device
    (for `cpu`, one rank per requested CPU worker). `overrides` are the training config's
    `--set key=value` pairs; `args` are extra arguments for the task's entry point (e.g.
    `--checkpoint C` for eval). `backend_options` holds backend-specific settings (k8s namespace,
    PVC names, ...) that each backend validates itself.
    """

    name: str = "resnest"
    task: str = "train"
    backend: str = "local"
    nodes: int = 1
    devices_per_node: int = 1
    device_kind: str = "cpu"
    # Ascend only: which cards of each server (default 0..devices_per_node-1).
    device_ids: list[int] | None = None
    image: str | None = None
    data_dir: str | None = None
    output_dir: str | None = None
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    time_limit: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    scheduler_args: list[str] = field(default_factory=list)
    max_restarts: int = 3
    backend_options: dict[str, Any] = field(default_factory=dict)
    # Where the code and its interpreter live on the nodes (a shared filesystem for Slurm,
    # this checkout for local, the image's paths for containers). Filled in by `with_defaults`.
    code_dir: str | None = None
    python: str | None = None
    # msrun scheduler port; None: the backend picks (local: a free port, slurm: from the job id).
    master_port: int | None = None
    # The job store id (`<name>-<6 hex>`), chosen by `rlaunch submit` before anything is
    # rendered, so that what `--dry-run` prints is what `submit` sends (k8s object names use it).
    job_id: str | None = None

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

    def problems(self) -> list[str]:
        """Every problem with this spec, one line each; empty when it is valid."""
        out: list[str] = []
        if not isinstance(self.name, str) or not JOB_NAME_RE.match(self.name):
            out.append(
                f"name {self.name!r} is not a valid job name: use 1-40 lowercase letters, digits "
                "and '-', starting and ending with a letter or digit"
            )
        if self.task not in TASKS:
            out.append(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        if not isinstance(self.nodes, int) or self.nodes < 1 or self.nodes > 100_000:
            out.append(f"nodes {self.nodes!r} must be an integer from 1 to 100000")
        if self.device_kind not in DEVICE_KINDS:
            out.append(f"device kind {self.device_kind!r} is not one of {', '.join(DEVICE_KINDS)}")
        if not isinstance(self.devices_per_node, int) or not 1 <= self.devices_per_node <= 1024:
            out.append(f"devices per node {self.devices_per_node!r} must be an integer from 1")
        elif self.device_kind == "ascend":
            from launcher import ascend

            out += ascend.placement_problems(self.devices_per_node, self.visible_device_ids,
                                             ascend.chip_of(self.backend_options))
        elif self.device_kind == "gpu" and self.devices_per_node > 16:
            out.append(f"--gpus {self.devices_per_node} is more than 16 GPUs per node")
        if self.device_ids is not None and self.device_kind != "ascend":
            out.append("device_ids are only for Ascend jobs (--ascend)")
        if not isinstance(self.max_restarts, int) or not 0 <= self.max_restarts <= 1000:
            out.append(f"max_restarts {self.max_restarts!r} must be an integer from 0 to 1000")
        if self.master_port is not None and (
            not isinstance(self.master_port, int) or not 1024 <= self.master_port <= 65535
        ):
            out.append(f"master_port {self.master_port!r} must be an integer from 1024 to 65535")
        if self.time_limit is not None and not TIME_LIMIT_RE.match(str(self.time_limit)):
            out.append(
                f"time limit {self.time_limit!r} is not a Slurm time: use minutes, MM:SS, "
                "HH:MM:SS or D-HH:MM:SS"
            )
        for label, value in (
            ("partition", self.partition),
            ("account", self.account),
            ("qos", self.qos),
        ):
            if value is not None and not SCHEDULER_WORD_RE.match(value):
                out.append(
                    f"{label} {value!r} has characters a scheduler does not accept "
                    "(allowed: letters, digits, _ . : + @ -)"
                )
        if self.constraint is not None and not CONSTRAINT_RE.match(self.constraint):
            out.append(
                f"constraint {self.constraint!r} is not a Slurm feature expression "
                "(allowed: letters, digits, _ . - & | , [ ] ( ) *)"
            )
        for key in self.env:
            if not ENV_NAME_RE.match(str(key)):
                out.append(f"environment variable name {key!r} is not a valid shell name")
        for key, value in self.env.items():
            if "\0" in str(value):
                out.append(f"environment variable {key!r} contains a NUL byte")
        for item in self.overrides:
            key, sep, _ = str(item).partition("=")
            if not sep or not OVERRIDE_KEY_RE.match(key):
                out.append(f"--set {item!r} must look like key=value (key: letters, digits, _ .)")
        # Paths reach #SBATCH-free shell lines (quoted) and YAML/JSON (serialized): anything
        # is fine except newlines and NUL, which no scheduler log/line format survives.
        for label, value in (
            ("data dir", self.data_dir),
            ("output dir", self.output_dir),
            ("config", self.config),
            ("code dir", self.code_dir),
            ("python", self.python),
            ("image", self.image),
        ):
            if value is not None and ("\n" in value or "\r" in value or "\0" in value):
                out.append(f"{label} {value!r} contains a newline or NUL byte, which is not allowed")
        for value in [*self.args, *self.scheduler_args]:
            if "\0" in str(value):
                out.append(f"argument {value!r} contains a NUL byte")
        if self.task in ("train", "eval") and not self.data_dir:
            out.append(f"a {self.task} job needs --data-dir")
        if self.task == "train" and not self.output_dir:
            out.append("a train job needs --output-dir")
        if self.task == "export" and self.world_size != 1:
            out.append(f"an export job runs one process, not {self.world_size}: use one device")
        return out

    def validate(self) -> JobSpec:
        """Raise `SpecError` listing every problem; return self when valid."""
        problems = self.problems()
        if problems:
            raise SpecError(problems)
        return self

    # ---- (de)serialization -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (the job store and job files use it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        """Build from a dict, rejecting unknown keys with the list of known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(
                [f"unknown job spec field {k!r}; known fields: {', '.join(sorted(known))}"
                 for k in unknown]
            )
        shapes = {"overrides": list, "args": list, "scheduler_args": list, "env": dict,
                  "backend_options": dict}
        wrong = [f"job spec field {k!r} must be a {t.__name__}, got {type(data[k]).__name__}"
                 for k, t in shapes.items() if k in data and not isinstance(data[k], t)]
        if wrong:
            raise SpecError(wrong)
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> JobSpec:
        """Load a YAML job file (`--file job.yaml`): a mapping of JobSpec fields."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise SpecError([f"job file {str(path)!r} cannot be read: {err}"]) from err
        if not isinstance(data, dict):
            raise SpecError([f"job file {str(path)!r} must be a mapping of job spec fields"])
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> JobSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)
