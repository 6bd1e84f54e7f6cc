"""Find one server's entry in an HCCL rank table: the one lookup every launcher path shares.

Standard library only, because the file itself is shipped into Kubernetes pods (in the job's
ConfigMap) and run there by the entrypoint; Slurm job steps and `rlaunch ranktable` import it.

A process finds its server by `host_ip`, then `container_ip` (the pod IP the MindX DL operator
writes; mind-cluster component/ascend-operator/pkg/ranktable/common/common.go buildServerInfo),
then `server_id`, which is the node IP in tables written by hand or by `rlaunch ranktable`, and
the pod UID in tables written from recent MindX DL device plugins.

    python3 rank_entry.py TABLE [--host-ip IP] [--pod-ip IP] [--id ID]...

prints one line `RANK_ID LOCAL_INDEX DEVICE_ID` per card of the entry, in table order; exits 1
with one line on stderr when no entry matches.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any


def server_order(servers: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Servers in the dictionary (string) order of `server_id`, the order rank ids follow.

    MindSpore's rank table docs: "the order of rank_id is consistent with the dictionary order of
    server_id" (so "10.0.0.10" sorts before "10.0.0.9"). This is the only place that orders them.
    """
    return sorted(servers, key=lambda server: str(server.get("server_id", "")))


def find_entry(table: dict[str, Any], host_ip: str | None = None, pod_ip: str | None = None,
               ids: Iterable[str] = ()) -> dict[str, Any] | None:
    """The server entry for this process: by host_ip, then container_ip, then server_id."""
    servers = [s for s in table.get("server_list", []) if isinstance(s, dict)]
    for field, wanted in (("host_ip", [host_ip]), ("container_ip", [pod_ip]),
                          ("server_id", [*ids, host_ip, pod_ip])):
        for value in wanted:
            if not value:
                continue
            for server in servers:
                if str(server.get(field, "")) == value:
                    return server
    return None


def entry_for_host(table: dict[str, Any], host: str) -> dict[str, Any] | None:
    """The entry of a host known by one IP or name (a Slurm node): host_ip, then server_id."""
    return find_entry(table, host_ip=host, ids=(host,))


def local_ranks(entry: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(rank_id, local card index, physical device_id) for each card of one server entry.

    Inside a container the runtime shows only the allocated cards, renumbered 0..n-1, so a
    process selects its card by the local index (DEVICE_ID), not by the physical id.
    """
    return [(int(d["rank_id"]), index, int(d["device_id"]))
            for index, d in enumerate(entry.get("device", []))]


def _main(argv: list[str]) -> int:
    if not argv:
        print("usage: rank_entry.py TABLE [--host-ip IP] [--pod-ip IP] [--id ID]...",
              file=sys.stderr)
        return 2
    path, rest = argv[0], argv[1:]
    host_ip = pod_ip = None
    ids: list[str] = []
    while rest:
        flag, value, rest = rest[0], (rest[1] if len(rest) > 1 else ""), rest[2:]
        if flag == "--host-ip":
            host_ip = value
        elif flag == "--pod-ip":
            pod_ip = value
        elif flag == "--id":
            ids.append(value)
        else:
            print(f"rank_entry.py: unknown argument {flag!r}", file=sys.stderr)
            return 2
    try:
        with open(path, encoding="utf-8") as fh:
            table = json.load(fh)
    except (OSError, ValueError) as err:
        print(f"rank table {path} cannot be read: {err}", file=sys.stderr)
        return 1
    entry = find_entry(table, host_ip, pod_ip, ids) if isinstance(table, dict) else None
    if entry is None:
        print(f"rank table {path} has no entry for host_ip={host_ip or '-'} "
              f"pod_ip={pod_ip or '-'} ids={','.join(i for i in ids if i) or '-'}",
              file=sys.stderr)
        return 1
    for rank, index, device in local_ranks(entry):
        print(rank, index, device)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
