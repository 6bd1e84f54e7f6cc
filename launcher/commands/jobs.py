"""`rlaunch status | list | cancel | logs`: operations on jobs the store remembers."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

import click

from launcher.commands import user_errors
from launcher.store import DamagedRecord, JobRecord, JobStore, StoreError

if TYPE_CHECKING:
    from launcher.backends.base import Backend, JobStatus


def load_record(job_id: str) -> JobRecord:
    """The job's record (JobNotFoundError / StoreError when missing / damaged)."""
    return JobStore().load(job_id)


def backend_for(record: JobRecord) -> Backend:
    """The backend that ran the job; a record naming no known backend is damaged."""
    from launcher.backends import UnknownBackendError, get_backend

    try:
        return get_backend(record.backend)
    except UnknownBackendError as err:
        raise StoreError(f"job store record {record.path / 'record.json'}: {err}") from None


def refreshed_status(record: JobRecord, store: JobStore | None = None) -> JobStatus:
    """Ask the backend, remember the state in the record, return the JobStatus (a sweep's:
    one word for all its trials)."""
    from launcher.sweep_jobs import is_sweep, sweep_state, trial_states

    if is_sweep(record):
        from launcher.backends.base import JobStatus

        status = JobStatus(sweep_state(trial_states(record, backend_for(record))))
    else:
        status = backend_for(record).status(record)
    if status.state != record.last_state:
        record.last_state = status.state
        (store or JobStore()).save(record)
    return status


def _world_size(record: JobRecord) -> int | None:
    try:
        return int(record.job_spec.world_size)
    except (ValueError, TypeError):
        return None


@click.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def status(job: str, as_json: bool) -> None:
    """Show JOB's state, restarts and training progress."""
    from launcher.progress import read_progress
    from launcher.sweep_jobs import is_sweep

    record = load_record(job)
    if is_sweep(record):
        from launcher.commands.sweep import show_sweep_status

        show_sweep_status(record, backend_for(record), as_json)
        return
    state = refreshed_status(record)
    progress = read_progress(record.output_dir, record.spec)
    if as_json:
        click.echo(json.dumps({
            "id": record.id, "backend": record.backend, "backend_id": record.backend_id,
            "state": state.state, "restarts": state.restarts, "detail": state.detail,
            "exit_code": state.exit_code, "progress": progress.__dict__,
        }, indent=2))
        return
    click.echo(f"{record.id}  {record.backend} {record.backend_id}  {state.state}"
               f"  restarts {state.restarts}  {state.detail}")
    click.echo(f"progress: {progress.describe()}")
    if sys.stdout.isatty() and progress.epochs_total and progress.epoch is not None:
        from rich.progress import BarColumn, Progress, TextColumn

        with Progress(TextColumn("epochs"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      transient=False) as bar:
            # epochs fully done: the current (0-based) epoch index, or all of them once finished
            done = progress.epochs_total if state.state == "COMPLETED" else progress.epoch
            bar.add_task("epochs", total=progress.epochs_total, completed=done)


@click.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1),
              help="How many recent jobs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-refresh", is_flag=True, help="Show stored states; do not ask the backends.")
@user_errors
def list_jobs(limit: int, as_json: bool, no_refresh: bool) -> None:
    """List recent jobs, newest first; damaged records are listed as DAMAGED."""
    from launcher.backends.base import FINAL_STATES, BackendError

    store = JobStore()
    entries = store.entries(limit)
    for record in entries:
        stale = isinstance(record, JobRecord) and record.last_state not in FINAL_STATES
        if stale and not no_refresh:
            try:
                refreshed_status(record, store)
            except (BackendError, StoreError):
                pass  # one unreachable backend must not hide the other jobs
    if as_json:
        click.echo(json.dumps([
            {"id": e.id, "damaged": e.reason, "path": str(e.path)} if isinstance(e, DamagedRecord)
            else json.loads(e.to_json()) for e in entries
        ], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("job", "backend", "backend id", "state", "nodes x dev", "created")
    for e in entries:
        if isinstance(e, DamagedRecord):
            table.add_row(e.id, "-", "-", "DAMAGED", e.reason, "-")
            continue
        spec = e.spec
        table.add_row(
            e.id, e.backend, e.backend_id or "-", e.last_state,
            f"{spec.get('nodes')}x{spec.get('devices_per_node')} {spec.get('device_kind')}",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.created)),
        )
    Console(width=max(100, Console().width)).print(table)


def _sweep_trial(record: JobRecord, trial: int | None) -> bool:
    """True when `record` is a sweep; `--trial` on a plain job is a usage error."""
    from launcher.sweep_jobs import TrialError, is_sweep

    if is_sweep(record):
        return True
    if trial is not None:
        raise TrialError(f"--trial {trial}: job {record.id} is not a sweep")
    return False


@click.command()
@click.argument("job")
@click.option("--trial", type=click.IntRange(min=0), help="Only this trial of a sweep.")
@user_errors
def cancel(job: str, trial: int | None) -> None:
    """Cancel JOB (ranks get TERM, save a checkpoint and stop); a sweep: every trial."""
    record = load_record(job)
    if _sweep_trial(record, trial):
        from launcher.sweep_jobs import cancel_sweep

        cancel_sweep(record, backend_for(record), trial)
        what = f"trial {trial} of sweep" if trial is not None else "every trial of sweep"
        click.echo(f"cancelled {what} {record.id}", err=True)
        return
    backend_for(record).cancel(record)
    click.echo(f"cancelled {record.id}", err=True)


@click.command()
@click.argument("job")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
@click.option("--rank", type=click.IntRange(min=0), help="Only this rank.")
@click.option("--trial", type=click.IntRange(min=0), help="The trial of a sweep (required).")
@user_errors
def logs(job: str, follow: bool, rank: int | None, trial: int | None) -> None:
    """Print JOB's logs: all ranks merged with a [rank R] prefix, or one rank."""
    record = load_record(job)
    sweep = _sweep_trial(record, trial)
    if sweep and trial is None:
        raise click.BadParameter(f"job {record.id} is a sweep: name one of its trials",
                                 param_hint="--trial")
    ranks = _world_size(record)
    if rank is not None and ranks is not None and rank >= ranks:
        raise click.BadParameter(f"{rank}: job {record.id} has {ranks} ranks (0-{ranks - 1})",
                                 param_hint="--rank")
    try:
        if sweep:
            from launcher.sweep_jobs import trial_logs

            lines = trial_logs(record, backend_for(record), int(trial or 0), rank, follow)
        else:
            lines = backend_for(record).logs(record, rank=rank, follow=follow)
        for line in lines:
            click.echo(line)
    except BrokenPipeError:  # `rlaunch logs JOB | head`
        sys.stderr.close()
