"""`python -m launcher.ranktable register DIR HCCN_CONF`: what each node of a Slurm Ascend job
runs, copying its hccn.conf to DIR/<node IP>.conf for the rank table step."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from launcher.ranktable.hccn import parse_hccn_conf
from launcher.ranktable.model import RankTableError


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
