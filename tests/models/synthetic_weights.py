"""Seeded random ResNeSt weights and inputs from numpy alone, identical in any venv.

Shared by the PyTorch reference script (run in .venv-ref) and the tests (run in .venv), so a
fixture only needs tensor names and shapes, not megabytes of weights. Every tensor is drawn from
its own generator seeded by (seed, crc32(name)): independent of dict order. BatchNorm statistics
and affine terms are deliberately far from their defaults (and the zero-initialised last gamma
is not zero), so a swapped mean/variance or gamma/beta shows in the logits.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import numpy as np


def tensor_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def synthetic_tensor(seed: int, name: str, shape: Sequence[int]) -> np.ndarray:
    """One PyTorch-named tensor: He-scaled convs, non-trivial BN, small biases."""
    rng = tensor_rng(seed, name)
    shape = tuple(int(d) for d in shape)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return np.asarray(rng.integers(0, 1000), dtype=np.int64).reshape(shape)
    if leaf == "running_mean":
        values = rng.normal(0.0, 0.2, shape)
    elif leaf == "running_var":
        values = rng.uniform(0.5, 2.0, shape)
    elif leaf == "bias":
        values = rng.normal(0.0, 0.1, shape)
    elif leaf == "weight" and len(shape) == 1:  # BatchNorm gamma
        values = rng.uniform(0.5, 1.5, shape)
    elif leaf == "weight":
        fan_in = int(np.prod(shape[1:]))
        gain = 2.0 if len(shape) == 4 else 1.0
        values = rng.normal(0.0, np.sqrt(gain / fan_in), shape)
    else:
        raise ValueError(f"no synthetic rule for tensor {name!r}")
    return values.astype(np.float32)


def synthetic_state_dict(
    seed: int, names_and_shapes: Iterable[tuple[str, Sequence[int]]]
) -> dict[str, np.ndarray]:
    return {name: synthetic_tensor(seed, name, shape) for name, shape in names_and_shapes}


def synthetic_images(seed: int, shape: Sequence[int]) -> np.ndarray:
    """A normalised-image-like float32 NCHW batch."""
    return np.random.default_rng([seed, 7]).normal(0.0, 1.0, tuple(shape)).astype(np.float32)
