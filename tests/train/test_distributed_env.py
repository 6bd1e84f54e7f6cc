"""Rank and world size from msrun, rank-table and Slurm environments."""

from __future__ import annotations

import pytest

from resnest.distributed import detect_process_group, rank_zero_address


def test_single_process_by_default() -> None:
    info = detect_process_group({})
    assert (info.rank, info.world_size, info.source, info.distributed) == (0, 1, "single", False)


def test_msrun_dynamic_cluster() -> None:
    info = detect_process_group({"MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "8", "MS_NODE_ID": "5"})
    assert (info.rank, info.world_size, info.source) == (5, 8, "msrun")


def test_msrun_scheduler_is_not_a_worker() -> None:
    assert detect_process_group({"MS_ROLE": "MS_SCHED", "MS_WORKER_NUM": "8"}).source == "single"


def test_rank_table() -> None:
    env = {"RANK_TABLE_FILE": "/x.json", "RANK_ID": "3", "RANK_SIZE": "8", "DEVICE_ID": "3"}
    info = detect_process_group(env)
    assert (info.rank, info.world_size, info.local_rank, info.source) == (3, 8, 3, "rank_table")


def test_cpu_standing_in_for_npus_finds_the_scheduler_on_rank_zeros_server() -> None:
    # Servers in table order, rank 0 on the second: its pod IP (container_ip) hosts the
    # dynamic cluster's scheduler; a table without one is an error, never a guess.
    table = {"server_list": [
        {"host_ip": "10.0.0.12", "container_ip": "10.244.2.7",
         "device": [{"device_id": "0", "rank_id": "8"}]},
        {"host_ip": "10.0.0.11", "container_ip": "10.244.1.5",
         "device": [{"device_id": "0", "rank_id": "0"}]}]}
    assert rank_zero_address(table) == "10.244.1.5"
    del table["server_list"][1]["container_ip"]
    assert rank_zero_address(table) == "10.0.0.11"
    table["server_list"][1]["host_ip"] = "10.0.0.11; rm -rf /"
    with pytest.raises(ValueError, match="no IPv4"):
        rank_zero_address(table)
    with pytest.raises(ValueError, match="no device with rank_id 0"):
        rank_zero_address({"server_list": [table["server_list"][0]]})
    with pytest.raises(ValueError, match="no device with rank_id 0"):
        rank_zero_address(["not", "a", "table"])


def test_slurm_srun() -> None:
    env = {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1"}
    info = detect_process_group(env)
    assert (info.rank, info.world_size, info.local_rank, info.source) == (9, 16, 1, "slurm")


def test_bad_integer_is_named() -> None:
    with pytest.raises(ValueError, match="MS_WORKER_NUM='eight'"):
        detect_process_group({"MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "eight"})


def test_cpu_threads_split_the_cpus_between_the_ranks_of_this_node() -> None:
    import os

    from resnest.distributed import cpu_thread_count

    cpus = len(os.sched_getaffinity(0))
    assert cpu_thread_count(0, 1, env={}) == cpus
    assert cpu_thread_count(0, 2 * cpus, env={}) == 1
    assert cpu_thread_count(3, 2, env={}) == 3  # cpu_threads wins
    # 2 nodes x 1 rank under srun + msrun: each rank has its node's CPUs, not half of them
    assert cpu_thread_count(0, 2, env={"SLURM_JOB_NUM_NODES": "2"}) == cpus
    assert cpu_thread_count(0, 16, env={"MS_LOCAL_WORKER": "8"}) == max(1, cpus // 8)
    # MindSpore leaves OMP_NUM_THREADS=1 to the children of any process that ran a kernel
    assert cpu_thread_count(0, 1, env={"OMP_NUM_THREADS": "1"}) == cpus
