"""Inference engines shared by the server, offline evaluation and export's self-check.

Two engines run a ResNeSt classifier: MindSpore (MINDIR graphs and checkpoints, on CPU, GPU and
Ascend) and ONNX Runtime (``.onnx`` files written by ``resnest.export --format ONNX``, on CPU).
``resolve_engine`` turns the user's ``--engine`` choice (or ``auto``) and the model file into one
of them, or a one-line reason why the combination cannot run. ONNX Runtime's thread pool is
sized from the CPUs this process may actually use (cgroup CPU quota, CPU affinity), not from the
host's core count, which in a container or a Slurm step can be many times larger.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("resnest.serve")

MINDSPORE = "mindspore"
ONNXRUNTIME = "onnxruntime"
ENGINES: tuple[str, ...] = (MINDSPORE, ONNXRUNTIME)
ENGINE_CHOICES: tuple[str, ...] = ("auto", *ENGINES)
MODEL_SUFFIXES: dict[str, str] = {".mindir": "mindir", ".ckpt": "checkpoint", ".onnx": "onnx"}


class EngineChoiceError(ValueError):
    """The engine, the model file and the device do not go together; the message says why."""


def resolve_engine(requested: str, model: Path, device: str) -> str:
    """The engine that runs ``model`` on ``device``: ``auto`` picks ONNX Runtime for ``.onnx`` on
    CPU and MindSpore for MINDIR and checkpoints; impossible combinations raise."""
    fmt = MODEL_SUFFIXES.get(model.suffix.lower())
    if fmt is None:
        raise EngineChoiceError(f"--model {model}: expected a .onnx, .mindir or .ckpt file")
    if requested not in ENGINE_CHOICES:
        raise EngineChoiceError(f"--engine {requested!r}: choose one of {', '.join(ENGINE_CHOICES)}")
    engine = requested
    if engine == "auto":
        engine = ONNXRUNTIME if fmt == "onnx" else MINDSPORE
    if engine == ONNXRUNTIME and fmt != "onnx":
        raise EngineChoiceError(
            f"--engine onnxruntime runs .onnx models, not {model.name}: export one with "
            "`python -m resnest.export --format ONNX`, or use --engine mindspore")
    if engine == MINDSPORE and fmt == "onnx":
        raise EngineChoiceError(
            f"--engine mindspore cannot load {model.name} (MindSpore reads MINDIR and "
            "checkpoints): use --engine onnxruntime, or export --format MINDIR")
    if engine == ONNXRUNTIME and device != "cpu":
        # The onnxruntime wheel on PyPI carries only the CPU execution provider; GPU and Ascend
        # serve through MindSpore, which has their kernels.
        raise EngineChoiceError(
            f"--engine onnxruntime runs on --device cpu only (got {device!r}): serve a MINDIR "
            "with --engine mindspore on GPU/Ascend")
    return engine


def _quota(folder: Path) -> float | None:
    """CPUs of one cgroup folder's CFS quota: v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD"),
    else v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1: none)."""
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((folder / "cpu.cfs_quota_us").read_text())
        period_us = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _cgroup_folders(root: Path, proc_cgroup: Path) -> list[Path]:
    """This process's cgroup folders holding CPU controls, own first, then its ancestors.

    ``/proc/self/cgroup`` names the process's cgroup per hierarchy ("0::/PATH" for v2,
    "N:cpu,cpuacct:/PATH" for v1). Inside a container with a cgroup namespace PATH is "/" and
    the mount shows the container's own cgroup; on a host it is the full path.
    """
    mounts: list[tuple[Path, str]] = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1].split(","), parts[2].lstrip("/")
        if parts[0] == "0" and not parts[1]:
            mounts.append((root, path))
        elif "cpu" in controllers:
            for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
                mounts.append((root / name, path))
    if not mounts:
        mounts = [(root, ""), (root / "cpu", ""), (root / "cpu,cpuacct", "")]
    folders = []
    for base, path in mounts:
        own = base / path if path else base
        folders += [own, *[p for p in own.parents if p.is_relative_to(base)]]
    return folders


def _cgroup_cpu_limit(root: Path, proc_cgroup: Path) -> float | None:
    """CPUs granted by the tightest CFS quota on this process's cgroup or its ancestors.

    Kubernetes turns a container's ``limits.cpu`` into exactly this quota (quota/period);
    Slurm's task/cgroup confines by cpuset instead, which ``sched_getaffinity`` sees.
    """
    limits = [q for q in map(_quota, _cgroup_folders(root, proc_cgroup)) if q is not None]
    return min(limits) if limits else None


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup"),
                   proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """CPUs this process may use: its affinity set, capped by the cgroup quota (rounded up)."""
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(cgroup_root, proc_cgroup)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit - 1e-9)))
    return max(1, cpus)


class OnnxRuntimeModel:
    """An ``InferenceSession`` on the CPU provider: float32 [B, 3, S, S] -> logits [B, K]."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        self.threads = threads or available_cpus()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1  # one request batch at a time: no parallel branches
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads sleep instead of spinning: the server's event loop and decode
        # threads share these CPUs. Measured here (resnest14d, 32 px, 2 threads, shared
        # machine): batch 1 10 ms instead of 13-14 ms, batch 8 43 ms instead of 60-66 ms.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph
            raise ValueError(f"{path}: onnxruntime cannot load it: {exc}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{path}: expected one input [B, 3, S, S], found {len(inputs)}")
        graph_input = inputs[0]
        self.input_name = graph_input.name
        shape = list(graph_input.shape)
        if len(shape) != 4 or shape[1] != 3 or shape[2] != shape[3] or not isinstance(shape[2], int):
            raise ValueError(f"{path}: input must be [B, 3, S, S], found {shape}")
        self.image_size = int(shape[2])
        # A named (symbolic) batch dimension runs any batch size; a number runs only itself.
        self.fixed_batch: int | None = shape[0] if isinstance(shape[0], int) else None
        out_shape = self.session.get_outputs()[0].shape
        self.num_classes = out_shape[1] if len(out_shape) == 2 and isinstance(out_shape[1], int) \
            else None

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.ascontiguousarray(inputs, dtype=np.float32)}
        return self.session.run(None, feed)[0]


def load_onnx_model(path: Path, threads: int = 0) -> Any:
    """``OnnxRuntimeModel`` for ``path``, logging the threads it was given and why."""
    model = OnnxRuntimeModel(path, threads)
    log.info("onnxruntime %s: %d intra-op threads (%s)", path.name, model.threads,
             "--threads" if threads else "CPUs this process may use")
    return model
