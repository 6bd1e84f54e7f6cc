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


def _cgroup_cpu_limit(root: Path) -> float | None:
    """CPUs granted by the cgroup CPU quota (v2 ``cpu.max``, v1 ``cfs_quota_us``), if any.

    Kubernetes turns a container's ``limits.cpu`` into exactly this CFS quota (quota/period);
    Slurm's task/cgroup confines by cpuset instead, which ``sched_getaffinity`` sees.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    for v1 in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    return None


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity set, capped by the cgroup quota (rounded up)."""
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpu_limit(cgroup_root)
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
        (graph_input,) = self.session.get_inputs()
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
