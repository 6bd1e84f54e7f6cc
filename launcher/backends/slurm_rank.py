"""Ascend under Slurm: each card's task takes its rank and card from its own server's entry of
the rank table, then runs the rank.

`SLURM_PROCID` follows Slurm's node order; the rank table's `server_list` follows the order of
`server_id` (MindSpore's rank table docs: "the order of rank_id is consistent with the dictionary
order of server_id"). The two differ whenever node names and addresses sort differently, and a
rank taken from `SLURM_PROCID` then claims another server's rank id and HCCL waits forever. So
the task finds the entry whose `server_id` (or `host_ip`) is one of this node's names or
addresses and takes the `SLURM_LOCALID`-th device of it.

    python -m launcher.backends.slurm_rank RANK_TABLE LOG_DIR -- COMMAND...

sets RANK_ID and DEVICE_ID, sends the rank's output to LOG_DIR/worker_<RANK_ID>.log and execs
COMMAND. Standard library and `launcher.rank_entry` only: it runs once per card at job start.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from launcher.rank_entry import entry_for_host


class RankLookupError(ValueError):
    """The table has no (single) entry for this node, or too few cards in it."""


def server_for_node(table: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """The one `server_list` entry that any of `names` finds (`launcher.rank_entry`'s lookup,
    shared with the Kubernetes entrypoint: host_ip, then server_id)."""
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


def node_names() -> set[str]:
    """What a rank table may call this node: Slurm's node name, host names and addresses."""
    names = {socket.gethostname(), socket.gethostname().split(".")[0]}
    if os.environ.get("SLURMD_NODENAME"):
        names.add(os.environ["SLURMD_NODENAME"])
    for host in sorted(names):  # a copy: the loop adds to names
        try:
            names.update(str(info[4][0]) for info in socket.getaddrinfo(host, None))
        except OSError:
            continue
    return {n for n in names if n}


def _main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m launcher.backends.slurm_rank RANK_TABLE LOG_DIR -- COMMAND...",
              file=sys.stderr)
        return 2
    table_path, log_dir, command = Path(argv[0]), Path(argv[1]), argv[3:]
    try:
        table = json.loads(table_path.read_text(encoding="utf-8"))
        local_id = int(os.environ.get("SLURM_LOCALID", "0"))
        rank, card = rank_and_card(table, node_names(), local_id)
    except (OSError, ValueError, KeyError) as err:
        print(f"rlaunch: rank lookup failed on {socket.gethostname()}: {err}", file=sys.stderr)
        return 1
    print(f"rlaunch: task {os.environ.get('SLURM_PROCID', '?')} on {socket.gethostname()} is "
          f"rank {rank} on card {card} (from {table_path.name})", file=sys.stderr, flush=True)
    os.environ["RANK_ID"], os.environ["DEVICE_ID"] = rank, card
    log = os.open(log_dir / f"worker_{rank}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        os.execvp(command[0], command)
    except OSError as err:
        print(f"rlaunch: cannot run {command[0]!r}: {err}", file=sys.stderr)
        return 1
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
