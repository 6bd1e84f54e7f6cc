"""HCCL rank tables: building, the rules `--check` enforces, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import cli
from launcher.ranktable import (
    RankTableError,
    build_rank_table,
    check_rank_table,
    parse_device_range,
    parse_hccn_conf,
)

HCCN = "".join(f"address_{i}=192.168.100.{101 + i}\nnetmask_{i}=255.255.255.0\n" for i in range(8))


def table(servers: int = 2, devices: list[int] | None = None) -> dict:
    ips = {f"10.0.0.{s + 1}": {i: f"192.168.{s}.{i + 1}" for i in range(8)} for s in range(servers)}
    return json.loads(build_rank_table(ips, devices or list(range(8))).render())


def test_every_value_is_a_string_and_ranks_are_consecutive() -> None:
    data = table(3)
    assert data["version"] == "1.0" and data["server_count"] == "3"
    ranks = [d["rank_id"] for s in data["server_list"] for d in s["device"]]
    assert ranks == [str(i) for i in range(24)]
    assert all(isinstance(v, str) for s in data["server_list"] for d in s["device"]
               for v in d.values())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.update(version=1.0), "version must be the string"),
        (lambda t: t.update(server_count=2), "server_count must be the string '2'"),
        (lambda t: t["server_list"].reverse(), "ordered by server_id"),
        (lambda t: t["server_list"][1]["device"][0].update(device_ip="192.168.0.1"), "used twice"),
        (lambda t: t["server_list"][0]["device"][0].update(rank_id=0), "rank_id must be a string"),
        (lambda t: t["server_list"][0]["device"][3].update(rank_id="9"), "rank_id must be '3'"),
        (lambda t: t["server_list"][0]["device"][0].update(device_id="8"), "card number 0-7"),
        (lambda t: t["server_list"][0].update(server_id="node1"), "not an IP address"),
        (lambda t: t["server_list"][1]["device"].pop(), "has 7 devices"),
    ],
)
def test_check_finds_each_problem(mutate, message: str) -> None:
    data = table()
    mutate(data)
    assert any(message in p for p in check_rank_table(data)), check_rank_table(data)


def test_parsers() -> None:
    assert parse_device_range("0-3,6") == [0, 1, 2, 3, 6]
    assert parse_hccn_conf(HCCN)[7] == "192.168.100.108"
    for bad in ("0-9", "3-1", "a", "1,1"):
        with pytest.raises(RankTableError):
            parse_device_range(bad)
    with pytest.raises(RankTableError, match="not an IP address"):
        parse_hccn_conf("address_0=999.1.1.1\n")


def test_missing_device_ip_is_clear() -> None:
    with pytest.raises(RankTableError, match="no device IP for card 7"):
        build_rank_table({"10.0.0.1": {i: f"1.1.1.{i}" for i in range(7)}}, list(range(8)))


def test_cli_hccn_conf_write_and_check(tmp_path: Path) -> None:
    (tmp_path / "hccn.conf").write_text(HCCN)
    out = tmp_path / "rt.json"
    runner = CliRunner()
    result = runner.invoke(cli, ["ranktable", "--server", "10.1.1.1", "--devices", "4-7",
                                 "--device-ips", str(tmp_path / "hccn.conf"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [d["device_id"] for d in data["server_list"][0]["device"]] == ["4", "5", "6", "7"]
    result = runner.invoke(cli, ["ranktable", "--check", str(out)])
    assert result.exit_code == 0 and "ok (1 servers, 4 ranks)" in result.output
    data["server_count"] = 1
    out.write_text(json.dumps(data))
    result = runner.invoke(cli, ["ranktable", "--check", str(out)])
    assert result.exit_code == 1 and "server_count must be the string" in result.output


def test_cli_yaml_mapping_for_many_servers(tmp_path: Path) -> None:
    mapping = {f"10.0.1.{s}": [f"172.16.{s}.{i}" for i in range(8)] for s in (2, 1)}
    (tmp_path / "ips.yaml").write_text(json.dumps(mapping))
    result = CliRunner().invoke(cli, ["ranktable", "--device-ips", str(tmp_path / "ips.yaml"),
                                      "--server", "10.0.1.2", "--server", "10.0.1.1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [s["server_id"] for s in data["server_list"]] == ["10.0.1.1", "10.0.1.2"]


def test_cli_bad_server_ip_exit_2(tmp_path: Path) -> None:
    (tmp_path / "hccn.conf").write_text(HCCN)
    result = CliRunner().invoke(cli, ["ranktable", "--server", "$(id)", "--device-ips",
                                      str(tmp_path / "hccn.conf")])
    assert result.exit_code == 2 and "'$(id)' is not an IP address" in result.output
