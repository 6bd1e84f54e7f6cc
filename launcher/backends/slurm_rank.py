"""Ascend under Slurm, on the compute nodes: register each node's card IPs, build the rank table,
and start each card's rank with the rank and card of its own server's entry.

Standard library and `rank_entry` only. The job ships this file and `rank_entry.py` into its job
dir, and the nodes run that copy with the Python that runs the ranks: the image's `python3` for
container jobs (the login node's interpreter may be another architecture or on a login-local
disk), the job's venv otherwise.

    python3 slurm_rank.py register HCCN_DIR HCCN_CONF NODES_FILE
    python3 slurm_rank.py table HCCN_DIR CARDS NODE_COUNT OUT
    python3 slurm_rank.py run RANK_TABLE LOG_DIR NODES_FILE -- COMMAND...

NODES_FILE has one `NODE_NAME ADDRESS` line per node of the job: the address Slurm itself reaches
the node at (NodeAddr), written by the batch script. A node is known by that address, not by what
its host name resolves to (a NodeName need not be a host name, and Debian's /etc/hosts maps the
host name to 127.0.1.1).

`run`: `SLURM_PROCID` follows Slurm's node order, while the table's `server_list` follows the order
of `server_id` (MindSpore's rank table docs: "the order of rank_id is consistent with the
dictionary order of server_id"). The two differ whenever node names and addresses sort
differently, and a rank taken from `SLURM_PROCID` then claims another server's rank id and HCCL
waits forever. So the task finds the entry of its own node and takes the `SLURM_LOCALID`-th device
of it, sets RANK_ID and DEVICE_ID, sends the rank's output to LOG_DIR/worker_<RANK_ID>.log and
execs COMMAND.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

try:
    from launcher.rank_entry import entry_for_host, server_order
except ImportError:  # the job dir's copy, next to this file
    from rank_entry import entry_for_host, server_order  # type: ignore[no-redef]

HCCN_ADDRESS_RE = re.compile(r"^\s*address_(\d{1,2})\s*=\s*(\S+)\s*$")


class RankLookupError(ValueError):
    """The table has no (single) entry for this node, or too few cards in it."""


# ---- addresses ------------------------------------------------------------------------------


def read_nodes_file(text: str) -> dict[str, str]:
    """NODE_NAME -> ADDRESS from the batch script's nodes file."""
    nodes = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            nodes[parts[0]] = parts[1]
    return nodes


def node_address(nodes: dict[str, str], node_name: str) -> str:
    """This node's address from the nodes file; never a loopback address."""
    address = nodes.get(node_name)
    if not address:
        raise RankLookupError(f"node {node_name!r} is not in the job's node list "
                              f"({', '.join(sorted(nodes)) or 'empty'})")
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        raise RankLookupError(f"node {node_name!r} has no IP address ({address!r})") from None
    if loopback and len(nodes) > 1:  # a one-node job talks to itself only
        raise RankLookupError(f"node {node_name!r} has the loopback address {address}; the "
                              "other nodes cannot reach it there")
    return address


def parse_hccn_conf(text: str, source: str) -> dict[int, str]:
    """Card number -> device IP from hccn.conf's `address_N=IP` lines."""
    ips: dict[int, str] = {}
    for line in text.splitlines():
        match = HCCN_ADDRESS_RE.match(line)
        if match:
            try:
                ips[int(match[1])] = str(ipaddress.ip_address(match[2]))
            except ValueError:
                raise RankLookupError(f"{source}: address_{match[1]}={match[2]!r} is not an "
                                      "IP address") from None
    if not ips:
        raise RankLookupError(f"{source} has no address_N=IP lines")
    return ips


# ---- the rank table -------------------------------------------------------------------------


def rank_table(device_ips: dict[str, dict[int, str]], cards: list[int]) -> dict[str, Any]:
    """HCCL rank table version 1.0 (the shape of templates/ascend/rank_table.json.j2, which
    `rlaunch ranktable` renders): servers in server_id order, rank ids 0..N-1 in that order."""
    servers = server_order({"server_id": sid} for sid in device_ips)
    rank = 0
    for server in servers:
        ips = device_ips[server["server_id"]]
        missing = [c for c in cards if c not in ips]
        if missing:
            raise RankLookupError(f"server {server['server_id']} has no device IP for card "
                                  f"{missing[0]} in its hccn.conf")
        server["device"] = []
        for card in cards:
            server["device"].append({"device_id": str(card), "device_ip": ips[card],
                                     "rank_id": str(rank)})
            rank += 1
        server["host_nic_ip"] = "reserve"
    return {"version": "1.0", "server_count": str(len(servers)), "server_list": servers,
            "status": "completed"}


def collect_registered(hccn_dir: Path, node_count: int) -> dict[str, dict[int, str]]:
    """The `<address>.conf` files the nodes wrote; exactly one per node of the job."""
    found = {p.stem: parse_hccn_conf(p.read_text(encoding="utf-8"), str(p))
             for p in sorted(hccn_dir.glob("*.conf"))}
    if len(found) != node_count:
        raise RankLookupError(f"{len(found)} of {node_count} nodes registered their card IPs in "
                              f"{hccn_dir} ({', '.join(found) or 'none'}); two nodes with one "
                              "address would look like this")
    return found


def server_for_node(table: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """The one `server_list` entry that any of `names` finds (`rank_entry`'s lookup, shared
    with the Kubernetes entrypoint: host_ip, then server_id)."""
    found = [entry_for_host(table, name) for name in sorted(names)]
    matches = list({id(e): e for e in found if e is not None}.values())
    if len(matches) != 1:
        known = ", ".join(str(s.get("server_id")) for s in table.get("server_list", [])
                          if isinstance(s, dict))
        what = "no entry" if not matches else f"{len(matches)} entries"
        raise RankLookupError(f"rank table has {what} for this node ({', '.join(sorted(names))}); "
                              f"its servers: {known}")
    return matches[0]


def rank_and_card(table: dict[str, Any], names: set[str], local_id: int) -> tuple[str, str]:
    """(RANK_ID, DEVICE_ID) of the `local_id`-th card task on the node called `names`."""
    server = server_for_node(table, names)
    devices = server.get("device") or []
    if not 0 <= local_id < len(devices):
        raise RankLookupError(f"server {server.get('server_id')} lists {len(devices)} cards; "
                              f"task {local_id} of this node has none")
    device = devices[local_id]
    return str(device["rank_id"]), str(device["device_id"])


# ---- the three steps ------------------------------------------------------------------------


def register(hccn_dir: Path, hccn_conf: Path, nodes_file: Path, node_name: str) -> Path:
    """Copy this node's card IPs to `hccn_dir/<node address>.conf`."""
    address = node_address(read_nodes_file(nodes_file.read_text(encoding="utf-8")), node_name)
    ips = parse_hccn_conf(hccn_conf.read_text(encoding="utf-8"), str(hccn_conf))
    target = hccn_dir / f"{address}.conf"
    tmp = hccn_dir / f".{address}.conf.tmp"
    tmp.write_text("".join(f"address_{k}={v}\n" for k, v in sorted(ips.items())))
    tmp.replace(target)
    return target


def write_table(hccn_dir: Path, cards: list[int], node_count: int, out: Path) -> None:
    table = rank_table(collect_registered(hccn_dir, node_count), cards)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out)


def run_rank(table_path: Path, log_dir: Path, nodes_file: Path, command: list[str]) -> int:
    node = os.environ.get("SLURMD_NODENAME", socket.gethostname())
    names = {node}
    nodes = read_nodes_file(nodes_file.read_text(encoding="utf-8"))
    if node in nodes:
        names.add(nodes[node])
    table = json.loads(table_path.read_text(encoding="utf-8"))
    local_id = int(os.environ.get("SLURM_LOCALID", "0"))
    rank, card = rank_and_card(table, names, local_id)
    print(f"rlaunch: task {os.environ.get('SLURM_PROCID', '?')} on {node} is rank {rank} on "
          f"card {card} (from {table_path.name})", file=sys.stderr, flush=True)
    os.environ["RANK_ID"], os.environ["DEVICE_ID"] = rank, card
    log = os.open(log_dir / f"worker_{rank}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.execvp(command[0], command)
    return 0  # not reached


USAGE = ("usage: slurm_rank.py register HCCN_DIR HCCN_CONF NODES_FILE | "
         "table HCCN_DIR CARDS NODE_COUNT OUT | run RANK_TABLE LOG_DIR NODES_FILE -- COMMAND...")


def _main(argv: list[str]) -> int:
    what, args = (argv[0], argv[1:]) if argv else ("", [])
    node = os.environ.get("SLURMD_NODENAME", socket.gethostname())
    try:
        if what == "register" and len(args) == 3:
            print(register(Path(args[0]), Path(args[1]), Path(args[2]), node))
            return 0
        if what == "table" and len(args) == 4 and args[2].isdigit():
            cards = [int(c) for c in args[1].split(",")]
            write_table(Path(args[0]), cards, int(args[2]), Path(args[3]))
            return 0
        if what == "run" and len(args) >= 5 and args[3] == "--":
            return run_rank(Path(args[0]), Path(args[1]), Path(args[2]), args[4:])
    except (OSError, ValueError, KeyError) as err:
        print(f"rlaunch: {what} failed on {node}: {err}", file=sys.stderr)
        return 1
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
