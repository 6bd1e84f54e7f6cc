"""Slurm: `sbatch --parsable` a rendered script; squeue/scontrol (sacct when present) for state.

GPU and CPU jobs run one `msrun` per node under `srun` (one task per node); Ascend jobs build a
rank table at start and run one process per card. Preemption: `--requeue` plus
`--signal=B:USR1@<signal_seconds>`; the script passes the signal to the ranks (they save and exit
75) and requeues itself until `max_restarts`. Paths are those of this machine, which is assumed to
share its filesystem with the nodes (as Slurm clusters do for home and project dirs).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from launcher.backends import base
from launcher.backends.base import Backend, BackendError, JobStatus, RenderedJob
from launcher.rank_logs import iter_rank_logs, job_messages
from launcher.spec import REQUEUE_EXIT_CODE, JobSpec
from launcher.templating import render_template

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


class SlurmBackend(Backend):
    """Submit to the Slurm cluster this machine is a login node of."""

    name = "slurm"
    options: ClassVar[dict[str, str]] = {
        "signal_seconds": "seconds before the time limit to checkpoint and requeue (default 120)",
        "hccn_conf": "path of hccn.conf on Ascend nodes (default /etc/hccn.conf)",
        "ascend_gres": "gres name of Ascend cards on this cluster (default npu)",
    }

    def problems(self, spec: JobSpec) -> list[str]:
        out = super().problems(spec)
        seconds = spec.backend_options.get("signal_seconds", 120)
        if not isinstance(seconds, int) or not 1 <= seconds <= 65535:
            out.append(f"--opt signal_seconds={seconds!r} must be an integer from 1 to 65535")
        gres = str(spec.backend_options.get("ascend_gres", "npu"))
        if not re.fullmatch(r"[A-Za-z0-9_]+", gres):
            out.append(f"--opt ascend_gres={gres!r} must be a plain gres name like npu")
        for arg in spec.scheduler_args:
            if not str(arg).startswith("-"):
                out.append(f"scheduler argument {arg!r} must be an sbatch option starting with '-'")
        return out

    def prepare(self, spec: JobSpec) -> JobSpec:
        return base.with_paths_of_this_machine(spec)

    def template_context(self, spec: JobSpec) -> dict[str, Any]:
        """The data the sbatch template receives (no logic left for the template)."""
        opts = spec.backend_options
        ascend = spec.device_kind == "ascend"
        per_node = spec.devices_per_node
        return {
            "header": HEADER,
            "name": spec.name,
            "nodes": spec.nodes,
            "ntasks_per_node": per_node if ascend else 1,
            "cpus_per_task": per_node if spec.device_kind == "cpu" else None,
            "gpus_per_node": per_node if spec.device_kind == "gpu" else None,
            "gres": f"{opts.get('ascend_gres', 'npu')}:{per_node}" if ascend else None,
            "time_limit": spec.time_limit,
            "partition": spec.partition,
            "account": spec.account,
            "qos": spec.qos,
            "constraint": spec.constraint,
            "signal_seconds": int(opts.get("signal_seconds", 120)),
            "max_restarts": spec.max_restarts,
            "requeue_exit_code": REQUEUE_EXIT_CODE,
            "env": dict(spec.env),
            "bin_dir": str(Path(spec.python or "python").parent),
            "python": spec.python or "python",
            "code_dir": spec.code_dir or ".",
            "device_kind": spec.device_kind,
            "device_ids": spec.visible_device_ids,
            "hccn_conf": str(opts.get("hccn_conf", "/etc/hccn.conf")),
            "world_size": spec.world_size,
            "local_workers": per_node,
            "master_port": spec.master_port,
            "script": spec.script,
            "script_args": spec.script_args(),
        }

    def render(self, spec: JobSpec) -> RenderedJob:
        script = render_template("slurm/sbatch.sh.j2", **self.template_context(spec))
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
