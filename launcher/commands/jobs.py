"""`rlaunch status | list | cancel | logs`: operations on jobs the store remembers."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

import click

from launcher.store import JobNotFoundError, JobRecord, JobStore

if TYPE_CHECKING:
    from launcher.backends.base import Backend, JobStatus


def load_record(job_id: str) -> JobRecord:
    try:
        return JobStore().load(job_id)
    except JobNotFoundError as err:
        raise click.UsageError(str(err)) from None


def backend_for(record: JobRecord) -> Backend:
    from launcher.backends import UnknownBackendError, get_backend

    try:
        return get_backend(record.backend)
    except UnknownBackendError as err:
        raise click.ClickException(str(err)) from None


def refreshed_status(record: JobRecord, store: JobStore | None = None) -> JobStatus:
    """Ask the backend, remember the state in the record, return the JobStatus."""
    from launcher.backends.base import BackendError

    try:
        status = backend_for(record).status(record)
    except BackendError as err:
        raise click.ClickException(str(err)) from None
    if status.state != record.last_state:
        record.last_state = status.state
        (store or JobStore()).save(record)
    return status


@click.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(job: str, as_json: bool) -> None:
    """Show JOB's state, restarts and training progress."""
    from launcher.progress import read_progress

    record = load_record(job)
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
@click.option("--limit", default=20, show_default=True, help="How many recent jobs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-refresh", is_flag=True, help="Show stored states; do not ask the backends.")
def list_jobs(limit: int, as_json: bool, no_refresh: bool) -> None:
    """List recent jobs, newest first."""
    from launcher.backends.base import FINAL_STATES

    store = JobStore()
    records = store.list(limit)
    for record in records:
        if not no_refresh and record.last_state not in FINAL_STATES:
            try:
                refreshed_status(record, store)
            except click.ClickException:
                pass  # one unreachable backend must not hide the other jobs
    if as_json:
        click.echo(json.dumps([json.loads(r.to_json()) for r in records], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("job", "backend", "backend id", "state", "nodes x dev", "created")
    for r in records:
        spec = r.spec
        table.add_row(
            r.id, r.backend, r.backend_id or "-", r.last_state,
            f"{spec.get('nodes')}x{spec.get('devices_per_node')} {spec.get('device_kind')}",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created)),
        )
    Console(width=max(100, Console().width)).print(table)


@click.command()
@click.argument("job")
def cancel(job: str) -> None:
    """Cancel JOB (ranks get TERM, save a checkpoint and stop)."""
    from launcher.backends.base import BackendError

    record = load_record(job)
    try:
        backend_for(record).cancel(record)
    except BackendError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"cancelled {record.id}", err=True)


@click.command()
@click.argument("job")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
@click.option("--rank", type=click.IntRange(min=0), help="Only this rank.")
def logs(job: str, follow: bool, rank: int | None) -> None:
    """Print JOB's logs: all ranks merged with a [rank R] prefix, or one rank."""
    from launcher.backends.base import BackendError

    record = load_record(job)
    try:
        for line in backend_for(record).logs(record, rank=rank, follow=follow):
            click.echo(line)
    except BackendError as err:
        raise click.ClickException(str(err)) from None
    except BrokenPipeError:  # `rlaunch logs JOB | head`
        sys.stderr.close()
