"""`rlaunch options`: a backend's `--opt` options, from their one declaration."""

from __future__ import annotations

import click

from launcher.backends import BACKENDS
from launcher.commands import user_errors


@click.command()
@click.option("--backend", type=click.Choice(sorted(BACKENDS)), required=True,
              help="Whose options to list.")
@click.option("--markdown", is_flag=True, help="Print the table docs/ carry.")
@user_errors
def options(backend: str, markdown: bool) -> None:
    """List the options `--opt KEY=VALUE` (or a job file's `backend_options:`) takes."""
    from launcher.backends import get_backend
    from launcher.options import markdown_table, options_rows

    options_type = get_backend(backend).options_type
    if markdown:
        click.echo(markdown_table(options_type), nl=False)
        return
    rows = options_rows(options_type)
    if not rows:
        click.echo(f"the {backend} backend has no options")
        return
    for name, kind, default, used, help_text in rows:
        jobs = "" if used == "all" else f"; {used} jobs only"
        click.echo(f"{name}  ({kind}; default {default}{jobs})")
        click.echo(f"    {help_text}")
