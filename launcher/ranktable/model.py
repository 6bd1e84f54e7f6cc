"""The rank table rlaunch writes, and the error every rank-table step raises."""

from __future__ import annotations

from dataclasses import dataclass, field

from launcher.templating import render_template

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
