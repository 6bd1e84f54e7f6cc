"""Named members of the ResNeSt family, one line each over one config (no mindspore import)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResNeStConfig:
    """The hyperparameters that name one member of the family (the paper's terms)."""

    layers: tuple[int, int, int, int]
    stem_width: int = 64
    radix: int = 2
    cardinality: int = 1
    bottleneck_width: int = 64
    deep_stem: bool = True
    avg_down: bool = True
    avd: bool = True
    avd_first: bool = False
    final_drop: float = 0.0
    last_gamma: bool = False


# Official hyperparameters (zhanghang1989/ResNeSt); 14d/26d are timm's small members.
MODEL_CONFIGS: dict[str, ResNeStConfig] = {
    "resnest14d": ResNeStConfig(layers=(1, 1, 1, 1), stem_width=32),
    "resnest26d": ResNeStConfig(layers=(2, 2, 2, 2), stem_width=32),
    "resnest50": ResNeStConfig(layers=(3, 4, 6, 3), stem_width=32),
    "resnest101": ResNeStConfig(layers=(3, 4, 23, 3), stem_width=64),
    "resnest200": ResNeStConfig(layers=(3, 24, 36, 3), stem_width=64),
    "resnest269": ResNeStConfig(layers=(3, 30, 48, 8), stem_width=64),
}


def list_models() -> list[str]:
    return list(MODEL_CONFIGS)
