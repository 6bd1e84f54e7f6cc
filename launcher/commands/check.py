"""`rlaunch check`: the preflight checks of a job, without submitting it.

It takes submit's job flags (the same generated options) and prints one line per check;
any failure exits 2. `submit` runs the same checks first (`--no-check` skips them).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from launcher.commands import user_errors
from launcher.commands.submit import checked_spec, spec_options

CHECK_EXIT_CODE = 2


def report(checks: list[Any], as_json: bool, err: bool = False) -> None:
    """Print the checks (one line each, or JSON); exit 2 when one failed."""
    from launcher.preflight import to_json

    if as_json:
        click.echo(to_json(checks), err=err)
    else:
        for check in checks:
            click.echo(check.line(), err=err)
    if any(c.failed for c in checks):
        if not as_json:
            click.echo(f"{sum(c.failed for c in checks)} check(s) failed; nothing was submitted",
                       err=True)
        sys.exit(CHECK_EXIT_CODE)


@click.command()
@spec_options
@click.option("--file", "file", type=click.Path(dir_okay=False), help="YAML job file.")
@click.option("--deep", is_flag=True,
              help="Slurm: also run a tiny srun probe on the nodes to see that the data, "
                   "output and job folders are shared with them.")
@click.option("--device-memory", type=click.FloatRange(min=0.1), metavar="GIB",
              help="Memory of one GPU/Ascend card in GiB (default: by Ascend chip; 16 for GPUs).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def check(**params: Any) -> None:
    """Check a job before submitting it: data layout, output folder, the scheduler's partition,
    devices, time limit, account, QOS and image (Slurm) or API, namespace, claims, CRDs and
    their controllers, devices and queue (Kubernetes), and whether the model fits the cards.
    One line per check; exit 2 when any fails."""
    from launcher.preflight import run_checks

    spec, _, opts = checked_spec(params)
    report(run_checks(spec, opts, cluster=True, deep=params["deep"],
                      device_memory_gib=params["device_memory"]), params["as_json"])
