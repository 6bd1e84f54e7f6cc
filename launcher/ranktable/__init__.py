"""HCCL rank tables for Ascend: the model (`model`), device IPs from hccn.conf (`hccn`), building
one (`build`), and checking one read from disk (`check`).

Tables rlaunch writes are version "1.0" with every value a string, servers in the dictionary
order of `server_id` (`launcher.rank_entry.server_order`) and rank ids 0..N-1 in that order.
Tables it reads may come from MindX DL, from merge_hccl.py or from a person, so `check` judges
what HCCL needs, not rlaunch's own layout. A process finds its own server with
`launcher.rank_entry`.
"""

from launcher.ranktable.build import build_rank_table
from launcher.ranktable.check import check_rank_table, read_rank_table
from launcher.ranktable.hccn import load_device_ips, parse_hccn_conf
from launcher.ranktable.model import Device, RankTable, RankTableError, Server

__all__ = ["Device", "RankTable", "RankTableError", "Server", "build_rank_table",
           "check_rank_table", "load_device_ips", "parse_hccn_conf", "read_rank_table"]
