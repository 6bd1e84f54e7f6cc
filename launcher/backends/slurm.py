"""Slurm: `sbatch --parsable` a rendered script; squeue/scontrol (sacct when present) for state.

GPU and CPU jobs run one `msrun` per node under `srun` (one task per node, holding the CPUs of all
its ranks); Ascend jobs build a rank table at start and run one process per card, each taking its
rank and card from its own server's entry of the table. Preemption: `--requeue` plus
`--signal=B:USR1@<signal_seconds>`; the script passes the signal to the ranks (they save and
exit with the contract's REQUEUE_EXIT_CODE) and requeues itself until `max_restarts`. Paths are
those of this machine, which is assumed to share its filesystem with the nodes (as Slurm
clusters do for home and project dirs). With `--image`, the ranks run inside the image through the cluster's container runtime.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.ascend import CHIPS, STRICT_CHIP
from launcher.backends import base
from launcher.backends.base import Backend, BackendError, JobStatus, RenderedJob
from launcher.options import int_range, matches, only_with_image, option
from launcher.rank_logs import iter_rank_logs, job_messages
from launcher.spec import JobSpec
from launcher.templating import render_template
from resnest.contract import DEVICE_KIND_ENV, REQUEUE_EXIT_CODE

if TYPE_CHECKING:
    from launcher.store import JobRecord

JOB_DIR_PLACEHOLDER = "{job_dir}"
SLURM_STATES: dict[str, str] = {
    "PENDING": base.PENDING,
    "CONFIGURING": base.PENDING,
    "RESV_DEL_HOLD": base.PENDING,
    "RUNNING": base.RUNNING,
    "COMPLETING": base.RUNNING,
    "SUSPENDED": base.RUNNING,
    "STAGE_OUT": base.RUNNING,
    "REQUEUED": base.REQUEUED,
    "REQUEUE_FED": base.REQUEUED,
    "REQUEUE_HOLD": base.REQUEUED,
    "PREEMPTED": base.REQUEUED,
    "RESIZING": base.RUNNING,
    "COMPLETED": base.COMPLETED,
    "CANCELLED": base.CANCELLED,
    "FAILED": base.FAILED,
    "TIMEOUT": base.FAILED,
    "NODE_FAIL": base.FAILED,
    "OUT_OF_MEMORY": base.FAILED,
    "BOOT_FAIL": base.FAILED,
    "DEADLINE": base.FAILED,
}
HEADER = "Rendered by rlaunch (slurm backend). Edit the job spec, not this file."

# CPUs per GPU/card when Slurm cannot tell (no sinfo at render time): fits the usual 8-device
# node of 32 cores or more.
DEFAULT_CPUS_PER_DEVICE = 4
GPU_REQUESTS: tuple[str, ...] = ("gpus-per-node", "gres")
CONTAINER_RUNTIMES: tuple[str, ...] = ("pyxis", "apptainer", "runc")
# Where the images of docker/ install the code (/opt/venv/resnest is the package).
IMAGE_CODE_DIR = "/opt/venv"
# What an Ascend container needs from its host: the driver, the card devices, npu-smi and the
# device IP file (Ascend's container docs, "mounting the driver"; the same list the Ascend
# Docker runtime mounts).
ASCEND_HOST_PATHS: tuple[str, ...] = (
    "/usr/local/Ascend/driver", "/usr/local/sbin/npu-smi", "/etc/ascend_install.info",
    "/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc",
)


def _run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
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
    CPUs divided by its devices, at least 1); None when sinfo cannot tell."""
    argv = ["sinfo", "-h", "-N", "-o", "%c|%G"] + (["-p", partition] if partition else [])
    try:
        result = _run(argv, timeout=10)
    except BackendError:
        return None
    if result.returncode != 0:
        return None
    shares = []
    for line in result.stdout.splitlines():
        cpus, _, node_gres = line.strip().partition("|")
        count = _parse_gres_count(node_gres, gres)
        if cpus.isdigit() and count:
            shares.append(max(1, int(cpus) // count))
    return min(shares) if shares else None


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
        "Gres name of the Ascend cards on this cluster.", "npu", kinds=("ascend",),
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
        "(an OCI bundle dir on a shared path).", choices=CONTAINER_RUNTIMES,
        use=only_with_image, default_text="pyxis with --image")


class SlurmBackend(Backend):
    """Submit to the Slurm cluster this machine is a login node of."""

    name = "slurm"
    options_type = SlurmOptions

    def problems(self, spec: JobSpec, opts: SlurmOptions) -> list[str]:
        out = super().problems(spec, opts)
        for arg in spec.scheduler_args:
            if not str(arg).startswith("-"):
                out.append(f"scheduler argument {arg!r} must be an sbatch option starting with '-'")
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
        return {
            "header": HEADER,
            "name": spec.name,
            "nodes": spec.nodes,
            "ntasks_per_node": per_node if ascend else 1,
            "cpus_per_task": cpus_per_task,
            "threads_per_rank": cpus_per_device if spec.device_kind != "cpu" else 1,
            "gpus_per_node": per_node if gpu and not gres_request else None,
            "gres": (f"{opts.ascend_gres}:{per_node}" if ascend
                     else f"gpu:{per_node}" if gpu and gres_request else None),
            # A part of an Ascend server: the cards are named by number (ring 0-3 or 4-7), which
            # only the whole node guarantees to be ours (a gres count does not say which).
            "exclusive": ascend and per_node < chip.cards_per_server,
            "time_limit": spec.time_limit,
            "partition": spec.partition,
            "account": spec.account,
            "qos": spec.qos,
            "constraint": spec.constraint,
            "signal_seconds": opts.signal_seconds,
            "max_restarts": spec.max_restarts,
            "requeue_exit_code": REQUEUE_EXIT_CODE,
            "device_kind_env": DEVICE_KIND_ENV,
            "env": dict(spec.env),
            "bin_dir": str(Path(python).parent),
            "python": python,
            "code_dir": code_dir,
            "device_kind": spec.device_kind,
            "device_ids": spec.visible_device_ids,
            "hccn_conf": opts.hccn_conf,
            "world_size": spec.world_size,
            "local_workers": per_node,
            "master_port": spec.master_port,
            "script": spec.script,
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
        words (quoted here: each may end in the job dir, "$JOB_DIR", known only at run time)."""
        if runtime is None:
            return {"container_srun_words": "", "container_exec_words": ""}
        image = str(spec.image)
        # Data, outputs and the job dir (logs, rank table) at the same paths inside.
        binds = [p for p in (spec.data_dir, spec.output_dir, spec.config) if p]
        ascend = spec.device_kind == "ascend"
        host_paths = [*ASCEND_HOST_PATHS, opts.hccn_conf] if ascend else []
        cards = [f"/dev/davinci{i}" for i in spec.visible_device_ids] if ascend else []
        if runtime == "pyxis":
            # pyxis (NVIDIA/pyxis): srun --container-image/--container-mounts SRC:DST[,...];
            # enroot's hooks pass in the GPUs Slurm gave the step.
            mounts = ",".join(f"{p}:{p}" for p in [*binds, *host_paths, *cards])
            words = [shlex.quote(f"--container-image={image}"),
                     shlex.quote(f"--container-mounts={mounts},") + '"$JOB_DIR:$JOB_DIR"',
                     shlex.quote(f"--container-workdir={code_dir}")]
            return {"container_srun_words": " ".join(words), "container_exec_words": ""}
        if runtime == "apptainer":
            # apptainer exec --nv (GPUs) --bind SRC[,SRC...] (Apptainer user guide, "Bind
            # paths and mounts"); the paths are the same inside.
            argv = ["apptainer", "exec", *(["--nv"] if spec.device_kind == "gpu" else [])]
            bind = shlex.quote(",".join([*binds, *host_paths, *cards]) + ",") + '"$JOB_DIR"'
            words = [shlex.join(argv), "--bind", bind, shlex.join(["--pwd", code_dir, image])]
            return {"container_srun_words": "", "container_exec_words": " ".join(words)}
        # runc: an OCI bundle (config.json + rootfs/), run in the node's own network and pid
        # namespaces so msrun's ranks reach each other and slurmstepd tracks and signals them.
        argv = [python, "-m", "launcher.backends.slurm_container", "runc", "--bundle", image,
                "--cwd", code_dir]
        for path in binds:
            argv += ["--bind", path]
        words = [shlex.join(argv), '--bind "$JOB_DIR"', "--"]
        return {"container_srun_words": "", "container_exec_words": " ".join(words)}

    def render(self, spec: JobSpec, opts: SlurmOptions) -> RenderedJob:
        context = self.template_context(spec, opts)
        script = render_template("slurm/sbatch.sh.j2", **context)
        command = [
            "sbatch",
            "--parsable",
            f"--chdir={JOB_DIR_PLACEHOLDER}",
            f"--output={JOB_DIR_PLACEHOLDER}/slurm-%j.out",
            *[str(a) for a in spec.scheduler_args],
            f"{JOB_DIR_PLACEHOLDER}/sbatch.sh",
        ]
        return RenderedJob(files={"sbatch.sh": script}, submit_command=command)

    def submit(self, spec: JobSpec, rendered: RenderedJob, job_dir: Path) -> str:
        argv = [a.replace(JOB_DIR_PLACEHOLDER, str(job_dir)) for a in rendered.submit_command]
        result = _run(argv, timeout=60)
        if result.returncode != 0:
            raise BackendError(f"sbatch refused the job: {_first_line(result.stderr)}")
        job_id = result.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise BackendError(f"sbatch printed no job id: {_first_line(result.stdout)}")
        return job_id

    # ---- state ---------------------------------------------------------------------------------

    def status(self, record: JobRecord) -> JobStatus:
        job_id = record.backend_id or ""
        shown = self._scontrol(job_id)
        if shown is not None:
            state = shown.get("JobState", "UNKNOWN")
            restarts = int(shown.get("Restarts", "0") or 0)
            exit_code = shown.get("ExitCode", "")
            reason = shown.get("Reason", "None")
            detail = f"slurm {state}" + (f" ({reason})" if reason not in ("None", "") else "")
            return JobStatus(
                SLURM_STATES.get(state, base.UNKNOWN),
                restarts=restarts,
                detail=detail,
                exit_code=int(exit_code.split(":")[0]) if exit_code[:1].isdigit() else None,
            )
        accounted = self._sacct(job_id)
        if accounted is not None:
            return accounted
        # Gone from memory and no accounting: the script's own exit code file tells the end.
        exit_file = Path(record.job_dir) / "exit_code"
        if exit_file.is_file():
            code = int(exit_file.read_text().strip() or 1)
            return JobStatus(
                base.COMPLETED if code == 0 else base.FAILED,
                exit_code=code,
                detail="from the job's exit code file (job no longer known to slurmctld)",
            )
        return JobStatus(base.UNKNOWN, detail=f"slurm job {job_id} is no longer known")

    @staticmethod
    def _scontrol(job_id: str) -> dict[str, str] | None:
        result = _run(["scontrol", "show", "job", "-o", job_id])
        if result.returncode != 0 or not result.stdout.strip():
            return None
        fields: dict[str, str] = {}
        for token in result.stdout.split():
            key, sep, value = token.partition("=")
            if sep and key not in fields:
                fields[key] = value
        return fields

    @staticmethod
    def _sacct(job_id: str) -> JobStatus | None:
        try:
            result = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode"])
        except BackendError:
            return None
        if result.returncode != 0 or not result.stdout.strip():
            return None  # e.g. "Slurm accounting storage is disabled"
        state, _, exit_code = result.stdout.strip().splitlines()[-1].partition("|")
        state = state.split()[0] if state else "UNKNOWN"
        return JobStatus(
            SLURM_STATES.get(state, base.UNKNOWN),
            detail=f"sacct {state}",
            exit_code=int(exit_code.split(":")[0]) if exit_code[:1].isdigit() else None,
        )

    def logs(
        self, record: JobRecord, rank: int | None = None, follow: bool = False
    ) -> Iterator[str]:
        def finished() -> bool:
            return self.status(record).finished

        job_dir = Path(record.job_dir)
        yield from iter_rank_logs(job_dir / "logs", rank, follow, finished)
        if rank is None:
            yield from job_messages(sorted(job_dir.glob('slurm-*.out')))

    def fetch_logs(self, record: JobRecord, dest: Path) -> list[Path]:
        return base.copy_job_dir_logs(record, dest)

    def cancel(self, record: JobRecord) -> None:
        result = _run(["scancel", record.backend_id or ""])
        if result.returncode != 0:
            message = _first_line(result.stderr)
            if "already completing or completed" in message or "Invalid job id" in message:
                return
            raise BackendError(f"scancel failed: {message}")
