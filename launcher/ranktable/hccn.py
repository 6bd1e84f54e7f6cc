"""Device IPs: hccn.conf text (`address_0=192.168.100.101`) or a YAML/JSON mapping of them."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from launcher.ranktable.model import RankTableError

HCCN_ADDRESS_RE = re.compile(r"^\s*address_(\d+)\s*=\s*(\S+)\s*$")
IPV4_RE = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")
# A 4,096-server mapping of 16 cards each is about 2.5 MB.
MAX_DEVICE_IP_FILE_BYTES = 8 << 20


def checked_ip(value: str, what: str) -> str:
    """The canonical text of an IP address (IPv4 checked by regex: 4,096-server tables)."""
    text = str(value).strip()
    if IPV4_RE.fullmatch(text):
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise RankTableError(f"{what}: {value!r} is not an IP address") from None


def parse_hccn_conf(text: str, source: str = "hccn.conf") -> dict[int, str]:
    """Device IPs by card number from hccn.conf text."""
    ips: dict[int, str] = {}
    for line in text.splitlines():
        match = HCCN_ADDRESS_RE.match(line)
        if match:
            ips[int(match[1])] = checked_ip(match[2], f"{source}: address_{match[1]}")
    if not ips:
        raise RankTableError(f"{source} has no address_N=IP lines")
    return ips


def read_bounded(path: Path, what: str, limit: int) -> bytes:
    """A regular file of at most `limit` bytes (resnest.contract.read_bounded: a FIFO is
    refused at once, never opened blocking), or RankTableError with one line saying why not."""
    from resnest.contract import read_bounded as read_regular_file

    try:
        return read_regular_file(path, what, limit)
    except OSError as err:
        raise RankTableError(str(err)) from None


def load_device_ips(path: Path) -> dict[str, dict[int, str]] | dict[int, str]:
    """hccn.conf (one server) or a JSON/YAML mapping {server_ip: {card: ip} | [ip, ...]}."""
    try:
        text = read_bounded(path, "device IP file", MAX_DEVICE_IP_FILE_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise RankTableError(f"device IP file {str(path)!r} is not UTF-8 text") from None
    if any(HCCN_ADDRESS_RE.match(line) for line in text.splitlines()):
        return parse_hccn_conf(text, str(path))
    import yaml

    from resnest.config import load_plain_yaml

    try:
        data = load_plain_yaml(text)  # no aliases, bounded nesting
    except yaml.YAMLError:
        raise RankTableError(f"device IP file {str(path)!r} is neither hccn.conf nor YAML/JSON") from None
    if not isinstance(data, dict):
        raise RankTableError(f"device IP file {str(path)!r} must map server IP -> device IPs")
    return {str(server): _card_ips(ips, f"{str(path)!r}: entry for {server!r}")
            for server, ips in data.items()}


def _card_ips(ips: object, where: str) -> dict[int, str]:
    """{card: ip} from a list of IPs (card = position) or a mapping of card numbers."""
    if isinstance(ips, list):
        ips = dict(enumerate(ips))
    if not isinstance(ips, dict):
        raise RankTableError(f"{where} must be a list or mapping")
    cards: dict[int, str] = {}
    for card, ip in ips.items():
        if isinstance(card, bool) or not str(card).isdigit():
            raise RankTableError(f"{where}: {card!r} is not a card number")
        cards[int(card)] = str(ip)
    return cards
