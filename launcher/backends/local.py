"""Local: the same job on this machine with msrun (CPU), detached from the terminal.

`submit` starts `bash run.sh` in its own session with the job directory as working directory and
returns its pid; run.sh writes `exit_code` when msrun ends. `cancel` sends TERM to the ranks
(msrun ignores it so it cannot kill them mid-save), waits for them, then KILLs what is left.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from launcher.backends import base
from launcher.backends.base import Backend, BackendError, JobStatus, RenderedJob
from launcher.options import LocalOptions
from launcher.rank_logs import iter_rank_logs, job_messages
from launcher.spec import JobSpec
from launcher.templating import render_template
from resnest.contract import DEVICE_KIND_ENV, REQUEUE_EXIT_CODE

if TYPE_CHECKING:
    from launcher.store import JobRecord

HEADER = "Rendered by rlaunch (local backend). Edit the job spec, not this file."
CANCEL_GRACE_SECONDS = 30.0


def free_port() -> int:
    """A TCP port nobody listens on right now (msrun's scheduler binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def process_alive(pid: int, start_time: int | None) -> bool:
    """True when `pid` runs and is the same process (start time) and not a zombie."""
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return start_time is None or stat[2] == start_time


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (msrun's ranks run in sessions of their own, so no pgid)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None:
                children.setdefault(stat[1], []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class LocalBackend(Backend):
    """Run on this machine; the job store's job dir holds run.sh, logs and the exit code."""

    name = "local"
    unused_fields = ("image", "partition", "account", "qos", "constraint", "scheduler_args",
                     "time_limit", "max_restarts")
    unused_reasons: ClassVar[dict[str, str]] = {
        "image": "it runs this checkout with this interpreter, no container",
        "partition": "it has no scheduler", "account": "it has no scheduler",
        "qos": "it has no scheduler", "constraint": "it has no scheduler",
        "scheduler_args": "it has no scheduler",
        "time_limit": "it has no scheduler to enforce one",
        "max_restarts": "it does not requeue; rerun the job to resume from its checkpoint",
    }

    def problems(self, spec: JobSpec, opts: LocalOptions) -> list[str]:
        out = super().problems(spec, opts)
        if spec.nodes != 1:
            out.append(f"{spec.label('nodes')} {spec.nodes}: the local backend runs on this one "
                       "machine")
        if spec.device_kind != "cpu":
            out.append(f"{spec.label('devices_per_node')} {spec.devices_per_node}: the local "
                       f"backend is CPU-only (no {spec.device_kind} devices); use --cpus N")
        if spec.data_dir and not Path(spec.data_dir).is_dir():
            out.append(f"{spec.label('data_dir')} {spec.data_dir!r} does not exist on this machine")
        if spec.config and not Path(spec.config).is_file():
            out.append(f"{spec.label('config')} {spec.config!r} does not exist on this machine")
        return out

    def prepare(self, spec: JobSpec, opts: LocalOptions) -> tuple[JobSpec, LocalOptions]:
        spec = base.with_paths_of_this_machine(spec)
        return (spec if spec.master_port else spec.replace(master_port=free_port())), opts

    def template_context(self, spec: JobSpec) -> dict[str, Any]:
        return {
            "header": HEADER,
            "env": dict(spec.env),
            "bin_dir": str(Path(spec.python or "python").parent),
            "code_dir": spec.code_dir or ".",
            "device_kind_env": DEVICE_KIND_ENV,
            "device_kind": spec.device_kind,
            "world_size": spec.world_size,
            "master_port": spec.master_port,
            "script": spec.script,
            "script_args": spec.script_args(),
        }

    def render(self, spec: JobSpec, opts: LocalOptions) -> RenderedJob:
        script = render_template("local/run.sh.j2", **self.template_context(spec))
        return RenderedJob(files={"run.sh": script}, submit_command=["setsid", "bash", "run.sh"])

    def submit(self, spec: JobSpec, rendered: RenderedJob, job_dir: Path) -> str:
        with (job_dir / "launcher.log").open("ab") as log:
            proc = subprocess.Popen(
                ["bash", "run.sh"],
                cwd=job_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stat = _proc_stat(proc.pid)
        (job_dir / "pid").write_text(f"{proc.pid} {stat[2] if stat else ''}\n")
        return str(proc.pid)

    @staticmethod
    def _pid(record: JobRecord) -> tuple[int, int | None]:
        parts = (Path(record.job_dir) / "pid").read_text().split()
        return int(parts[0]), (int(parts[1]) if len(parts) > 1 else None)

    def status(self, record: JobRecord) -> JobStatus:
        job_dir = Path(record.job_dir)
        cancelled = (job_dir / "cancelled").exists()
        exit_file = job_dir / "exit_code"
        if exit_file.is_file():
            try:
                code = int(exit_file.read_text().strip() or 1)
            except (OSError, ValueError):
                return JobStatus(base.UNKNOWN, detail=f"{exit_file} is damaged")
            if cancelled:
                return JobStatus(base.CANCELLED, exit_code=code, detail="cancelled by the user")
            state = base.COMPLETED if code == 0 else base.FAILED
            detail = f"msrun exit code {code}"
            if code == REQUEUE_EXIT_CODE:
                detail += " (stopped with a checkpoint saved; submit again to resume)"
            return JobStatus(state, exit_code=code, detail=detail)
        try:
            pid, start = self._pid(record)
        except (OSError, ValueError):
            return JobStatus(base.UNKNOWN, detail="no pid file in the job dir")
        if process_alive(pid, start):
            return JobStatus(base.RUNNING, detail=f"pid {pid}")
        if cancelled:
            return JobStatus(base.CANCELLED, detail="cancelled by the user")
        return JobStatus(base.FAILED, detail=f"pid {pid} ended without writing an exit code")

    def logs(
        self, record: JobRecord, rank: int | None = None, follow: bool = False
    ) -> Iterator[str]:
        def finished() -> bool:
            status = self.status(record)
            return status.finished or status.state == base.UNKNOWN

        job_dir = Path(record.job_dir)
        yield from iter_rank_logs(job_dir / "logs", rank, follow, finished)
        if rank is None:
            yield from job_messages(sorted(job_dir.glob('launcher.log')))

    def fetch_logs(self, record: JobRecord, dest: Path) -> list[Path]:
        return base.copy_job_dir_logs(record, dest)

    def cancel(self, record: JobRecord, grace_seconds: float = CANCEL_GRACE_SECONDS) -> None:
        try:
            pid, start = self._pid(record)
        except (OSError, ValueError) as err:
            raise BackendError(f"job {record.id} has no pid file: {err}") from None
        if not process_alive(pid, start):
            return
        (Path(record.job_dir) / "cancelled").write_text("")
        # TERM to every process below run.sh: the ranks save and exit REQUEUE_EXIT_CODE;
        # msrun ignores it.
        _signal_all(descendants(pid), signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and process_alive(pid, start):
            time.sleep(0.2)
        if process_alive(pid, start):
            _signal_all([*descendants(pid), pid], signal.SIGKILL)
