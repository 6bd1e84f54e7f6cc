"""`rlaunch gather`: checkpoints + logs to a folder, allreduced accuracy table, summary, PNG.

Everything is first gathered into a staging folder and moved to `--dest` only when the whole
gather succeeded, so a failed gather leaves no folder behind.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click

from launcher.commands import user_errors
from launcher.commands.jobs import backend_for, load_record
from launcher.store import JobStore


def _move_into(staging: Path, target: Path) -> None:
    """Move the staged files to `target` (created here; merged into it when it exists)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.move(str(staging), str(target))
        return
    shutil.copytree(staging, target, dirs_exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)


# What gather puts in --dest: folders and files (a file of a folder's name, or the other way
# round, would stop the copy half-way).
DEST_FOLDERS = ("outputs", "logs")
DEST_FILES = ("summary.json", "curves.png")


def check_dest(target: Path) -> None:
    """Refuse, before anything is fetched, a --dest that cannot take what gather writes."""
    for parent in [target, *target.parents]:
        if parent.exists() and not parent.is_dir():
            raise click.BadParameter(f"{str(parent)!r} is a file, not a folder", param_hint="--dest")
        if parent.exists():
            break
    clashes = [name for name in DEST_FOLDERS if (target / name).exists()
               and not (target / name).is_dir()]
    clashes += [name for name in DEST_FILES if (target / name).is_dir()]
    if clashes:
        raise click.BadParameter(f"{str(target)!r} holds {clashes[0]!r} of the wrong kind (gather "
                                 f"writes folders {', '.join(DEST_FOLDERS)} and files "
                                 f"{', '.join(DEST_FILES)}); choose another --dest",
                                 param_hint="--dest")


@click.command()
@click.argument("job")
@click.option("--dest", type=click.Path(file_okay=False), help="Folder (default ./<job id>).")
@user_errors
def gather(job: str, dest: str | None) -> None:
    """Copy JOB's checkpoints (last, best) and logs to DEST and report its accuracy."""
    from rich.console import Console
    from rich.table import Table

    from launcher.gather import gather_outputs
    from launcher.sweep_jobs import is_sweep

    record = load_record(job)
    backend = backend_for(record)
    target = Path(dest or record.id)
    if is_sweep(record):
        from launcher.commands.sweep import gather_sweep

        gather_sweep(record, backend, target)
        return
    check_dest(target)
    state = backend.status(record)  # remembered in the store only once the gather succeeded
    staging = Path(tempfile.mkdtemp(prefix=f"rlaunch-gather-{record.id}-"))
    try:
        outputs = backend.fetch_outputs(record, staging / "outputs")
        log_files = backend.fetch_logs(record, staging / "logs")
        summary = gather_outputs(outputs, staging, record.id, state.state,
                                 warn=lambda m: click.echo(m, err=True))
        summary.logs = [str(target / p.relative_to(staging)) for p in log_files
                        if p.is_relative_to(staging)]
        summary.checkpoints = [str(target / Path(p).relative_to(staging))
                               for p in summary.checkpoints]
        summary.plot = str(target / "curves.png") if summary.plot else None
        (staging / "summary.json").write_text(summary.to_json())
        _move_into(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if state.state != record.last_state:
        record.last_state = state.state
        JobStore().save(record)

    console = Console(stderr=False)
    table = Table("epoch", "top-1 %", "top-5 %", "loss", title=f"{record.id} ({state.state})")
    for row in summary.epochs:
        table.add_row(
            str(row.epoch + 1),
            "-" if row.top1 is None else f"{row.top1:.2f}",
            "-" if row.top5 is None else f"{row.top5:.2f}",
            "-" if row.loss is None else f"{row.loss:.4f}",
        )
    console.print(table)
    final = summary.final
    if "top1" in final:
        click.echo(
            f"allreduced accuracy: top-1 {final['top1']:.2f}% "
            f"({final.get('top1_correct')}/{final.get('total')}), "
            f"top-5 {final.get('top5', float('nan')):.2f}% "
            f"({final.get('top5_correct')}/{final.get('total')})"
        )
    else:
        click.echo("allreduced accuracy: not reported yet (no eval result or eval event)")
    click.echo(f"checkpoints: {', '.join(summary.checkpoints) or 'none yet'}")
    click.echo(f"summary: {target / 'summary.json'}" + (f", curves: {summary.plot}" if summary.plot else ""))
