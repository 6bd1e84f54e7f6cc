"""The job itself: device kind against the training config, memory per card, the checkpoint
window against the time limit. Nothing here asks a cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.preflight import Check, failed, passed, skipped
from launcher.preflight.footprint import GIB, USABLE_FRACTION, footprint
from resnest.contract import TARGET_OF_DEVICE_KIND

if TYPE_CHECKING:
    from launcher.spec import JobSpec

# Memory of one card when the cluster cannot tell: Ascend by chip (910: 32 GiB HBM, 910B: 64
# GiB), GPUs the smallest common training card (16 GiB: V100-16GB, T4). `rlaunch check
# --device-memory` states the real figure.
ASCEND_MEMORY_GIB: dict[str, float] = {"910": 32, "910b": 64}
DEFAULT_GPU_MEMORY_GIB = 16.0
# The option that says how long before the limit each backend tells the ranks to checkpoint.
SIGNAL_OPTION = {"slurm": "signal_seconds", "k8s": "grace_seconds"}


@dataclass
class JobFacts:
    backend: str
    task: str
    device_kind: str
    # The training config as the job will load it (None: unreadable, with why).
    device_target: str | None
    amp_level: str | None
    net_name: str | None
    num_classes: int | None
    crop_size: int | None
    batch_size: int | None
    config_error: str | None
    device_memory_gib: float | None
    memory_source: str
    time_limit: str | None
    signal_seconds: int


def gather(spec: JobSpec, opts: Any, device_memory_gib: float | None = None) -> JobFacts:
    from resnest.config import ConfigError, load_config, parse_set_overrides

    local = spec.config if spec.config and Path(spec.config).is_file() else None
    config = None
    error = None
    try:
        config = load_config(local, parse_set_overrides(spec.overrides))
    except (ConfigError, OSError) as err:
        error = str(err).splitlines()[0]
    memory, source = device_memory_gib, "--device-memory"
    if memory is None and spec.device_kind == "ascend":
        from launcher.ascend import STRICT_CHIP

        chip = spec.ascend_chip if spec.ascend_chip in ASCEND_MEMORY_GIB else STRICT_CHIP
        memory, source = ASCEND_MEMORY_GIB[chip], f"Ascend {chip.upper()}"
    elif memory is None and spec.device_kind == "gpu":
        memory, source = DEFAULT_GPU_MEMORY_GIB, "assumed; --device-memory sets yours"
    option = SIGNAL_OPTION.get(spec.backend)
    signal = getattr(opts, option, 0) if option else 0
    return JobFacts(
        backend=spec.backend, task=spec.task, device_kind=spec.device_kind,
        device_target=config.device_target if config else None,
        amp_level=config.amp_level if config else None,
        net_name=config.net_name if config else None,
        num_classes=config.num_classes if config else None,
        crop_size=config.crop_size if config else None,
        batch_size=config.batch_size if config else None,
        config_error=error, device_memory_gib=memory, memory_source=source,
        time_limit=spec.time_limit,
        signal_seconds=signal if isinstance(signal, int) else 0,
    )


def decide(facts: JobFacts) -> list[Check]:
    return [_device(facts), _memory(facts), _checkpoint_window(facts)]


def _device(facts: JobFacts) -> Check:
    if facts.config_error:
        return failed("job.device", f"the training config cannot be read: {facts.config_error}")
    target = TARGET_OF_DEVICE_KIND[facts.device_kind]
    if facts.device_target not in ("auto", target):
        flag = {"gpu": "--gpus", "ascend": "--ascend", "cpu": "--cpus"}[facts.device_kind]
        return failed("job.device", f"{flag} asks for {facts.device_kind} devices but the "
                      f"config sets device_target={facts.device_target}: every rank would "
                      f"stop at start; --set device_target={target} (or auto)")
    return passed("job.device", f"{facts.device_kind} devices, device_target "
                  f"{facts.device_target}")


def amp_enabled(facts: JobFacts) -> bool:
    """AMP as the trainer picks it (resnest.train.amp_level_for): O2/O3 keep fp16 copies."""
    level = facts.amp_level
    if level == "auto":
        level = {"ascend": "O3", "gpu": "O2"}.get(facts.device_kind, "O0")
    return level in ("O2", "O3")


def _memory(facts: JobFacts) -> Check:
    if facts.task != "train":
        return skipped("job.memory", f"a {facts.task} job keeps no gradients; not estimated")
    if facts.device_kind == "cpu":
        return skipped("job.memory", "CPU ranks use host memory; not estimated")
    if facts.config_error or facts.net_name is None or facts.batch_size is None:
        return skipped("job.memory", "the training config cannot be read")
    from resnest.models.registry import MODEL_CONFIGS

    if facts.net_name not in MODEL_CONFIGS:
        return failed("job.memory", f"net_name {facts.net_name!r} is not one of "
                      f"{', '.join(MODEL_CONFIGS)}")
    amp = amp_enabled(facts)
    model = footprint(facts.net_name, facts.num_classes or 1000, facts.crop_size or 224)
    need = model.training_bytes(facts.batch_size, amp) / GIB
    have = float(facts.device_memory_gib or 0)
    what = (f"{facts.net_name} at batch {facts.batch_size} per card, {facts.crop_size} px, "
            f"{'fp16' if amp else 'fp32'} activations: about {need:.1f} GiB of "
            f"{have:g} GiB ({facts.memory_source})")
    if need > have * USABLE_FRACTION:
        fitting = _largest_batch(model, amp, have)
        return failed("job.memory", f"{what}: does not fit; --set batch_size={fitting} or "
                      "fewer fits (per card; the global batch is batch_size x ranks)")
    return passed("job.memory", what)


def _largest_batch(model, amp: bool, have_gib: float) -> int:  # type: ignore[no-untyped-def]
    budget = have_gib * USABLE_FRACTION * GIB
    fixed = model.training_bytes(0, amp)
    per_image = model.training_bytes(1, amp) - fixed
    return max(0, int((budget - fixed) // per_image))


def _checkpoint_window(facts: JobFacts) -> Check:
    from launcher.preflight.slurm import parse_time

    option = SIGNAL_OPTION.get(facts.backend)
    if option is None:
        return skipped("job.checkpoint", "no time limit on this backend")
    if facts.time_limit is None:
        return passed("job.checkpoint", f"no --time; the stop signal comes "
                      f"{facts.signal_seconds} s before any limit the cluster sets")
    limit = parse_time(facts.time_limit)
    if limit is not None and facts.signal_seconds >= limit:
        return failed("job.checkpoint", f"--time {facts.time_limit} ({limit} s) is not longer "
                      f"than the checkpoint window ({option}={facts.signal_seconds} s): the "
                      f"job would be told to stop before it starts; raise --time or lower "
                      f"--opt {option}")
    return passed("job.checkpoint", f"the stop signal comes {facts.signal_seconds} s before "
                  f"the {facts.time_limit} limit")
