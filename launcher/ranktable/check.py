"""Read a rank table from disk and say what in it would break training.

Every table read is untrusted: the read is bounded, and each problem is one line naming the
entry. What is accepted follows the writers in use (CANN HCCL rank table guide; MindSpore
rank_table docs; the MindX DL operator, mind-cluster
component/ascend-operator/pkg/ranktable/common/{common.go,server.go} and v1dot2/ranktable.go):

- `server_id`: any unique string under 64 characters. Huawei's examples use `node_0`; the
  operator copies what the device plugin reports, the node IP or the pod UID.
- Servers in any order. The operator sorts them by their first rank id (GatherServerList) and
  gives pod k the ranks k*n .. k*n+n-1, which is rarely the dictionary order of `server_id`.
- Numbers as strings or integers: the operator writes strings, merge_hccl.py integer rank ids
  and server counts.
- `host_ip` may be empty: the operator always writes the key, empty when the device plugin did
  not report the node's address. `container_ip` (the pod IP), `hardware_type`, `device_port`,
  and `super_device_id` / `super_pod_list` in version 1.2 (A3 super-pods) are optional.
- `status` "initializing" is what the operator writes before every pod has its cards: such a
  table is not ready to train with.
- Version 2.0 (the operator's `rank_list` tables for later chips) is not a server_list table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.ranktable.hccn import checked_ip, read_bounded
from launcher.ranktable.model import MAX_CARDS, RankTableError

# Rank table versions with a server_list: 1.0, and 1.2 for A3 super-pods (super_pod_list).
VERSIONS: tuple[str, ...] = ("1.0", "1.2")
SUPER_POD_VERSION = "1.2"
COMPLETED = "completed"
MAX_SERVER_ID_CHARS = 63
# 4,096 servers of 16 cards, each device entry about 150 bytes: 10 MB; pretty-printed, more.
MAX_RANK_TABLE_BYTES = 32 << 20


def read_rank_table(path: Path, what: str = "rank table") -> Any:
    """The parsed JSON of a rank table file, or RankTableError with one line naming the file."""
    raw = read_bounded(path, what, MAX_RANK_TABLE_BYTES)
    try:
        return json.loads(raw)
    except ValueError as err:  # UnicodeDecodeError is one
        reason = str(err).splitlines()[0]
        raise RankTableError(f"{what} {str(path)!r} is not a JSON file: {reason}") from None


@dataclass
class _Seen:
    """What earlier entries claimed, so a later entry that claims it again is named with them."""

    server_ids: dict[str, int] = field(default_factory=dict)
    device_ips: dict[str, str] = field(default_factory=dict)
    ranks: dict[int, str] = field(default_factory=dict)


def check_rank_table(data: Any) -> list[str]:
    """What in a parsed rank table would break training, one line naming the entry each."""
    if not isinstance(data, dict):
        return ["rank table must be a JSON object"]
    out = _version_problems(data) + _status_problems(data)
    servers = data.get("server_list")
    if not isinstance(servers, list) or not servers:
        return out + ["server_list must be a non-empty list"]
    if _whole_number(data.get("server_count")) != len(servers):
        out.append(f"server_count is {data.get('server_count')!r} but server_list holds "
                   f"{len(servers)} servers")
    seen = _Seen()
    for index, server in enumerate(servers):
        out += _server_problems(server, index, seen)
    out += _rank_gap_problems(seen.ranks)
    out += _super_pod_problems(data, seen.server_ids)
    return out


def _version_problems(data: dict[str, Any]) -> list[str]:
    version = data.get("version")
    if version in VERSIONS:
        return []
    if "rank_list" in data:
        return [(f"version {version!r} tables list ranks (rank_list), not servers: only "
                f"server_list tables (version {', '.join(VERSIONS)}) are read")]
    return [f"version must be one of {', '.join(VERSIONS)}, got {version!r}"]


def _status_problems(data: dict[str, Any]) -> list[str]:
    if "status" not in data or data["status"] == COMPLETED:
        return []
    return [f"status is {data['status']!r}, not {COMPLETED!r}: the table is not complete"]


def _server_problems(server: Any, index: int, seen: _Seen) -> list[str]:
    if not isinstance(server, dict):
        return [f"server_list[{index}] must be an object"]
    sid = server.get("server_id")
    if not isinstance(sid, str) or not 0 < len(sid) <= MAX_SERVER_ID_CHARS:
        return [(f"server_list[{index}].server_id {sid!r} must be a string of "
                f"1-{MAX_SERVER_ID_CHARS} characters")]
    where = f"server {sid}"
    out: list[str] = []
    if sid in seen.server_ids:
        out.append(f"{where}: server_id is used twice (server_list[{seen.server_ids[sid]}] "
                   f"and server_list[{index}])")
    seen.server_ids[sid] = index
    out += _address_problems(server, where)
    if "hardware_type" in server and not isinstance(server["hardware_type"], str):
        out.append(f"{where}: hardware_type {server['hardware_type']!r} is not a string")
    devices = server.get("device")
    if not isinstance(devices, list) or not 0 < len(devices) <= MAX_CARDS:
        return out + [f"{where}: device must list 1-{MAX_CARDS} cards"]
    cards: set[int] = set()
    for d_index, device in enumerate(devices):
        out += _device_problems(device, f"{where} device[{d_index}]", cards, seen)
    return out


def _address_problems(server: dict[str, Any], where: str) -> list[str]:
    """host_ip may be empty (see the module docstring); container_ip, when there, is an IP."""
    out = []
    if server.get("host_ip", "") != "" and not _is_ip(server["host_ip"]):
        out.append(f"{where}: host_ip {server['host_ip']!r} is not an IP address")
    if "container_ip" in server and not _is_ip(server["container_ip"]):
        out.append(f"{where}: container_ip {server['container_ip']!r} is not an IP address")
    return out


def _device_problems(device: Any, where: str, cards: set[int], seen: _Seen) -> list[str]:
    if not isinstance(device, dict):
        return [f"{where} must be an object"]
    return (_card_problems(device, where, cards) + _device_ip_problems(device, where, seen)
            + _rank_problems(device, where, seen) + _number_field_problems(device, where))


def _card_problems(device: dict[str, Any], where: str, cards: set[int]) -> list[str]:
    card = _whole_number(device.get("device_id"))
    if card is None or card >= MAX_CARDS:
        return [(f"{where}: device_id {device.get('device_id')!r} is not a card number "
                f"0-{MAX_CARDS - 1}")]
    if card in cards:
        return [f"{where}: device_id {card} appears twice on this server"]
    cards.add(card)
    return []


def _device_ip_problems(device: dict[str, Any], where: str, seen: _Seen) -> list[str]:
    ip = device.get("device_ip")
    if not _is_ip(ip):
        return [f"{where}: device_ip {ip!r} is not an IP address"]
    return _claim(seen.device_ips, ip, "device_ip", where)


def _rank_problems(device: dict[str, Any], where: str, seen: _Seen) -> list[str]:
    rank = _whole_number(device.get("rank_id"))
    if rank is None:
        return [f"{where}: rank_id {device.get('rank_id')!r} is not a whole number"]
    return _claim(seen.ranks, rank, "rank_id", where)


def _claim(claims: dict[Any, str], value: Any, key: str, where: str) -> list[str]:
    """Record that `where` uses `value`, or name the entry that used it first."""
    if value in claims:
        return [f"{where}: {key} {value} is also used by {claims[value]}"]
    claims[value] = where
    return []


def _number_field_problems(device: dict[str, Any], where: str) -> list[str]:
    """Optional numbers: device_port, and super_device_id in A3 (version 1.2) tables."""
    return [f"{where}: {key} {device[key]!r} is not a whole number"
            for key in ("device_port", "super_device_id")
            if key in device and _whole_number(device[key]) is None]


def _rank_gap_problems(ranks: dict[int, str]) -> list[str]:
    missing = sorted(set(range(len(ranks))) - set(ranks))
    if not missing:
        return []
    return [(f"rank ids must run 0-{len(ranks) - 1} without gaps: "
            f"missing {', '.join(str(r) for r in missing[:5])}")]


def _super_pod_problems(data: dict[str, Any], server_ids: dict[str, int]) -> list[str]:
    super_pods = data.get("super_pod_list")
    if super_pods is None:
        return []
    if data.get("version") != SUPER_POD_VERSION or not isinstance(super_pods, list):
        return [f"super_pod_list belongs to version {SUPER_POD_VERSION} tables and must be a list"]
    out = []
    for p_index, pod in enumerate(super_pods):
        members = pod.get("server_list", []) if isinstance(pod, dict) else None
        if not isinstance(members, list):
            out.append(f"super_pod_list[{p_index}].server_list must be a list")
            continue
        for member in members:
            sid = member.get("server_id") if isinstance(member, dict) else member
            if sid not in server_ids:
                out.append(f"super_pod_list[{p_index}] names server {sid!r}, which "
                           "server_list does not hold")
    return out


def _whole_number(value: Any) -> int | None:
    """An int from an int or a string of digits (tables write both); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _is_ip(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        checked_ip(value, "")
    except RankTableError:
        return False
    return True
