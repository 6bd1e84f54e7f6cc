"""`rlaunch gather`: checkpoints + logs to a folder, allreduced accuracy table, summary, PNG."""

from __future__ import annotations

from pathlib import Path

import click

from launcher.commands.jobs import backend_for, load_record, refreshed_status


@click.command()
@click.argument("job")
@click.option("--dest", type=click.Path(file_okay=False), help="Folder (default ./<job id>).")
def gather(job: str, dest: str | None) -> None:
    """Copy JOB's checkpoints (last, best) and logs to DEST and report its accuracy."""
    from rich.console import Console
    from rich.table import Table

    from launcher.backends.base import BackendError
    from launcher.gather import gather_outputs

    record = load_record(job)
    backend = backend_for(record)
    target = Path(dest or record.id)
    target.mkdir(parents=True, exist_ok=True)
    state = refreshed_status(record)
    try:
        outputs = backend.fetch_outputs(record, target / "outputs")
        log_files = backend.fetch_logs(record, target / "logs")
        lines = list(backend.logs(record))
    except BackendError as err:
        raise click.ClickException(str(err)) from None
    summary = gather_outputs(outputs, lines, target, record.id, state.state)
    summary.logs = [str(p) for p in log_files]
    (target / "summary.json").write_text(summary.to_json())

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
        click.echo("allreduced accuracy: not reported yet (no eval line in the logs)")
    click.echo(f"checkpoints: {', '.join(summary.checkpoints) or 'none yet'}")
    click.echo(f"summary: {target / 'summary.json'}" + (f", curves: {summary.plot}" if summary.plot else ""))
