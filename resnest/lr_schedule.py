"""Per-step learning rates: linear warmup, then cosine annealing, step or exponential decay.

The whole run's schedule is one array indexed by the optimizer's global step, so a resumed run
continues at the same position just by restoring that step. Lengths follow `epochs` unless
`T_max` / `lr_epochs` are set (see `TrainConfig.effective_T_max` and `lr_milestones`).
"""

from __future__ import annotations

import math

import numpy as np

from resnest.config import TrainConfig


def lr_at(step: int, steps_per_epoch: int, config: TrainConfig, base_lr: float) -> float:
    """Learning rate of global step `step` (0-based).

    The last warmup step runs at `base_lr`, the cosine's last step at `eta_min`.
    """
    warmup_steps = config.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if config.lr_scheduler == "cosine_annealing":
        # the seed's form: the cosine runs from the start of training (warmup included); its
        # last step (T_max's, the run's last when T_max follows epochs) is at eta_min
        last = config.effective_T_max() * steps_per_epoch - 1
        progress = min(1.0, step / last) if last > 0 else 1.0
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


def describe_schedule(config: TrainConfig, lr: np.ndarray, steps_per_epoch: int) -> str:
    """One line: what the run will really do (warmup, decay and its length, first/peak/final lr)."""
    if config.lr_scheduler == "cosine_annealing":
        source = "T_max" if config.T_max else "epochs"
        decay = (f"cosine over {config.effective_T_max()} epochs (from {source}) to eta_min "
                 f"{config.eta_min:g}")
    elif config.lr_scheduler == "step":
        source = "lr_epochs" if config.lr_epochs.strip() else "epochs"
        milestones = ",".join(map(str, config.lr_milestones())) or "none"
        decay = f"step x{config.lr_gamma:g} at epochs {milestones} (from {source})"
    else:
        decay = f"exponential x{config.lr_gamma:g} per epoch"
    peak = float(lr.max()) if len(lr) else 0.0
    final = float(lr[-1]) if len(lr) else 0.0
    return (f"schedule: {config.epochs} epochs x {steps_per_epoch} steps, warmup "
            f"{config.warmup_epochs} epochs, {decay}; lr peak {peak:.6g}, final {final:.6g}")
