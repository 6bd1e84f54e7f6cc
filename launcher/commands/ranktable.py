"""`rlaunch ranktable`: write an HCCL rank table for Ascend servers, or check one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from launcher.ranktable import (
    RankTableError,
    build_rank_table,
    check_rank_table,
    load_device_ips,
    parse_device_range,
)


def collect_device_ips(
    servers: tuple[str, ...], device_ip_files: tuple[str, ...], hccn_dir: str | None
) -> dict[str, dict[int, str]]:
    """server IP -> {card: device IP} from the three accepted input shapes."""
    mapping: dict[str, dict[int, str]] = {}
    if hccn_dir:
        for path in sorted(Path(hccn_dir).glob("*.conf")):
            loaded = load_device_ips(path)
            mapping[path.stem] = loaded  # type: ignore[assignment] - hccn.conf: one server
        if not mapping:
            raise RankTableError(f"--hccn-dir {hccn_dir!r} holds no <server IP>.conf files")
        return mapping
    loaded_files = [load_device_ips(Path(f)) for f in device_ip_files]
    per_server = [m for m in loaded_files if m and isinstance(next(iter(m)), int)]
    mappings = [m for m in loaded_files if m and not isinstance(next(iter(m)), int)]
    for m in mappings:
        mapping.update(m)  # type: ignore[arg-type]
    if per_server:
        if len(per_server) != len(servers):
            raise RankTableError(
                f"{len(servers)} --server but {len(per_server)} hccn.conf files: give one per server"
            )
        for server, ips in zip(servers, per_server, strict=True):
            mapping[server] = ips  # type: ignore[assignment]
    elif servers:
        missing = [s for s in servers if s not in mapping]
        if missing:
            raise RankTableError(f"--server {missing[0]!r} has no entry in the device IP file")
        mapping = {s: mapping[s] for s in servers}
    return mapping


@click.command()
@click.option("--server", "servers", multiple=True, help="Server IP (repeat per server).")
@click.option("--devices", default="0-7", show_default=True, help="Cards used on each server.")
@click.option("--device-ips", "device_ip_files", multiple=True, type=click.Path(dir_okay=False),
              help="hccn.conf (one per --server, in order) or a YAML/JSON {server: [ips]} file.")
@click.option("--hccn-dir", type=click.Path(file_okay=False),
              help="Folder of <server IP>.conf files (what a Slurm Ascend job collects).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here (default stdout).")
@click.option("--check", "check_path", type=click.Path(dir_okay=False),
              help="Validate this rank table instead of writing one.")
def ranktable(
    servers: tuple[str, ...],
    devices: str,
    device_ip_files: tuple[str, ...],
    hccn_dir: str | None,
    output: str | None,
    check_path: str | None,
) -> None:
    """Write an HCCL rank table (version 1.0, string values, ranks in server order)."""
    if check_path:
        try:
            data = json.loads(Path(check_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise click.ClickException(f"{check_path!r} is not a readable JSON file: {err}") from None
        problems = check_rank_table(data)
        if problems:
            for problem in problems:
                click.echo(f"{check_path}: {problem}", err=True)
            sys.exit(1)
        devices_total = sum(len(s["device"]) for s in data["server_list"])
        click.echo(f"{check_path}: ok ({data['server_count']} servers, {devices_total} ranks)")
        return
    if not hccn_dir and not device_ip_files:
        raise click.UsageError("give --device-ips FILE (with --server IP) or --hccn-dir DIR")
    try:
        table = build_rank_table(
            collect_device_ips(servers, device_ip_files, hccn_dir), parse_device_range(devices)
        )
    except RankTableError as err:
        raise click.UsageError(str(err)) from None
    text = table.render()
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output} ({table.server_count} servers)", err=True)
    else:
        click.echo(text, nl=False)
