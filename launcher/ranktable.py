"""HCCL rank tables for Ascend: build one from servers and device IPs, render it, validate it.

Format (version "1.0"): every value is a string, servers are ordered by `server_id` (numeric IP
order), rank ids run 0..N-1 in that order, device IPs are unique. `hccn.conf` lines look like
`address_0=192.168.100.101`. `python -m launcher.ranktable register DIR HCCN` is what each node of
a Slurm Ascend job runs: it copies its hccn.conf to DIR/<node IP>.conf for the rank table step.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.templating import render_template

HCCN_ADDRESS_RE = re.compile(r"^\s*address_(\d+)\s*=\s*(\S+)\s*$")


class RankTableError(ValueError):
    """Bad input for a rank table; the message names the bad value."""


@dataclass
class Device:
    device_id: str
    device_ip: str
    rank_id: str


@dataclass
class Server:
    server_id: str
    devices: list[Device] = field(default_factory=list)


@dataclass
class RankTable:
    """An HCCL rank table, ready to render."""

    servers: list[Server]
    version: str = "1.0"

    @property
    def server_count(self) -> str:
        return str(len(self.servers))

    def render(self) -> str:
        """JSON text through `templates/ascend/rank_table.json.j2`."""
        return render_template(
            "ascend/rank_table.json.j2",
            version=self.version,
            server_count=self.server_count,
            servers=self.servers,
        )


def parse_device_range(text: str) -> list[int]:
    """`0-7`, `0,1,2,3` or `4-7` -> card numbers."""
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise RankTableError(f"--devices {text!r} is not a card list like 0-7 or 0,1,2,3")
        lo, hi = int(match[1]), int(match[2] or match[1])
        if hi < lo:
            raise RankTableError(f"--devices {text!r}: range {part} runs backwards")
        ids.extend(range(lo, hi + 1))
    if len(set(ids)) != len(ids) or any(i > 7 for i in ids):
        raise RankTableError(f"--devices {text!r} must name distinct cards within 0-7")
    return ids


def parse_hccn_conf(text: str, source: str = "hccn.conf") -> dict[int, str]:
    """Device IPs by card number from hccn.conf text."""
    ips: dict[int, str] = {}
    for line in text.splitlines():
        match = HCCN_ADDRESS_RE.match(line)
        if match:
            ips[int(match[1])] = _checked_ip(match[2], f"{source}: address_{match[1]}")
    if not ips:
        raise RankTableError(f"{source} has no address_N=IP lines")
    return ips


def load_device_ips(path: Path) -> dict[str, dict[int, str]] | dict[int, str]:
    """hccn.conf (one server) or a JSON/YAML mapping {server_ip: {card: ip} | [ip, ...]}."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RankTableError(f"device IP file {str(path)!r} cannot be read: {err}") from err
    if any(HCCN_ADDRESS_RE.match(line) for line in text.splitlines()):
        return parse_hccn_conf(text, str(path))
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RankTableError(f"device IP file {str(path)!r} is neither hccn.conf nor YAML/JSON") from err
    if not isinstance(data, dict):
        raise RankTableError(f"device IP file {str(path)!r} must map server IP -> device IPs")
    mapping: dict[str, dict[int, str]] = {}
    for server, ips in data.items():
        if isinstance(ips, list):
            ips = dict(enumerate(ips))
        if not isinstance(ips, dict):
            raise RankTableError(f"{str(path)!r}: entry for {server!r} must be a list or mapping")
        mapping[str(server)] = {int(k): str(v) for k, v in ips.items()}
    return mapping


IPV4_RE = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")


def _checked_ip(value: str, what: str) -> str:
    """The canonical text of an IP address (IPv4 checked by regex: 4,096-server tables)."""
    text = str(value).strip()
    if IPV4_RE.match(text):
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise RankTableError(f"{what}: {value!r} is not an IP address") from None


def _ip_sort_key(text: str) -> tuple[int, int]:
    """Numeric order, IPv4 before IPv6 (10.0.0.9 < 10.0.0.10)."""
    if IPV4_RE.match(text):
        a, b, c, d = (int(x) for x in text.split("."))
        return 4, (a << 24) | (b << 16) | (c << 8) | d
    return 6, int(ipaddress.ip_address(text))


def build_rank_table(
    device_ips: dict[str, dict[int, str]], device_ids: list[int]
) -> RankTable:
    """Servers sorted by IP, the chosen cards of each, consecutive rank ids."""
    if not device_ips:
        raise RankTableError("no servers given (use --server IP)")
    servers_sorted = sorted(
        ((_ip_sort_key(_checked_ip(s, "--server")), s) for s in device_ips),
    )
    servers: list[Server] = []
    rank = 0
    for _, server_ip in servers_sorted:
        ips = device_ips[server_ip]
        server = Server(server_id=_checked_ip(server_ip, "--server"))
        for card in device_ids:
            if card not in ips:
                raise RankTableError(f"server {server_ip}: no device IP for card {card}")
            server.devices.append(Device(str(card), _checked_ip(ips[card], server_ip), str(rank)))
            rank += 1
        servers.append(server)
    seen: set[str] = set()
    for server in servers:
        for device in server.devices:
            if device.device_ip in seen:
                raise RankTableError(
                    f"device IP {device.device_ip} appears twice (server {server.server_id})"
                )
            seen.add(device.device_ip)
    return RankTable(servers)


def check_rank_table(data: Any) -> list[str]:
    """Every problem with a parsed rank table, one line each; empty when valid."""
    if not isinstance(data, dict):
        return ["rank table must be a JSON object"]
    out: list[str] = []
    if data.get("version") != "1.0":
        out.append(f"version must be the string \"1.0\", got {data.get('version')!r}")
    servers = data.get("server_list")
    if not isinstance(servers, list) or not servers:
        return out + ["server_list must be a non-empty list"]
    if data.get("server_count") != str(len(servers)):
        out.append(
            f"server_count must be the string {str(len(servers))!r}, got {data.get('server_count')!r}"
        )
    if "status" in data and data["status"] != "completed":
        out.append(f"status must be \"completed\", got {data['status']!r}")
    seen_ips: set[str] = set()
    expected_rank = 0
    keys: list[Any] = []
    per_server = None
    for index, server in enumerate(servers):
        where = f"server_list[{index}]"
        if not isinstance(server, dict):
            out.append(f"{where} must be an object")
            continue
        sid = server.get("server_id")
        if not isinstance(sid, str):
            out.append(f"{where}.server_id must be a string, got {sid!r}")
            continue
        try:
            keys.append(_ip_sort_key(_checked_ip(sid, where)))
        except (RankTableError, ValueError):
            out.append(f"{where}.server_id {sid!r} is not an IP address")
        devices = server.get("device")
        if not isinstance(devices, list) or not devices:
            out.append(f"{where}.device must be a non-empty list")
            continue
        if per_server is None:
            per_server = len(devices)
        elif len(devices) != per_server:
            out.append(f"{where} has {len(devices)} devices, server_list[0] has {per_server}")
        cards: set[str] = set()
        for d_index, device in enumerate(devices):
            dwhere = f"{where}.device[{d_index}]"
            if not isinstance(device, dict):
                out.append(f"{dwhere} must be an object")
                continue
            for key in ("device_id", "device_ip", "rank_id"):
                if not isinstance(device.get(key), str):
                    out.append(f"{dwhere}.{key} must be a string, got {device.get(key)!r}")
            card, ip, rank = device.get("device_id"), device.get("device_ip"), device.get("rank_id")
            if isinstance(card, str):
                if not card.isdigit() or int(card) > 7:
                    out.append(f"{dwhere}.device_id {card!r} must be a card number 0-7")
                elif card in cards:
                    out.append(f"{dwhere}.device_id {card!r} appears twice on {sid}")
                cards.add(card)
            if isinstance(ip, str):
                if not IPV4_RE.match(ip):
                    try:
                        ipaddress.ip_address(ip)
                    except ValueError:
                        out.append(f"{dwhere}.device_ip {ip!r} is not an IP address")
                if ip in seen_ips:
                    out.append(f"{dwhere}.device_ip {ip!r} is used twice")
                seen_ips.add(ip)
            if isinstance(rank, str) and rank != str(expected_rank):
                out.append(f"{dwhere}.rank_id must be {str(expected_rank)!r}, got {rank!r}")
            expected_rank += 1
    if keys and keys != sorted(keys):
        out.append("server_list must be ordered by server_id")
    if len(keys) != len(set(keys)):
        out.append("server_id values must be unique")
    return out


def node_ip() -> str:
    """This node's address as the other nodes see it (first non-loopback of its hostname)."""
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            ip = str(info[4][0])
            if not ip.startswith("127."):
                return ip
    except OSError:
        pass
    return "127.0.0.1"


def register_node(directory: Path, hccn_conf: Path) -> Path:
    """Copy this node's hccn.conf to `directory/<node IP>.conf` (run once per node)."""
    ips = parse_hccn_conf(hccn_conf.read_text(encoding="utf-8"), str(hccn_conf))
    target = directory / f"{node_ip()}.conf"
    target.write_text("".join(f"address_{k}={v}\n" for k, v in sorted(ips.items())))
    return target


def _main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "register":
        print("usage: python -m launcher.ranktable register DIR HCCN_CONF", file=sys.stderr)
        return 2
    try:
        print(register_node(Path(argv[1]), Path(argv[2])))
    except (OSError, RankTableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
