"""`rlaunch usage`: device-hours (and, with prices, cost) per job and per sweep."""

from __future__ import annotations

import json

import click

from launcher.commands import user_errors


@click.command()
@click.argument("jobs", nargs=-1)
@click.option("--price", "prices", multiple=True, metavar="KIND=PRICE",
              help="Price of one device-hour: gpu=2.1, npu=1.4, cpu=0.02 (repeatable).")
@click.option("--since", metavar="WHEN",
              help="Only jobs created since: 2026-12-01, 2026-12-01T08:00, 3d, 12h.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def usage(jobs: tuple[str, ...], prices: tuple[str, ...], since: str | None,
          as_json: bool) -> None:
    """Device-hours of JOBS (default: every job in the store), from the backend's accounting:
    Slurm's sacct (every requeued attempt and array task), Kubernetes pod times, local wall
    time x CPUs. A sweep's line adds up its trials."""
    from launcher.store import JobStore
    from launcher.usage import UsageError, measure, parse_prices, parse_since

    try:
        price = parse_prices(prices)
        after = parse_since(since) if since else None
    except UsageError as err:
        raise click.UsageError(str(err)) from None
    store = JobStore()
    records = [store.load(j) for j in jobs] if jobs else store.list()
    if after is not None:
        records = [r for r in records if r.created >= after]
    measured = [measure(r) for r in records]
    totals: dict[str, float] = {}
    for job in measured:
        for kind, hours in job.hours().items():
            totals[kind] = totals.get(kind, 0.0) + hours
    cost = sum(j.cost(price) for j in measured)
    if as_json:
        click.echo(json.dumps({
            "jobs": [j.to_dict(price) for j in measured],
            "device_hours": {k: round(v, 6) for k, v in totals.items()},
            **({"cost": round(cost, 6), "prices": price} if price else {}),
        }, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("job", "backend", "attempts", "gpu-h", "npu-h", "cpu-h",
                  *(["cost"] if price else []), "from")
    for job in measured:
        hours = job.hours()
        cells = [f"{hours[k]:.4f}" if k in hours else "-" for k in ("gpu", "npu", "cpu")]
        table.add_row(job.job_id, job.backend, str(len(job.attempts)), *cells,
                      *([f"{job.cost(price):.4f}"] if price else []),
                      job.source + (f" ({job.note})" if job.note else ""))
    cells = [f"{totals[k]:.4f}" if k in totals else "-" for k in ("gpu", "npu", "cpu")]
    table.add_row("total", "", "", *cells, *([f"{cost:.4f}"] if price else []), "")
    Console(width=max(120, Console().width)).print(table)
