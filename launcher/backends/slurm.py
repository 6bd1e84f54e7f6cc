"""Slurm: `sbatch --parsable` a rendered script; squeue/scontrol (sacct when present) for state.

GPU and CPU jobs run one `msrun` per node under `srun` (one task per node, holding the CPUs of all
its ranks); Ascend jobs build a rank table at start and run one process per card, each taking its
rank and card from its own server's entry of the table. Preemption: `--requeue` plus
`--signal=B:USR1@<signal_seconds>`; the script passes the signal to the ranks (they save and
exit with the contract's REQUEUE_EXIT_CODE) and requeues itself until `max_restarts`. Paths are
those of this machine, which is assumed to share its filesystem with the nodes (as Slurm
clusters do for home and project dirs); `submit` copies the code into the job dir, so a requeued
run executes what was submitted. With `--image`, the ranks run inside the image through the
cluster's container runtime. Nodes are known by the address Slurm reaches them at (NodeAddr),
never by what their host names resolve to.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.ascend import CHIPS, STRICT_CHIP
from launcher.backends import base
from launcher.backends.base import Backend, BackendError, JobStatus, RenderedJob
from launcher.backends.slurm_state import BackoffPoll, job_status, query_jobs
from launcher.options import int_range, matches, only_with_image, option
from launcher.rank_logs import iter_rank_logs, job_messages
from launcher.spec import JobSpec
from launcher.templating import render_template
from resnest.contract import DEVICE_KIND_ENV, REQUEUE_EXIT_CODE, REQUEUE_MARKER_ENV

if TYPE_CHECKING:
    from launcher.store import JobRecord

JOB_DIR_PLACEHOLDER = "{job_dir}"
# `rlaunch cancel` leaves this file in the job (or trial) folder before it calls scancel, so the
# batch script's TERM handler stops instead of requeueing.
CANCELLED_MARK = "cancelled"
HEADER = "Rendered by rlaunch (slurm backend). Edit the job spec, not this file."

# CPUs per GPU/card when Slurm cannot tell (no sinfo at render time): fits the usual 8-device
# node of 32 cores or more.
DEFAULT_CPUS_PER_DEVICE = 4
GPU_REQUESTS: tuple[str, ...] = ("gpus-per-node", "gres")
CONTAINER_RUNTIMES: tuple[str, ...] = ("pyxis", "apptainer", "runc")
# Where the images of docker/ install the code (/opt/venv/resnest is the package).
IMAGE_CODE_DIR = "/opt/venv"
# What an Ascend container needs from its host: the Ascend Docker runtime's own mount list
# (mind-cluster component/ascend-docker-runtime/build/scripts/base.list), the install info and
# the device IP file. Apptainer binds /dev whole by default, so the card devices need no bind.
# Only those present on the node are bound (Apptainer fails the container on a missing one).
ASCEND_HOST_PATHS: tuple[str, ...] = (
    "/usr/local/Ascend/driver/lib64", "/usr/local/Ascend/driver/include",
    "/usr/local/Ascend/driver/version.info", "/usr/local/dcmi", "/usr/local/bin/npu-smi",
    "/usr/local/sbin/npu-smi", "/var/queue_schedule", "/etc/ascend_install.info",
)
# Seconds the other nodes' msrun may run on once one node's has ended (srun --wait).
SURVIVOR_WAIT_SECONDS = 120
# The package a job runs (code_dir/resnest): copied into the job dir at submit.
CODE_PACKAGE = "resnest"
# msrun's wait for every node to join (default 600 s): container jobs start after each node has
# pulled and unpacked the image, which on one node without a cached copy can take longer.
CONTAINER_CLUSTER_TIME_OUT = 1800
# Files the Ascend steps run on the nodes (standard library only): shipped in the job dir.
NODE_HELPERS: tuple[str, ...] = ("backends/slurm_rank.py", "rank_entry.py")


# sbatch options the rendered job sets itself (long name -> the rlaunch flag that sets it, or why
# it cannot be given): a `--scheduler-arg` on the sbatch command line would beat the script's
# `#SBATCH` line and contradict msrun's world size, the job dir layout or the requeue logic.
OWNED_SBATCH_OPTIONS: dict[str, str] = {
    "--nodes": "use --nodes", "--ntasks": "one rank per device: use --gpus/--ascend/--cpus",
    "--ntasks-per-node": "one rank per device: use --gpus/--ascend/--cpus",
    "--ntasks-per-socket": "one rank per device: use --gpus/--ascend/--cpus",
    "--ntasks-per-core": "one rank per device: use --gpus/--ascend/--cpus",
    "--ntasks-per-gpu": "one rank per device: use --gpus/--ascend/--cpus",
    "--cpus-per-task": "use --opt cpus_per_gpu", "--cpus-per-gpu": "use --opt cpus_per_gpu",
    "--gpus": "use --gpus", "--gpus-per-node": "use --gpus",
    "--gpus-per-task": "use --gpus", "--gpus-per-socket": "use --gpus",
    "--gres": "use --gpus/--ascend (and --opt gpu_request, --opt ascend_gres)",
    "--array": "job arrays share one job dir and restart budget: submit one job per setting",
    "--het-group": "heterogeneous jobs are not supported",
    "--output": "rlaunch keeps the job's output in its job dir (rlaunch logs)",
    "--error": "rlaunch keeps the job's output in its job dir (rlaunch logs)",
    "--input": "the job reads no stdin",
    "--open-mode": "rlaunch appends every run's output to one file",
    "--chdir": "the job runs in its job dir", "--job-name": "use --name",
    "--time": "use --time", "--partition": "use --partition", "--account": "use --account",
    "--qos": "use --qos", "--constraint": "use --constraint",
    "--signal": "use --opt signal_seconds", "--requeue": "rlaunch always requeues",
    "--no-requeue": "use --max-restarts 0", "--parsable": "rlaunch submit passes it",
    "--wait": "rlaunch submit returns at once; follow with rlaunch logs -f",
    "--wrap": "rlaunch renders the batch script", "--test-only": "use --dry-run",
    "--mem": "use --opt mem", "--mem-per-cpu": "use --opt mem (per node)",
    "--mem-per-gpu": "use --opt mem (per node)",
}
# Their short forms (sbatch.1).
OWNED_SHORT_OPTIONS: dict[str, str] = {
    "N": "--nodes", "n": "--ntasks", "c": "--cpus-per-task", "G": "--gpus", "a": "--array",
    "o": "--output", "e": "--error", "i": "--input", "D": "--chdir", "J": "--job-name",
    "t": "--time", "p": "--partition", "A": "--account", "q": "--qos", "C": "--constraint",
    "W": "--wait",
}


# sbatch reads SBATCH_* variables over the script's #SBATCH lines (sbatch.1, INPUT ENVIRONMENT
# VARIABLES). Those that would change what the script sets are left out of sbatch's environment:
# always for what the job derives, and for the scheduler fields when the spec sets them (else a
# site's or user's default partition/account still applies).
DERIVED_SBATCH_ENV: tuple[str, ...] = (
    "SBATCH_ARRAY_INX", "SBATCH_CPUS_PER_GPU", "SBATCH_DISTRIBUTION", "SBATCH_ERROR",
    "SBATCH_EXCLUSIVE", "SBATCH_GPUS", "SBATCH_GPUS_PER_NODE", "SBATCH_GPUS_PER_TASK",
    "SBATCH_GRES", "SBATCH_INPUT", "SBATCH_JOB_NAME", "SBATCH_NO_REQUEUE", "SBATCH_OPEN_MODE",
    "SBATCH_OUTPUT", "SBATCH_OVERCOMMIT", "SBATCH_REQUEUE", "SBATCH_SIGNAL", "SBATCH_WAIT",
    "SBATCH_USE_MIN_NODES", "SBATCH_CONTAINER",
)
FIELD_SBATCH_ENV: dict[str, str] = {
    "partition": "SBATCH_PARTITION", "account": "SBATCH_ACCOUNT", "qos": "SBATCH_QOS",
    "constraint": "SBATCH_CONSTRAINT", "time_limit": "SBATCH_TIMELIMIT",
}


def holds_whole_nodes(spec: JobSpec) -> bool:
    """Ascend jobs hold whole servers: all 8 cards, or fewer with --exclusive."""
    return spec.device_kind == "ascend"


def sbatch_environment(spec: JobSpec, environ: dict[str, str]) -> dict[str, str]:
    """`environ` without the SBATCH_* variables that would override the rendered script."""
    dropped = set(DERIVED_SBATCH_ENV)
    if holds_whole_nodes(spec) or spec.backend_options.get("mem") is not None:
        dropped |= {"SBATCH_MEM_PER_NODE", "SBATCH_MEM_PER_CPU", "SBATCH_MEM_PER_GPU"}
    dropped |= {name for field, name in FIELD_SBATCH_ENV.items() if getattr(spec, field)}
    return {k: v for k, v in environ.items() if k not in dropped}


def snapshot_code(code_dir: Path, dest: Path) -> None:
    """Copy the job's package (code_dir/resnest, small) into the job dir, where the script runs
    it: a requeued run must not pick up a checkout changed since submit."""
    source = code_dir / CODE_PACKAGE
    if not source.is_dir():
        raise BackendError(f"code dir {str(code_dir)!r} has no {CODE_PACKAGE}/ package to run")
    try:
        shutil.copytree(source, dest / CODE_PACKAGE,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    except OSError as err:
        raise BackendError(f"cannot copy {source} into the job dir: {err}") from None


def scheduler_arg_problems(args: list[str]) -> list[str]:
    """One line per `--scheduler-arg` that is no sbatch option or sets what the job sets itself.
    getopt takes an unambiguous prefix of a long option, so a prefix of an owned one counts."""
    out = []
    for arg in args:
        if not arg.startswith("-") or arg in ("-", "--"):
            out.append(f"--scheduler-arg {arg!r} must be an sbatch option starting with '-' "
                       "(one option, its value after '=', e.g. --exclude=node01)")
            continue
        if arg.startswith("--"):
            word = arg.split("=", 1)[0]
            owned = [name for name in OWNED_SBATCH_OPTIONS if name.startswith(word)]
            owned = [word] if word in OWNED_SBATCH_OPTIONS else owned
        else:
            owned = [OWNED_SHORT_OPTIONS[arg[1]]] if arg[1] in OWNED_SHORT_OPTIONS else []
        if owned:
            out.append(f"--scheduler-arg {arg!r} is {owned[0]}, which the job sets or refuses "
                       f"itself: {OWNED_SBATCH_OPTIONS[owned[0]]}")
    return out


def image_for_runtime(image: str, runtime: str) -> str:
    """`--image` as the container runtime reads it. pyxis takes enroot's `[REGISTRY#]IMAGE[:TAG]`
    or a path (pyxis README `--container-image`): without `#`, enroot pulls from Docker Hub, and
    `host:5000/x` does not parse at all (enroot src/docker.sh), so the registry moves before a
    `#`. Apptainer reads a bare reference as a file path (apptainer-exec(1)): it needs
    `docker://`. Paths (.sqsh, .sif, a sandbox or bundle dir) pass unchanged."""
    if image.startswith("/"):
        return image
    registry, sep, rest = image.partition("#")
    if not sep:
        first, slash, after = image.partition("/")
        # Docker's rule (distribution/reference): the first component is a registry when it
        # has a '.' or ':' or is localhost; otherwise the whole reference is Docker Hub's.
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, rest = first, after
        else:
            registry, rest = "", image
    if runtime == "pyxis":
        return f"{registry}#{rest}" if registry else rest
    return f"docker://{registry}/{rest}" if registry else f"docker://{rest}"


def _run(argv: list[str], timeout: float = 30,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                              env=env)
    except FileNotFoundError:
        raise BackendError(f"{argv[0]} is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"{argv[0]} did not answer within {timeout:.0f} s") from None


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _parse_gres_count(gres: str, name: str) -> int:
    """Count of gres `name` in sinfo's %G text: `gpu:8`, `gpu:a100:8(S:0-1)`, `gpu:8,npu:8`."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == name and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def cpus_per_device_from_sinfo(gres: str, partition: str | None) -> int | None:
    """The CPUs each device of gres `gres` can have on the smallest node that has it (the node's
    CPUs divided by its devices, at least 1), in `partition` or else the default partition
    (sinfo marks it with '*'), where sbatch puts a job that names none; None when sinfo cannot
    tell. Cores a site reserves (CoreSpecCount) are not subtracted: sinfo does not show them."""
    argv = ["sinfo", "-h", "-N", "-o", "%c|%G|%P"] + (["-p", partition] if partition else [])
    try:
        result = _run(argv, timeout=10)
    except BackendError:
        return None
    if result.returncode != 0:
        return None
    rows = [line.strip().split("|") for line in result.stdout.splitlines()]
    rows = [r for r in rows if len(r) == 3]
    if not partition and any(r[2].endswith("*") for r in rows):
        rows = [r for r in rows if r[2].endswith("*")]
    shares = []
    for cpus, node_gres, _ in rows:
        count = _parse_gres_count(node_gres, gres)
        if cpus.isdigit() and count:
            shares.append(max(1, int(cpus) // count))
    return min(shares) if shares else None


# ---- what Slurm users set besides the job's shape (the checks of the backend options) -------

MEM_RE = re.compile(r"0|[1-9][0-9]{0,9}[KMGT]?")
HOSTLIST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-\[\],]{0,1023}")
RESERVATION_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,:+@-]{0,255}")
GPU_TYPE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
MAIL_USER_RE = re.compile(r"[A-Za-z0-9_.+-]{1,64}(@[A-Za-z0-9.-]{1,253})?")
# sbatch.1 --dependency: TYPE:JOB_ID[:JOB_ID...] or singleton, joined by ',' (all) or '?' (any).
DEPENDENCY_RE = re.compile(
    r"(singleton|(after|afterany|afterok|afternotok|aftercorr|afterburstbuffer)"
    r"(:[0-9]{1,10}(_[0-9]{1,10})?(\+[0-9]{1,6})?)+)"
    r"([,?](singleton|(after|afterany|afterok|afternotok|aftercorr|afterburstbuffer)"
    r"(:[0-9]{1,10}(_[0-9]{1,10})?(\+[0-9]{1,6})?)+)){0,63}")
# sbatch.1 --mail-type.
MAIL_TYPES: tuple[str, ...] = (
    "NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "INVALID_DEPEND", "STAGE_OUT",
    "TIME_LIMIT", "TIME_LIMIT_90", "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS",
)
# srun options the rank steps set themselves (long name -> short form).
OWNED_SRUN_OPTIONS: dict[str, str] = {
    "--nodes": "-N", "--ntasks": "-n", "--ntasks-per-node": "", "--cpus-per-task": "-c",
    "--kill-on-bad-exit": "-K", "--wait": "-W", "--distribution": "-m", "--output": "-o",
    "--error": "-e", "--input": "-i", "--chdir": "-D", "--jobid": "", "--label": "-l",
    "--container-image": "", "--container-mounts": "", "--container-workdir": "",
    "--container-env": "", "--gpus": "-G", "--gres": "", "--het-group": "",
}


def srun_arg_check(arg: str) -> str | None:
    """An srun option (value after '=') that the rank steps do not set themselves."""
    if not arg.startswith("-") or arg in ("-", "--"):
        return "one srun option starting with '-' (its value after '=')"
    word = arg.split("=", 1)[0]
    if arg.startswith("--"):
        owned = word in OWNED_SRUN_OPTIONS or any(o.startswith(word) for o in OWNED_SRUN_OPTIONS)
    else:
        owned = word[:2] in {s for s in OWNED_SRUN_OPTIONS.values() if s}
    if owned:
        return ("an srun option the job does not set itself (not --nodes, --ntasks*, "
                "--cpus-per-task, --kill-on-bad-exit, --wait, --distribution, --output, --error, "
                "--chdir, --container-*, --gpus, --gres)")
    return None


def setup_line_check(line: str) -> str | None:
    return None if line.strip() else "a non-empty shell line"


def sbatch_request_args(exclude: str | None, reservation: str | None, comment: str | None,
                        mail_types: list[str], mail_user: str | None,
                        dependency: str | None) -> list[str]:
    """The sbatch options a user sets on top of the job (on its command line, where a value
    with spaces needs no #SBATCH quoting and no SBATCH_* variable overrides it)."""
    out = []
    for flag, value in (("--exclude", exclude), ("--reservation", reservation),
                        ("--comment", comment), ("--mail-user", mail_user),
                        ("--dependency", dependency)):
        if value:
            out.append(f"{flag}={value}")
    if mail_types:
        out.append(f"--mail-type={','.join(mail_types)}")
    return out


def _bind_path(value: str) -> str | None:
    """hccn.conf is bind-mounted into containers: mount lists split on ',' and ':'."""
    if value.startswith("/") and not any(c in value for c in ",:"):
        return None
    return "an absolute path without ',' or ':'"


@dataclass(frozen=True)
class SlurmOptions:
    """The Slurm backend's `--opt` options (launcher/options.py reads these declarations)."""

    signal_seconds: int = option(
        "Seconds before the time limit to checkpoint and requeue.", 120,
        check=int_range(1, 65535))
    hccn_conf: str = option(
        "Path of hccn.conf (the cards' IP addresses) on the Ascend nodes.", "/etc/hccn.conf",
        kinds=("ascend",), check=_bind_path)
    ascend_gres: str = option(
        "Gres name of the Ascend cards on this cluster; none for sites that schedule Ascend "
        "nodes without a gres (the job then asks for whole nodes, --exclusive).", "npu",
        kinds=("ascend",),
        check=matches(re.compile(r"[A-Za-z0-9_]{1,64}"), "a plain gres name like npu"))
    cpus_per_gpu: int | None = option(
        "CPUs for each GPU/Ascend rank (sbatch --cpus-per-task is this times the devices of a "
        "msrun task).", kinds=("gpu", "ascend"), check=int_range(1, 1024),
        default_text=f"node CPUs / devices from sinfo, else {DEFAULT_CPUS_PER_DEVICE}")
    gpu_request: str = option(
        "How GPUs are asked for: gpus-per-node (select/cons_tres) or gres.", "gpus-per-node",
        choices=GPU_REQUESTS, kinds=("gpu",))
    container_runtime: str | None = option(
        "With --image: pyxis (srun --container-image), apptainer (apptainer exec) or runc "
        "(an OCI bundle dir on a shared path; root only).", choices=CONTAINER_RUNTIMES,
        use=only_with_image, default_text="pyxis with --image")
    mem: str | None = option(
        "Memory per node (sbatch --mem), e.g. 64G; 0 asks for all of each node's memory.",
        check=matches(MEM_RE, "a size like 64G or 512000M, or 0 (all of the node's memory)"),
        default_text="0 for Ascend jobs (whole nodes), else the site's DefMemPerCPU/GPU")
    gpu_type: str | None = option(
        "GPU type, the gres type of the site (e.g. a100): --gpus-per-node=TYPE:N.",
        kinds=("gpu",), check=matches(GPU_TYPE_RE, "a gres type like a100"))
    exclude: str | None = option(
        "Nodes to leave out (sbatch --exclude), e.g. node[01-04].",
        check=matches(HOSTLIST_RE, "a node list like node[01-04],gpu7"))
    reservation: str | None = option(
        "Reservation to run in (sbatch --reservation).",
        check=matches(RESERVATION_RE, "a reservation name (letters, digits, _ . , : + @ -)"))
    comment: str | None = option(
        "Comment on the job (sbatch --comment; squeue and sacct show it).",
        check=lambda text: None if 0 < len(text) <= 1024 else "1 to 1024 characters")
    mail_type: list[str] = option(
        "When Slurm mails (sbatch --mail-type), e.g. END,FAIL.", default_factory=list,
        check=lambda kind: None if kind in MAIL_TYPES else f"one of {', '.join(MAIL_TYPES)}")
    mail_user: str | None = option(
        "Who Slurm mails (sbatch --mail-user).",
        check=matches(MAIL_USER_RE, "a user name or mail address"))
    dependency: str | None = option(
        "Start after other jobs (sbatch --dependency), e.g. afterok:1234 or singleton.",
        check=matches(DEPENDENCY_RE, "TYPE:JOB_ID[:JOB_ID...] (after, afterany, afterok, "
                                     "afternotok, aftercorr) or singleton, joined by , or ?"))
    setup: list[str] = option(
        "Shell lines the batch script runs before the ranks start (module load ..., source "
        "...); a line that fails ends the job. Lines with commas: give them in a job file.",
        default_factory=list, check=setup_line_check)
    srun_args: list[str] = option(
        "Extra srun options for the rank steps, e.g. --mpi=pmix (not those the job sets "
        "itself).", default_factory=list, check=srun_arg_check)


# What sbatch --parsable prints as an id (a job, or an array task JOB_TASK).
SLURM_JOB_ID_RE = re.compile(r"[1-9][0-9]{0,9}(_[0-9]{1,10})?")


def slurm_job_id(record: JobRecord) -> str:
    """The record's Slurm job id, checked: a damaged record never names anything else to
    scancel or scontrol."""
    job_id = record.backend_id or ""
    if not SLURM_JOB_ID_RE.fullmatch(job_id):
        raise BackendError(f"job {record.id}: its backend id {job_id!r} is not a Slurm job id; "
                           "the record is damaged")
    return job_id


class SlurmBackend(Backend):
    """Submit to the Slurm cluster this machine is a login node of."""

    name = "slurm"
    options_type = SlurmOptions

    def problems(self, spec: JobSpec, opts: SlurmOptions) -> list[str]:
        out = super().problems(spec, opts)
        out += base.signal_window_problems(spec, "signal_seconds", opts.signal_seconds,
                                           "the job would be told to checkpoint")
        out += scheduler_arg_problems([str(a) for a in spec.scheduler_args])
        runtime = opts.container_runtime
        if runtime == "runc" and spec.image and not spec.image.startswith("/"):
            out.append(f"--image {spec.image!r}: with container_runtime=runc, give the absolute "
                       "path of an OCI bundle (a dir with config.json and rootfs/)")
        if runtime == "runc" and spec.image and spec.image.startswith("/") and not (
                Path(spec.image) / "config.json").is_file():
            out.append(f"--image {spec.image!r} is not an OCI bundle here (no config.json); make "
                       "one with `umoci unpack` (see docs/slurm.md)")
        if runtime:
            for path in (spec.data_dir, spec.output_dir, spec.config):
                if path and ("," in path or ":" in path):
                    out.append(f"path {path!r} has ',' or ':', which container mount lists "
                               "cannot carry; use another directory")
        if runtime == "pyxis" and spec.device_kind == "ascend":
            out.append("container_runtime=pyxis runs the whole srun task in the image, which "
                       "has no rank table lookup: use apptainer for Ascend jobs")
        if runtime == "runc" and os.geteuid() != 0:
            # runc as another user needs rootless mode (a user namespace), and its own cgroup
            # takes the ranks out of Slurm's step cgroup (Slurm containers.shtml).
            out.append("container_runtime=runc runs only as root (this project's test "
                       "clusters); use apptainer or pyxis")
        if runtime == "runc" and spec.device_kind != "cpu":
            out.append("container_runtime=runc passes no GPUs/NPUs: use it for --cpus jobs")
        return out

    def prepare(self, spec: JobSpec, opts: SlurmOptions) -> tuple[JobSpec, SlurmOptions]:
        """This machine's paths (the nodes share its filesystem), the CPUs per device that the
        cluster's nodes can give, and the image's own code path for container jobs. What is
        filled in is written into the spec's options too, so the job record shows it."""
        changes: dict[str, Any] = {}
        if spec.image and opts.container_runtime is None:
            changes["container_runtime"] = "pyxis"
        if spec.device_kind != "cpu" and opts.cpus_per_gpu is None:
            gres = "gpu" if spec.device_kind == "gpu" else opts.ascend_gres
            found = cpus_per_device_from_sinfo(gres, spec.partition)
            changes["cpus_per_gpu"] = DEFAULT_CPUS_PER_DEVICE if found is None else found
        if changes:
            opts = dataclasses.replace(opts, **changes)
            spec = spec.replace(backend_options={**spec.backend_options, **changes})
        if opts.container_runtime and spec.image:
            # The ranks run the image's code (code_dir); `python` stays this machine's, for the
            # steps that run on the nodes outside the image (rank table, runc's bundle).
            spec = spec.replace(code_dir=spec.code_dir or IMAGE_CODE_DIR)
        return base.with_paths_of_this_machine(spec), opts

    def template_context(self, spec: JobSpec, opts: SlurmOptions) -> dict[str, Any]:
        """The data the sbatch template receives (no logic left for the template)."""
        ascend = spec.device_kind == "ascend"
        gpu = spec.device_kind == "gpu"
        per_node = spec.devices_per_node
        chip = CHIPS[spec.ascend_chip or STRICT_CHIP]
        cpus_per_device = opts.cpus_per_gpu or DEFAULT_CPUS_PER_DEVICE
        # The msrun step is one task per node holding every CPU of its ranks (a CPU job's ranks
        # are one CPU each); Ascend runs one task per card. srun is told the same count: since
        # Slurm 22.05 it no longer inherits --cpus-per-task from the allocation.
        if ascend:
            cpus_per_task = cpus_per_device
        elif gpu:
            cpus_per_task = cpus_per_device * per_node
        else:
            cpus_per_task = per_node
        gres_request = opts.gpu_request == "gres"
        python = spec.python or "python"
        code_dir = spec.code_dir or "."
        runtime = opts.container_runtime if spec.image else None
        # A part of an Ascend server: the cards are named by number (ring 0-3 or 4-7), which only
        # the whole node guarantees to be ours (a gres count does not say which); and all of its
        # cards are asked for, since an --exclusive job's steps get only the GRES it asked for
        # (srun.1 --gres), and ConstrainDevices would hide the named cards from the ranks.
        part_of_server = ascend and per_node < chip.cards_per_server
        ascend_request = chip.cards_per_server if part_of_server else per_node
        gpu_type = f"{opts.gpu_type}:" if opts.gpu_type else ""
        # Apptainer's image is read-only: the ranks run in a job dir folder, the script by path.
        work_dir = "$JOB_DIR/work" if runtime == "apptainer" else None
        script = f"{code_dir}/{spec.script}" if work_dir else spec.script
        return {
            "header": HEADER,
            "name": spec.name,
            "nodes": spec.nodes,
            "ntasks_per_node": per_node if ascend else 1,
            "cpus_per_task": cpus_per_task,
            "threads_per_rank": cpus_per_device if spec.device_kind != "cpu" else 1,
            "gpus_per_node": f"{gpu_type}{per_node}" if gpu and not gres_request else None,
            "gres": (f"{opts.ascend_gres}:{ascend_request}" if ascend and opts.ascend_gres != "none"
                     else f"gpu:{gpu_type}{per_node}" if gpu and gres_request else None),
            "exclusive": part_of_server or (ascend and opts.ascend_gres == "none"),
            # A job holding whole nodes asks for all their memory (sbatch.1 --exclusive: the job
            # "is only allocated as much memory as it requested"; --mem=0 is all of it);
            # otherwise a site's DefMemPerCPU/GPU applies.
            "mem": opts.mem if opts.mem is not None else "0" if holds_whole_nodes(spec) else None,
            "time_limit": spec.time_limit,
            "partition": spec.partition,
            "account": spec.account,
            "qos": spec.qos,
            "constraint": spec.constraint,
            "signal_seconds": opts.signal_seconds,
            "max_restarts": spec.max_restarts,
            "requeue_exit_code": REQUEUE_EXIT_CODE,
            "requeue_marker_env": REQUEUE_MARKER_ENV,
            "cancelled_mark": CANCELLED_MARK,
            "device_kind_env": DEVICE_KIND_ENV,
            "env": dict(spec.env),
            "bin_dir": str(Path(python).parent),
            "python": python,
            "code_dir": code_dir,
            "code_package": CODE_PACKAGE,
            "device_kind": spec.device_kind,
            "device_ids": spec.visible_device_ids,
            "hccn_conf": opts.hccn_conf,
            "world_size": spec.world_size,
            "local_workers": per_node,
            "master_port": spec.master_port,
            "script": script,
            "work_dir": work_dir,
            "survivor_wait_seconds": SURVIVOR_WAIT_SECONDS,
            "setup_lines": list(opts.setup),
            "srun_extra_words": shlex.join(opts.srun_args),
            "cluster_time_out": CONTAINER_CLUSTER_TIME_OUT if runtime else None,
            # Variables set here reach the ranks over the image's own values.
            "image_env_prefix": "APPTAINERENV_" if runtime == "apptainer" else None,
            "script_args": spec.script_args(),
            "runtime": runtime,
            "msrun": f"{code_dir}/bin/msrun" if runtime else "msrun",
            "rank_python": "python" if runtime else python,
            # Mount sources must exist before the container starts (the trainer would make it
            # inside, where nobody sees it).
            "make_dirs": [spec.output_dir] if runtime and spec.output_dir else [],
            **self._container_context(spec, opts, runtime, python, code_dir),
        }

    @staticmethod
    def _container_context(spec: JobSpec, opts: SlurmOptions, runtime: str | None, python: str,
                           code_dir: str) -> dict[str, Any]:
        """srun flags and the command prefix that put a rank step inside the image, as shell
        words (quoted here: each may end in the job folder as submitted, "$SUBMITTED", known only at run time)."""
        if runtime is None:
            return {"container_srun_words": "", "container_exec_words": "",
                    "helper_exec_words": "", "host_paths": []}
        image = image_for_runtime(str(spec.image), runtime)
        # Data, outputs and the job dir (logs, rank table) at the same paths inside.
        binds = [p for p in (spec.data_dir, spec.output_dir, spec.config) if p]
        ascend = spec.device_kind == "ascend"
        hccn = opts.hccn_conf
        none = {"container_srun_words": "", "container_exec_words": "", "helper_exec_words": "",
                "host_paths": []}
        if runtime == "pyxis":
            # pyxis (NVIDIA/pyxis README): srun --container-image/--container-mounts SRC:DST[,...];
            # enroot's hooks pass in the GPUs Slurm gave the step. --container-env: the job's
            # --env values win over the image's (otherwise the image's own value is kept).
            mounts = ",".join(f"{p}:{p}" for p in binds)
            words = [shlex.quote(f"--container-image={image}"),
                     shlex.quote(f"--container-mounts={mounts},") + '"$SUBMITTED:$SUBMITTED"',
                     shlex.quote(f"--container-workdir={code_dir}")]
            if spec.env:
                words.append(shlex.quote(f"--container-env={','.join(spec.env)}"))
            return {**none, "container_srun_words": " ".join(words)}
        if runtime == "apptainer":
            # apptainer exec --nv (GPUs) --bind SRC[,SRC...] (Apptainer user guide, "Bind
            # paths and mounts"); the paths are the same inside. Ascend: the host paths of the
            # node that exist ($host_binds, from the batch script) and hccn.conf.
            argv = ["apptainer", "exec", *(["--nv"] if spec.device_kind == "gpu" else [])]
            bind_list = [*binds, hccn] if ascend else binds
            bind = shlex.quote(",".join(bind_list) + ",") + '"$SUBMITTED' + (
                '$host_binds"' if ascend else '"')
            words = [shlex.join(argv), "--bind", bind, '--pwd "$JOB_DIR/work"',
                     shlex.quote(image)]
            exec_words = " ".join(words)
            return {**none, "container_exec_words": exec_words,
                    "helper_exec_words": exec_words if ascend else "",
                    "host_paths": list(ASCEND_HOST_PATHS) if ascend else []}
        # runc: an OCI bundle (config.json + rootfs/), run in the node's own network and pid
        # namespaces so msrun's ranks reach each other and slurmstepd tracks and signals them.
        argv = [python, "-m", "launcher.backends.slurm_container", "runc", "--bundle", image,
                "--cwd", code_dir]
        for path in binds:
            argv += ["--bind", path]
        words = [shlex.join(argv), '--bind "$SUBMITTED"', "--"]
        return {**none, "container_exec_words": " ".join(words)}

    def render(self, spec: JobSpec, opts: SlurmOptions) -> RenderedJob:
        context = self.template_context(spec, opts)
        script = render_template("slurm/sbatch.sh.j2", **context)
        command = [
            "sbatch",
            "--parsable",
            f"--chdir={JOB_DIR_PLACEHOLDER}",
            f"--output={JOB_DIR_PLACEHOLDER}/slurm-%j.out",
            *sbatch_request_args(opts.exclude, opts.reservation, opts.comment,
                                 list(opts.mail_type), opts.mail_user, opts.dependency),
            *[str(a) for a in spec.scheduler_args],
            f"{JOB_DIR_PLACEHOLDER}/sbatch.sh",
        ]
        files = {"sbatch.sh": script}
        if spec.device_kind == "ascend":
            package = Path(__file__).resolve().parent.parent
            for helper in NODE_HELPERS:
                files[Path(helper).name] = (package / helper).read_text(encoding="utf-8")
        return RenderedJob(files=files, submit_command=command)

    def submit(self, spec: JobSpec, rendered: RenderedJob, job_dir: Path) -> str:
        if not (spec.image and spec.backend_options.get("container_runtime")):
            snapshot_code(Path(spec.code_dir or "."), job_dir / "code")
        argv = [a.replace(JOB_DIR_PLACEHOLDER, str(job_dir)) for a in rendered.submit_command]
        result = _run(argv, timeout=60, env=sbatch_environment(spec, dict(os.environ)))
        if result.returncode != 0:
            raise BackendError(f"sbatch refused the job: {_first_line(result.stderr)}")
        job_id = result.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise BackendError(f"sbatch printed no job id: {_first_line(result.stdout)}")
        return job_id

    # ---- state ---------------------------------------------------------------------------------

    def status(self, record: JobRecord) -> JobStatus:
        slurm_job_id(record)  # a damaged record is an error here, never a guess
        return self.statuses([record])[record.id]

    def statuses(self, records: list[JobRecord]) -> dict[str, JobStatus]:
        """One squeue (and at most one sacct) call for all the records' jobs."""
        ours = [r for r in records if SLURM_JOB_ID_RE.fullmatch(r.backend_id or "")]
        answer = query_jobs(r.backend_id or "" for r in ours)
        return {r.id: job_status(r.backend_id or "", Path(r.job_dir), answer) for r in ours}

    def logs(
        self, record: JobRecord, rank: int | None = None, follow: bool = False
    ) -> Iterator[str]:
        job_dir = Path(record.job_dir)
        poll = BackoffPoll(lambda: self.status(record))
        yield from iter_rank_logs(job_dir / "logs", rank, follow, poll.finished)
        if rank is None:
            yield from job_messages(sorted(job_dir.glob('slurm-*.out')))

    def fetch_logs(self, record: JobRecord, dest: Path) -> list[Path]:
        return base.copy_job_dir_logs(record, dest)

    def cancel(self, record: JobRecord) -> None:
        result = _run(["scancel", "--", slurm_job_id(record)])
        if result.returncode != 0:
            message = _first_line(result.stderr)
            if "already completing or completed" in message or "Invalid job id" in message:
                return
            raise BackendError(f"scancel failed: {message}")
