"""Build a rank table from servers and their device IPs."""

from __future__ import annotations

from launcher.rank_entry import server_order
from launcher.ranktable.hccn import checked_ip
from launcher.ranktable.model import Device, RankTable, RankTableError, Server


def build_rank_table(
    device_ips: dict[str, dict[int, str]], device_ids: list[int]
) -> RankTable:
    """Servers in `server_id` dictionary order, the chosen cards of each, consecutive ranks."""
    if not device_ips:
        raise RankTableError("no servers given (use --server IP)")
    canonical: dict[str, str] = {}
    for given in device_ips:
        server_ip = checked_ip(given, "--server")
        if server_ip in canonical:
            raise RankTableError(f"--server {given!r} is given twice (as {canonical[server_ip]!r})")
        canonical[server_ip] = given
    servers: list[Server] = []
    rank = 0
    for entry in server_order({"server_id": ip} for ip in canonical):
        server_ip = entry["server_id"]
        ips = device_ips[canonical[server_ip]]
        server = Server(server_id=server_ip)
        for card in device_ids:
            if card not in ips:
                raise RankTableError(f"server {server_ip}: no device IP for card {card}")
            server.devices.append(Device(str(card), checked_ip(ips[card], server_ip), str(rank)))
            rank += 1
        servers.append(server)
    _refuse_shared_device_ips(servers)
    return RankTable(servers)


def _refuse_shared_device_ips(servers: list[Server]) -> None:
    seen: set[str] = set()
    for server in servers:
        for device in server.devices:
            if device.device_ip in seen:
                raise RankTableError(
                    f"device IP {device.device_ip} appears twice (server {server.server_id})"
                )
            seen.add(device.device_ip)
