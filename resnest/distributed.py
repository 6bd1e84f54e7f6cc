"""Who am I in the job: rank, world size and device, from whichever launcher set the environment.

Understood, in this order:
- msrun / MindSpore dynamic cluster: MS_ROLE=MS_WORKER, MS_WORKER_NUM, MS_NODE_ID (+ scheduler);
- an Ascend rank table: RANK_TABLE_FILE with RANK_ID, RANK_SIZE (DEVICE_ID picks the chip);
- Slurm srun without msrun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID. MindSpore cannot form a
  group from these alone, so they are translated into dynamic-cluster variables (the scheduler
  runs on the first node, started by rank 0).
With none of them, one process on one device.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from resnest.contract import (
    DEVICE_KIND_ENV,
    DEVICE_KINDS,
    TARGET_OF_DEVICE_KIND,
    device_target_contradiction,
)


class DeviceRequestError(ValueError):
    """The job's device request is malformed or contradicts the config (a usage error, exit 2)."""


class DeviceUnavailableError(RuntimeError):
    """The requested device is not on this node or in this MindSpore build (exit 1)."""


@dataclass(frozen=True)
class ProcessGroupInfo:
    rank: int
    world_size: int
    local_rank: int
    source: str  # "single", "msrun", "rank_table", "slurm"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _int_env(env: dict[str, str], name: str, default: int) -> int:
    value = env.get(name, "")
    try:
        return int(value) if value != "" else default
    except ValueError:
        raise ValueError(f"environment {name}={value!r}: must be an integer") from None


def detect_process_group(env: dict[str, str] | None = None) -> ProcessGroupInfo:
    """Read rank/world from the environment without initialising anything."""
    env = dict(os.environ if env is None else env)
    if env.get("MS_ROLE") == "MS_WORKER" and env.get("MS_WORKER_NUM"):
        world = _int_env(env, "MS_WORKER_NUM", 1)
        rank = _int_env(env, "MS_NODE_ID", _int_env(env, "RANK_ID", 0))
        local = _int_env(env, "DEVICE_ID", _int_env(env, "MS_LOCAL_RANK", rank))
        return ProcessGroupInfo(rank, world, local, "msrun")
    if env.get("RANK_TABLE_FILE") and _int_env(env, "RANK_SIZE", 1) > 1:
        return ProcessGroupInfo(_int_env(env, "RANK_ID", 0), _int_env(env, "RANK_SIZE", 1),
                                _int_env(env, "DEVICE_ID", 0), "rank_table")
    if _int_env(env, "SLURM_NTASKS", 1) > 1 and "SLURM_PROCID" in env:
        return ProcessGroupInfo(_int_env(env, "SLURM_PROCID", 0), _int_env(env, "SLURM_NTASKS", 1),
                                _int_env(env, "SLURM_LOCALID", 0), "slurm")
    return ProcessGroupInfo(0, 1, _int_env(env, "DEVICE_ID", 0), "single")


def _first_slurm_host(env: dict[str, str]) -> str:
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "localhost"
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], check=True,
                             capture_output=True, text=True).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.CalledProcessError):
        pass
    return nodelist.split(",")[0].split("[")[0]


def _slurm_to_dynamic_cluster(info: ProcessGroupInfo) -> None:
    """Export MS_* variables from Slurm's; rank 0 also starts the cluster scheduler process."""
    env = os.environ
    env.setdefault("MS_SCHED_HOST", _first_slurm_host(dict(env)))
    env.setdefault("MS_SCHED_PORT", str(8118 + int(env.get("SLURM_JOB_ID", "0")) % 1000))
    _join_dynamic_cluster(info)


def rank_zero_address(table: Any) -> str:
    """The address of the server holding rank 0 in an HCCL rank table (read as untrusted):
    its `container_ip` (the pod IP the MindX DL operator writes), else its `host_ip`."""
    import ipaddress

    servers = table.get("server_list") if isinstance(table, dict) else None
    for server in servers if isinstance(servers, list) else []:
        devices = server.get("device") if isinstance(server, dict) else None
        if not isinstance(devices, list):
            continue
        if any(isinstance(d, dict) and str(d.get("rank_id")) == "0" for d in devices):
            for key in ("container_ip", "host_ip"):
                value = str(server.get(key) or "")
                try:
                    return str(ipaddress.IPv4Address(value))
                except ValueError:
                    continue
            raise ValueError("the rank table's server of rank 0 has no IPv4 container_ip "
                             "or host_ip")
    raise ValueError("the rank table lists no device with rank_id 0")


def _rank_table_to_dynamic_cluster(info: ProcessGroupInfo) -> None:
    """CPU standing in for the NPUs of a rank-table job: MindSpore's CPU backend has no HCCL, so
    the ranks the table gave form a dynamic cluster instead, its scheduler on rank 0's server."""
    import json

    from resnest.contract import read_bounded

    path = os.environ["RANK_TABLE_FILE"]
    try:
        host = rank_zero_address(json.loads(read_bounded(path, "rank table")))
    except (OSError, ValueError) as err:
        raise DeviceUnavailableError(f"rank table {path}: {err}") from None
    os.environ.setdefault("MS_SCHED_HOST", host)
    os.environ.setdefault("MS_SCHED_PORT", "8118")
    _join_dynamic_cluster(info)


def _join_dynamic_cluster(info: ProcessGroupInfo) -> None:
    """This process becomes dynamic-cluster worker `info.rank`; rank 0 also starts the
    scheduler (MS_SCHED_HOST and MS_SCHED_PORT are set)."""
    env = os.environ
    env["MS_WORKER_NUM"] = str(info.world_size)
    env["MS_NODE_ID"] = str(info.rank)
    if info.rank == 0:
        sched_env = dict(env, MS_ROLE="MS_SCHED")
        sched_env.pop("MS_NODE_ID", None)
        subprocess.Popen(  # lives until the workers finish; it exits with them
            [sys.executable, "-c", "from mindspore.communication import init; init()"],
            env=sched_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    env["MS_ROLE"] = "MS_WORKER"


def requested_device_target(config_target: str, env: dict[str, str] | None = None) -> str:
    """The device the job asked for: the launcher's `RLAUNCH_DEVICE_KIND`, else the config's.

    The launcher exports the kind it allocated (`--gpus` -> gpu, `--cpus` -> cpu); the trainer
    must use exactly that, e.g. train on CPU on a GPU node. An explicit `device_target` that
    contradicts it is refused rather than silently overridden.
    """
    env = os.environ if env is None else env
    kind = env.get(DEVICE_KIND_ENV, "")
    if not kind:
        return config_target
    if kind not in DEVICE_KINDS:
        raise DeviceRequestError(f"{DEVICE_KIND_ENV}={kind!r}: allowed values are "
                                 f"{', '.join(DEVICE_KINDS)}")
    contradiction = device_target_contradiction(config_target, kind)
    if contradiction:
        raise DeviceRequestError(contradiction)
    return TARGET_OF_DEVICE_KIND[kind]


CPU_STAND_IN_ENV = "RESNEST_CPU_STANDS_IN_FOR_DEVICES"


class CpuStandIn(Exception):
    """The requested device is absent and the job allowed CPU to stand in for it."""


def check_device_available(target: str) -> None:
    """Fail with one line when a GPU/Ascend target is not usable in this process."""
    if target == "CPU":
        return
    import mindspore as ms

    try:
        available = bool(ms.hal.is_available(target))
    except Exception:  # noqa: BLE001 - a backend that fails to probe is absent
        available = False
    if not available and os.environ.get(CPU_STAND_IN_ENV) == "1":
        # Test clusters declare fake GPU/NPU files to Slurm (scripts/slurm_cluster.sh): the job
        # opts in, explicitly, to training on CPU in their place.
        print(f"warning: no {target} here; {CPU_STAND_IN_ENV}=1, training on CPU instead",
              file=sys.stderr, flush=True)
        raise CpuStandIn
    if not available:
        source = f" (asked for by {DEVICE_KIND_ENV})" if os.environ.get(DEVICE_KIND_ENV) else ""
        raise DeviceUnavailableError(
            f"device {target}{source} is not available here: this MindSpore build or node has "
            f"no {target} backend (mindspore.hal.is_available({target!r}) is false)")


def resolve_device_target(requested: str) -> str:
    """`auto` -> the best backend this MindSpore build can use here."""
    if requested != "auto":
        try:
            check_device_available(requested)
        except CpuStandIn:
            return "CPU"
        return requested
    import mindspore as ms

    for target in ("Ascend", "GPU"):
        try:
            if ms.hal.is_available(target):
                return target
        except Exception:  # noqa: BLE001, S112 - a backend that fails to probe is absent
            continue
    return "CPU"


def ranks_on_this_node(world_size: int, env: dict[str, str] | None = None) -> int:
    """How many ranks share this node's CPUs: the launcher's count where it says one (MindX DL's
    MS_LOCAL_WORKER, Slurm's node count for msrun-per-node steps), else all of them."""
    env = dict(os.environ if env is None else env)
    local = _int_env(env, "MS_LOCAL_WORKER", 0)
    if local > 0:
        return local
    nodes = _int_env(env, "SLURM_JOB_NUM_NODES", _int_env(env, "SLURM_NNODES", 1))
    return max(1, world_size // max(1, nodes))


def cpu_thread_count(requested: int, world_size: int, env: dict[str, str] | None = None) -> int:
    """Compute threads for one CPU process: MindSpore's default (25) thrashes a small machine.

    An explicit `cpu_threads`, else the CPUs this process may run on (Slurm's binding, a
    container's cpuset) divided by the ranks on this node. OMP_NUM_THREADS is not read:
    MindSpore itself sets it to 1 in every process that ran a kernel, and children inherit it.
    """
    if requested > 0:
        return requested
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (available or 1) // ranks_on_this_node(world_size, env))


def select_device(target: str, device_id: int | None = None) -> None:
    """`mindspore.set_device`, tolerant of kernels that already ran on that same device.

    MindSpore refuses set_device once any kernel ran in the process (it then runs on the
    default, CPU); in-process callers (notebooks, tests) hit that, command lines never do.
    """
    import mindspore as ms

    try:
        if device_id is None:
            ms.set_device(target)
        else:
            ms.set_device(target, device_id)
    except RuntimeError:
        if ms.get_context("device_target") != target:
            raise


def setup_runtime(device_target: str, cpu_threads: int = 0) -> tuple[ProcessGroupInfo, str]:
    """Set the device, join the process group (collectives ready) and enable data parallel."""
    import mindspore as ms

    if os.environ.get("MS_ROLE") == "MS_SCHED":
        # msrun runs this same script as the cluster's scheduler: init() serves the workers
        # and returns only when they are done; the scheduler must not train.
        ms.set_device("CPU")
        from mindspore.communication import init

        init()
        sys.exit(0)
    info = detect_process_group()
    target = resolve_device_target(requested_device_target(device_target))
    if target == "CPU":
        select_device("CPU")
        ms.device_context.cpu.op_tuning.threads_num(cpu_thread_count(cpu_threads, info.world_size))
    else:
        select_device(target, info.local_rank)
    ms.set_context(mode=ms.GRAPH_MODE)
    # msrun's scheduler waits for every worker it spawned to join the cluster, a lone worker
    # too (`msrun --worker_num=1`, e.g. `rlaunch submit --cpus 1`): without init() it retries
    # for ten minutes and then fails the job after training succeeded.
    if info.distributed or info.source == "msrun":
        if info.source == "slurm":
            _slurm_to_dynamic_cluster(info)
        elif info.source == "rank_table" and target == "CPU":
            _rank_table_to_dynamic_cluster(info)
        from mindspore.communication import get_group_size, get_rank, init

        init()
        info = ProcessGroupInfo(get_rank(), get_group_size(), info.local_rank, info.source)
    if info.distributed:
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL,
                                     gradients_mean=True, device_num=info.world_size)
    return info, target


_SUM_CELL: Any = None


def allreduce_sum(values: list[int] | list[float], info: ProcessGroupInfo) -> list[float]:
    """Sum a few numbers over all ranks with a real AllReduce (identity on one process)."""
    global _SUM_CELL
    import numpy as np

    if not info.distributed:
        return [float(v) for v in values]
    from mindspore import Tensor, nn, ops

    if _SUM_CELL is None:  # one cell, so its graph compiles once per shape

        class _SumAcrossRanks(nn.Cell):
            def __init__(self) -> None:
                super().__init__()
                self.all_reduce = ops.AllReduce(ops.ReduceOp.SUM)

            def construct(self, x):
                return self.all_reduce(x)

        _SUM_CELL = _SumAcrossRanks()
    # float32 is reduced on every backend and exact for counts below 2**24 (16.7 M images)
    summed: Any = _SUM_CELL(Tensor(np.asarray(values, dtype=np.float32)))
    return [float(v) for v in summed.asnumpy()]


def average_batchnorm_statistics(net: Any, info: ProcessGroupInfo) -> None:
    """Replace every rank's BN running mean/variance by their mean over ranks (one AllReduce).

    Data parallel averages gradients, not BN statistics, so each rank drifts to its own. Averaging
    them before a checkpoint or an eval makes every rank hold the very weights that are saved
    (timm's `distribute_bn` does the same).
    """
    if not info.distributed:
        return
    import numpy as np
    from mindspore import Tensor

    stats = [p for p in net.get_parameters()
             if p.name.endswith(("moving_mean", "moving_variance"))]
    if not stats:
        return
    arrays = [p.asnumpy() for p in stats]
    flat = np.concatenate([a.ravel() for a in arrays]).astype(np.float32)
    summed = np.asarray(allreduce_sum(flat.tolist(), info), dtype=np.float32) / info.world_size
    offset = 0
    for param, array in zip(stats, arrays, strict=True):
        size = array.size
        param.set_data(Tensor(summed[offset:offset + size].reshape(array.shape).astype(array.dtype)))
        offset += size
