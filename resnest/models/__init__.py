"""The ResNeSt family: `create_model("resnest50", num_classes=1000)` and a registry of names."""

from __future__ import annotations

import dataclasses
from typing import Any

from resnest.models.registry import MODEL_CONFIGS, list_models


def create_model(name: str, num_classes: int = 1000, **overrides: Any):
    """Build a registered ResNeSt; `overrides` replace fields of its ResNeStConfig."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    config = MODEL_CONFIGS[name]
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown model option(s) {unknown}; allowed: {sorted(fields)}")
    from resnest.models.resnest import ResNeSt  # imports mindspore

    return ResNeSt(dataclasses.replace(config, **overrides), num_classes=num_classes)


__all__ = ["MODEL_CONFIGS", "create_model", "list_models"]
