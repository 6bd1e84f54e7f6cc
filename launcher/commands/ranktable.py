"""`rlaunch ranktable`: write an HCCL rank table for Ascend servers, or check one."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import click

from launcher.ascend import CHIPS, STRICT_CHIP, placement_problems
from launcher.commands import user_errors
from launcher.ranktable import (
    RankTableError,
    build_rank_table,
    check_rank_table,
    load_device_ips,
    read_rank_table,
)
from launcher.spec import parse_card_list


def checked_servers(servers: tuple[str, ...], hccn_dir: str | None) -> tuple[str, ...]:
    """--server values: each once (a repeated server would merge two servers into one), and
    none with --hccn-dir, which names the servers itself."""
    if servers and hccn_dir:
        raise click.UsageError("--server is not used with --hccn-dir (its <server IP>.conf file "
                               "names give the servers)")
    seen: set[str] = set()
    for server in servers:
        try:
            ipaddress.ip_address(server)  # exactly: no surrounding space or newline
        except ValueError:
            raise click.BadParameter(f"{server!r} is not an IP address",
                                     param_hint="--server") from None
        if server in seen:
            raise click.BadParameter(f"{server!r} is given twice", param_hint="--server")
        seen.add(server)
    return servers


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
@click.option("--ascend-chip", type=click.Choice(tuple(CHIPS)), default=STRICT_CHIP,
              show_default=True, help="Chip generation: 910b servers hold up to 16 cards.")
@click.option("--device-ips", "device_ip_files", multiple=True, type=click.Path(dir_okay=False),
              help="hccn.conf (one per --server, in order) or a YAML/JSON {server: [ips]} file.")
@click.option("--hccn-dir", type=click.Path(file_okay=False),
              help="Folder of <server IP>.conf files (what a Slurm Ascend job collects).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here (default stdout).")
@click.option("--check", "check_path", type=click.Path(dir_okay=False),
              help="Validate this rank table instead of writing one.")
@user_errors
def ranktable(
    servers: tuple[str, ...],
    devices: str,
    ascend_chip: str,
    device_ip_files: tuple[str, ...],
    hccn_dir: str | None,
    output: str | None,
    check_path: str | None,
) -> None:
    """Write an HCCL rank table (version 1.0, string values, ranks in server order)."""
    if check_path and (servers or device_ip_files or hccn_dir or output):
        raise click.UsageError("--check validates a rank table; it takes no --server, "
                               "--device-ips, --hccn-dir or --output")
    if check_path:
        try:
            data = read_rank_table(Path(check_path))
        except RankTableError as err:  # the file under check is bad: a finding, not a usage error
            raise click.ClickException(str(err)) from None
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
    servers = checked_servers(servers, hccn_dir)
    chip = CHIPS[ascend_chip]
    cards = parse_card_list(devices, "--devices", chip.cards_per_server - 1)
    misplaced = placement_problems(len(cards), cards, chip, "--devices: a count of",
                                   "--devices")
    if misplaced:
        raise click.UsageError(misplaced[0])
    table = build_rank_table(collect_device_ips(servers, device_ip_files, hccn_dir), cards)
    text = table.render()
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output} ({table.server_count} servers)", err=True)
    else:
        click.echo(text, nl=False)
