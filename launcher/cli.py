"""The `rlaunch` command line. Subcommands are imported lazily so `--help` stays fast."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rlaunch")
def cli() -> None:
    """Train, evaluate and serve ResNeSt on Slurm, Kubernetes or this machine."""


def main() -> None:
    cli(auto_envvar_prefix="RLAUNCH")
