"""HCCL rank tables for Ascend: build one from servers and device IPs, render it, check it.

Format (version "1.0"): every value is a string, servers are ordered by the dictionary (string)
order of `server_id` (`launcher.rank_entry.server_order`, the one place that orders them), rank
ids run 0..N-1 in that order, device IPs are unique. A process finds its own server with
`entry_for_host` / `find_entry` (re-exported from `launcher.rank_entry`). `hccn.conf` lines look like
`address_0=192.168.100.101`. Slurm jobs build their table on the nodes with the job dir's copy of
`launcher/backends/slurm_rank.py` (standard library only), which writes the same table.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.rank_entry import entry_for_host, find_entry, local_ranks, server_order
from launcher.templating import render_template

__all__ = ["RankTable", "RankTableError", "build_rank_table", "check_rank_table",
           "entry_for_host", "find_entry", "local_ranks", "server_order"]

HCCN_ADDRESS_RE = re.compile(r"^\s*address_(\d+)\s*=\s*(\S+)\s*$")
# Rank table versions HCCL reads: 1.0, and 1.2 for A3 super-pods (super_pod_list).
VERSIONS: tuple[str, ...] = ("1.0", "1.2")
# The largest Ascend server (Atlas 900 A2 PoD: module-910b-16) holds 16 cards.
MAX_CARDS = 16


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
    """`0-7`, `0,1,2,3` or `4-7` -> card numbers (bounds checked before any range is built)."""
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d{1,6})(?:-(\d{1,6}))?", part)
        if not match:
            raise RankTableError(f"--devices {text!r} is not a card list like 0-7 or 0,1,2,3")
        lo, hi = int(match[1]), int(match[2] or match[1])
        if hi < lo:
            raise RankTableError(f"--devices {text!r}: range {part} runs backwards")
        if hi >= MAX_CARDS:
            raise RankTableError(f"--devices {text!r} must name cards within 0-{MAX_CARDS - 1}")
        ids.extend(range(lo, hi + 1))
    if len(set(ids)) != len(ids):
        raise RankTableError(f"--devices {text!r} names a card twice")
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
    if IPV4_RE.fullmatch(text):
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise RankTableError(f"{what}: {value!r} is not an IP address") from None


def build_rank_table(
    device_ips: dict[str, dict[int, str]], device_ids: list[int]
) -> RankTable:
    """Servers in `server_id` dictionary order, the chosen cards of each, consecutive ranks."""
    if not device_ips:
        raise RankTableError("no servers given (use --server IP)")
    canonical: dict[str, str] = {}
    for given in device_ips:
        server_ip = _checked_ip(given, "--server")
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


def _whole_number(value: Any) -> int | None:
    """An int from an int or a string of digits (tables write both); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _is_ip(value: Any) -> bool:
    try:
        _checked_ip(str(value), "")
    except RankTableError:
        return False
    return isinstance(value, str)


def check_rank_table(data: Any) -> list[str]:
    """What in a parsed rank table would break training, one line naming the entry each.

    Judges meaning, not form (CANN HCCL rank table guide; MindSpore rank_table docs): any unique
    `server_id` under 64 characters (Huawei's examples use `node_0`, MindX DL writes pod UIDs),
    rank ids as strings or integers (merge_hccl.py writes integers), optional `host_ip`,
    `container_ip`, `device_port`, up to 16 cards a server, version 1.0 and 1.2 (A3 super-pod
    tables with `super_pod_list`). Rejected: duplicate or missing ranks, duplicate device IPs, a
    wrong `server_count`, and ranks that do not follow the dictionary order of `server_id`.
    """
    if not isinstance(data, dict):
        return ["rank table must be a JSON object"]
    out: list[str] = []
    if data.get("version") not in VERSIONS:
        out.append(f"version must be one of {', '.join(VERSIONS)}, got {data.get('version')!r}")
    servers = data.get("server_list")
    if not isinstance(servers, list) or not servers:
        return out + ["server_list must be a non-empty list"]
    if _whole_number(data.get("server_count")) != len(servers):
        out.append(f"server_count is {data.get('server_count')!r} but server_list holds "
                   f"{len(servers)} servers")
    if "status" in data and data["status"] != "completed":
        out.append(f"status is {data['status']!r}: the table is not complete")
    seen_ids: dict[str, int] = {}
    seen_ips: dict[str, str] = {}
    ranks: dict[int, str] = {}
    server_ranks: list[tuple[str, list[int]]] = []
    for index, server in enumerate(servers):
        where = f"server_list[{index}]"
        if not isinstance(server, dict):
            out.append(f"{where} must be an object")
            continue
        sid = server.get("server_id")
        if not isinstance(sid, str) or not 0 < len(sid) < 64:
            out.append(f"{where}.server_id {sid!r} must be a string of 1-63 characters")
            continue
        where = f"server {sid}"
        if sid in seen_ids:
            out.append(f"{where}: server_id is used twice (server_list[{seen_ids[sid]}] "
                       f"and server_list[{index}])")
        seen_ids[sid] = index
        for key in ("host_ip", "container_ip"):
            if key in server and not _is_ip(server[key]):
                out.append(f"{where}: {key} {server[key]!r} is not an IP address")
        devices = server.get("device")
        if not isinstance(devices, list) or not 0 < len(devices) <= MAX_CARDS:
            out.append(f"{where}: device must list 1-{MAX_CARDS} cards")
            continue
        cards: set[int] = set()
        own: list[int] = []
        for d_index, device in enumerate(devices):
            dwhere = f"{where} device[{d_index}]"
            if not isinstance(device, dict):
                out.append(f"{dwhere} must be an object")
                continue
            card = _whole_number(device.get("device_id"))
            if card is None or card >= MAX_CARDS:
                out.append(f"{dwhere}: device_id {device.get('device_id')!r} is not a card "
                           f"number 0-{MAX_CARDS - 1}")
            elif card in cards:
                out.append(f"{dwhere}: device_id {card} appears twice on this server")
            else:
                cards.add(card)
            ip = device.get("device_ip")
            if not _is_ip(ip):
                out.append(f"{dwhere}: device_ip {ip!r} is not an IP address")
            elif ip in seen_ips:
                out.append(f"{dwhere}: device_ip {ip} is also used by {seen_ips[ip]}")
            else:
                seen_ips[ip] = dwhere
            if "device_port" in device and _whole_number(device["device_port"]) is None:
                out.append(f"{dwhere}: device_port {device['device_port']!r} is not a port")
            rank = _whole_number(device.get("rank_id"))
            if rank is None:
                out.append(f"{dwhere}: rank_id {device.get('rank_id')!r} is not a whole number")
            elif rank in ranks:
                out.append(f"{dwhere}: rank_id {rank} is also used by {ranks[rank]}")
            else:
                ranks[rank] = dwhere
                own.append(rank)
        server_ranks.append((sid, own))
    if ranks:
        missing = sorted(set(range(len(ranks))) - set(ranks))
        if missing:
            out.append(f"rank ids must run 0-{len(ranks) - 1} without gaps: "
                       f"missing {', '.join(str(r) for r in missing[:5])}")
    # Ranks follow the dictionary order of server_id: every rank of a server is below every
    # rank of the next server in that order.
    ordered = [s for s in server_order({"server_id": sid, "ranks": r} for sid, r in server_ranks)
               if s["ranks"]]
    for before, after in itertools.pairwise(ordered):
        if max(before["ranks"]) > min(after["ranks"]):
            out.append(f"server {after['server_id']} holds rank {min(after['ranks'])} below "
                       f"rank {max(before['ranks'])} of server {before['server_id']}, which "
                       "comes first in server_id dictionary order")
    super_pods = data.get("super_pod_list")
    if super_pods is not None:
        if data.get("version") != "1.2" or not isinstance(super_pods, list):
            out.append("super_pod_list belongs to version 1.2 tables and must be a list")
        else:
            for p_index, pod in enumerate(super_pods):
                members = pod.get("server_list", []) if isinstance(pod, dict) else None
                if not isinstance(members, list):
                    out.append(f"super_pod_list[{p_index}].server_list must be a list")
                    continue
                for member in members:
                    sid = member.get("server_id") if isinstance(member, dict) else member
                    if sid not in seen_ids:
                        out.append(f"super_pod_list[{p_index}] names server {sid!r}, which "
                                   "server_list does not hold")
    return out

