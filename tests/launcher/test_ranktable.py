"""HCCL rank tables: building, the rules `--check` enforces, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import cli
from launcher.rank_entry import entry_for_host, find_entry, local_ranks, server_order
from launcher.ranktable import (
    RankTableError,
    build_rank_table,
    check_rank_table,
    parse_hccn_conf,
    read_rank_table,
)
from launcher.spec import SpecError, parse_card_list

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


# Huawei's own example shape (CANN HCCL rank table guide): node names, not IPs, as server_id.
HUAWEI_NODE_0 = {
    "status": "completed", "version": "1.0", "server_count": "2",
    "server_list": [
        {"server_id": f"node_{s}", "host_nic_ip": "reserve",
         "device": [{"device_id": str(d), "device_ip": f"192.168.{s}.{d + 8}",
                     "rank_id": str(8 * s + d)} for d in range(8)]}
        for s in range(2)],
}


def test_two_servers_follow_server_id_dictionary_order() -> None:
    """MindSpore: rank order follows the dictionary order of server_id: 10.0.0.10 < 10.0.0.9."""
    ips = {ip: {i: f"192.168.{ip.rsplit('.', 1)[1]}.{i}" for i in range(8)}
           for ip in ("10.0.0.9", "10.0.0.10")}
    data = json.loads(build_rank_table(ips, list(range(8))).render())
    assert [s["server_id"] for s in data["server_list"]] == ["10.0.0.10", "10.0.0.9"]
    assert data["server_list"][0]["device"][0]["rank_id"] == "0"
    assert data["server_list"][1]["device"][0]["rank_id"] == "8"
    assert check_rank_table(data) == []
    assert server_order([{"server_id": "10.0.0.9"}, {"server_id": "10.0.0.10"}]) == [
        {"server_id": "10.0.0.10"}, {"server_id": "10.0.0.9"}]


# What the MindX DL operator writes for a two-pod job (mind-cluster
# component/ascend-operator/pkg/ranktable/common/{common.go,server.go}): servers sorted by their
# first rank, pod k holding ranks 8k..8k+7, the device plugin's server_id (here pod UIDs, whose
# dictionary order is the reverse of the rank order), host_ip empty when the plugin did not
# report it, the pod IP as container_ip, hardware_type, every number a string.
MINDX_OPERATOR = {
    "status": "completed", "version": "1.0", "server_count": "2",
    "server_list": [
        {"server_id": uid, "host_ip": host_ip, "container_ip": f"172.16.0.{s + 10}",
         "hardware_type": "800I-A2-64G",
         "device": [{"device_id": str(d), "device_ip": f"192.168.{s}.{d + 8}",
                     "rank_id": str(8 * s + d)} for d in range(8)]}
        for s, (uid, host_ip) in enumerate([("f0e1d2c3-0000-4000-8000-000000000001", ""),
                                            ("0a1b2c3d-0000-4000-8000-000000000002",
                                             "10.0.0.2")])],
}


def test_check_accepts_the_mindx_operator_table_and_its_server_order() -> None:
    ordered = [s["server_id"] for s in server_order(MINDX_OPERATOR["server_list"])]
    assert ordered != [s["server_id"] for s in MINDX_OPERATOR["server_list"]]
    assert check_rank_table(MINDX_OPERATOR) == []


def copy(data: dict) -> dict:
    return json.loads(json.dumps(data))


@pytest.mark.parametrize("change", [
    lambda t: None,  # Huawei's example as it is
    # merge_hccl.py writes integer rank ids and server counts
    lambda t: [d.update(rank_id=int(d["rank_id"])) for s in t["server_list"] for d in s["device"]],
    lambda t: t.update(server_count=2),
    # MindX DL tables: host_ip, container_ip, the pod UID as server_id, device_port
    lambda t: [s.update(host_ip=f"10.0.0.{i}", container_ip=f"172.16.0.{i}")
               for i, s in enumerate(t["server_list"])],
    lambda t: t["server_list"][0].update(server_id="5c1a2b3c-0000-4000-8000-00000000000a"),
    lambda t: t["server_list"][0]["device"][0].update(device_port="16666"),
    # older device plugins report the node IP as server_id; ranks need not follow its order
    lambda t: [s.update(server_id=ip) for s, ip in zip(t["server_list"], ("10.0.0.9",
                                                                          "10.0.0.10"))],
    # integer device ids, and a server whose ranks come before the first server's
    lambda t: [d.update(device_id=int(d["device_id"])) for s in t["server_list"]
               for d in s["device"]],
    lambda t: t["server_list"].reverse(),
    # A3 super-pod tables (version 1.2)
    lambda t: t.update(version="1.2", super_pod_list=[
        {"super_pod_id": "0", "server_list": [{"server_id": "node_0"}, {"server_id": "node_1"}]}]),
    lambda t: [d.update(super_device_id=str(100 + int(d["rank_id"])))
               for s in t["server_list"] for d in s["device"]],
])
def test_check_accepts_what_hccl_accepts(change) -> None:
    data = copy(HUAWEI_NODE_0)
    change(data)
    assert check_rank_table(data) == []


def test_check_accepts_sixteen_card_servers() -> None:
    data = table(1)
    data["server_list"][0]["device"] += [
        {"device_id": str(d), "device_ip": f"192.168.9.{d}", "rank_id": str(d)}
        for d in range(8, 16)]
    assert check_rank_table(data) == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.update(version="2.5"), "version must be one of 1.0, 1.2, got '2.5'"),
        (lambda t: t.update(server_count="3"), "server_count is '3' but server_list holds 2"),
        (lambda t: t["server_list"][1]["device"][0].update(device_ip="192.168.0.9"),
         "server node_1 device[0]: device_ip 192.168.0.9 is also used by server node_0 device[1]"),
        (lambda t: t["server_list"][1]["device"][2].update(rank_id="3"),
         "server node_1 device[2]: rank_id 3 is also used by server node_0 device[3]"),
        (lambda t: t["server_list"][1]["device"][7].update(rank_id="20"),
         "rank ids must run 0-15 without gaps: missing 15"),
        (lambda t: t["server_list"][1]["device"][4].update(rank_id="-4"),
         "server node_1 device[4]: rank_id '-4' is not a whole number"),
        (lambda t: t["server_list"][1].update(server_id="node_0"),
         "server node_0: server_id is used twice"),
        (lambda t: t["server_list"][0].update(server_id="n" * 64), "string of 1-63 characters"),
        (lambda t: t["server_list"][0]["device"][0].update(device_id="16"), "card number 0-15"),
        (lambda t: t["server_list"][0]["device"][1].update(device_id="0"),
         "device_id 0 appears twice"),
        (lambda t: t["server_list"][0].update(host_ip="node"),
         "server node_0: host_ip 'node' is not an IP address"),
        (lambda t: t["server_list"][1].update(container_ip=""),
         "server node_1: container_ip '' is not an IP address"),
        (lambda t: t["server_list"][1].update(hardware_type=8),
         "server node_1: hardware_type 8 is not a string"),
        (lambda t: t["server_list"][0]["device"][3].update(device_ip=""),
         "server node_0 device[3]: device_ip '' is not an IP address"),
        (lambda t: t["server_list"][0]["device"][3].update(super_device_id="x"),
         "server node_0 device[3]: super_device_id 'x' is not a whole number"),
        (lambda t: t["server_list"][1].update(device=[]), "server node_1: device must list 1-16"),
        (lambda t: t.update(status="initializing"),
         "status is 'initializing', not 'completed': the table is not complete"),
        (lambda t: t.update(version="2.0", rank_list=[]),
         "version '2.0' tables list ranks (rank_list), not servers"),
        (lambda t: t.update(super_pod_list=[{"server_list": []}]), "version 1.2 tables"),
    ],
)
def test_check_rejects_what_breaks_training_and_names_the_entry(mutate, message: str) -> None:
    data = copy(HUAWEI_NODE_0)
    mutate(data)
    problems = check_rank_table(data)
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize(("keys", "server"), [
    ({"host_ip": "10.0.0.2"}, 1),
    ({"pod_ip": "172.16.0.1"}, 0),
    ({"ids": ["uid-b"]}, 1),
    ({"host_ip": "10.9.9.9", "pod_ip": "172.16.0.9", "ids": ["uid-a"]}, 0),
    ({"host_ip": "10.9.9.9"}, None),
])
def test_find_entry_by_host_ip_then_pod_ip_then_server_id(keys: dict, server: int | None) -> None:
    data = {"server_list": [
        {"server_id": "uid-a", "host_ip": "10.0.0.1", "container_ip": "172.16.0.1", "device": []},
        {"server_id": "uid-b", "host_ip": "10.0.0.2", "container_ip": "172.16.0.2", "device": []},
    ]}
    found = find_entry(data, **keys)
    assert found is (None if server is None else data["server_list"][server])


def test_entry_for_host_and_local_ranks() -> None:
    data = table(2, [4, 5, 6, 7])
    entry = entry_for_host(data, "10.0.0.2")
    assert entry is not None and entry["server_id"] == "10.0.0.2"
    # (rank, index inside the container, physical card)
    assert local_ranks(entry) == [(4, 0, 4), (5, 1, 5), (6, 2, 6), (7, 3, 7)]
    assert entry_for_host(data, "10.0.0.3") is None


def test_hccn_conf_gives_device_ips_by_card() -> None:
    assert parse_hccn_conf(HCCN)[7] == "192.168.100.108"
    with pytest.raises(RankTableError, match="address_0: '999.1.1.1' is not an IP address"):
        parse_hccn_conf("address_0=999.1.1.1\n")


@pytest.mark.parametrize(("text", "highest", "cards"), [
    ("0-3,6", 7, [0, 1, 2, 3, 6]),
    ("8-15", 15, list(range(8, 16))),  # the upper half of a 16-card 910B server
    ("0-15", 15, list(range(16))),
])
def test_card_lists_reach_card_15_on_sixteen_card_servers(text: str, highest: int,
                                                          cards: list[int]) -> None:
    assert parse_card_list(text, "--devices", highest) == cards


@pytest.mark.parametrize(("text", "highest", "message"), [
    ("0-16", 15, "card 16 is out of range 0-15"),
    ("8-15", 7, "card 15 is out of range 0-7"),
    ("3-1", 15, "range 3-1 runs backwards"),
    ("a", 15, "is not a card list like 0-7 or 0,1,2,3 (cards 0-15)"),
    ("1,1", 15, "names a card twice"),
    ("0-99999999999", 15, "card 99999999999 is out of range 0-15"),
])
def test_card_list_refusals_name_the_list(text: str, highest: int, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_card_list(text, "--devices", highest)
    assert message in str(raised.value) and repr(text) in str(raised.value)


def test_rank_table_reads_are_bounded_and_name_the_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "hccl.json"
    path.write_text(json.dumps(MINDX_OPERATOR))
    assert read_rank_table(path) == MINDX_OPERATOR
    monkeypatch.setattr("launcher.ranktable.check.MAX_RANK_TABLE_BYTES", 100)
    with pytest.raises(RankTableError, match=f"rank table '{path}' is larger than 100 bytes"):
        read_rank_table(path)
    path.write_text('{"server_list": [')
    with pytest.raises(RankTableError, match=f"rank table '{path}' is not a JSON file"):
        read_rank_table(path)


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
    data["server_count"] = 1  # an integer count is fine (merge_hccl.py writes them)
    out.write_text(json.dumps(data))
    result = runner.invoke(cli, ["ranktable", "--check", str(out)])
    assert result.exit_code == 0, result.output
    data["server_count"] = "2"
    out.write_text(json.dumps(data))
    result = runner.invoke(cli, ["ranktable", "--check", str(out)])
    assert result.exit_code == 1
    assert "server_count is '2' but server_list holds 1 servers" in result.output


@pytest.mark.parametrize("written", [HUAWEI_NODE_0, MINDX_OPERATOR])
def test_cli_check_accepts_huawei_and_mindx_tables(tmp_path: Path, written: dict) -> None:
    path = tmp_path / "hccl.json"
    path.write_text(json.dumps(written))
    result = CliRunner().invoke(cli, ["ranktable", "--check", str(path)])
    assert result.exit_code == 0, result.output
    assert "ok (2 servers, 16 ranks)" in result.output


def test_cli_check_names_the_file_and_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "hccl.json"
    broken = copy(MINDX_OPERATOR)
    broken["server_list"][1]["device"][0]["device_ip"] = "192.168.0.9"
    path.write_text(json.dumps(broken))
    result = CliRunner().invoke(cli, ["ranktable", "--check", str(path)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"{path}: server 0a1b2c3d-0000-4000-8000-000000000002 device[0]: device_ip 192.168.0.9 "
        "is also used by server f0e1d2c3-0000-4000-8000-000000000001 device[1]")


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
