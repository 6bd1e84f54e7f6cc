"""Per-step learning rates: linear warmup, then cosine annealing, step or exponential decay.

The whole run's schedule is one array indexed by the optimizer's global step, so a resumed run
continues at the same position just by restoring that step.
"""

from __future__ import annotations

import math

import numpy as np

from resnest.config import TrainConfig


def lr_at(step: int, steps_per_epoch: int, config: TrainConfig, base_lr: float) -> float:
    """Learning rate of global step `step` (0-based)."""
    warmup_steps = config.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if config.lr_scheduler == "cosine_annealing":
        epoch = step / steps_per_epoch  # fractional: the rate falls smoothly within an epoch
        progress = min(epoch, config.T_max) / config.T_max
        return config.eta_min + (base_lr - config.eta_min) * (1 + math.cos(math.pi * progress)) / 2
    epoch = step // steps_per_epoch
    if config.lr_scheduler == "step":
        passed = sum(1 for m in config.lr_milestones() if epoch >= m)
        return base_lr * config.lr_gamma**passed
    if config.lr_scheduler == "exponential":
        return base_lr * config.lr_gamma**epoch
    raise ValueError(f"lr_scheduler={config.lr_scheduler!r}: not one of cosine_annealing, step, exponential")


def build_lr_schedule(config: TrainConfig, steps_per_epoch: int, world_size: int = 1) -> np.ndarray:
    """float32 array of length epochs * steps_per_epoch; lr is per device when scaled by world."""
    base_lr = config.lr * (world_size if config.scale_lr_by_world_size else 1)
    total = config.epochs * steps_per_epoch
    return np.array([lr_at(i, steps_per_epoch, config, base_lr) for i in range(total)], dtype=np.float32)
