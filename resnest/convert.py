"""Convert official or timm ResNeSt PyTorch weights to a MindSpore checkpoint.

    python -m resnest.convert SRC DST --arch resnest50 [--num-classes N]

SRC is a PyTorch state dict (`.pth`/`.pt`/`.bin`, read through torch, which this project does
not depend on) or a `.safetensors` file (read without torch). The official package
(zhanghang1989/ResNeSt) and timm's `resnest*` models use the same tensor names, and our
parameter names mirror them except BatchNorm's, so the mapping is by name. Every tensor must
map to exactly one of our parameters with the same shape, and every parameter must be covered:
anything else is refused, because a silently half-loaded network trains or predicts garbage.
BatchNorm's `num_batches_tracked` counter is the one tensor dropped (MindSpore has no such
buffer).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from resnest.models.registry import list_models

PTH_SUFFIXES = (".pth", ".pt", ".bin", ".tar")
SAFETENSORS_SUFFIX = ".safetensors"
DROPPED_SUFFIX = ".num_batches_tracked"
# PyTorch BatchNorm name -> MindSpore BatchNorm name (weight/bias only when the module is a BN).
BN_RENAMES = {
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
    "weight": "gamma",
    "bias": "beta",
}
# How many names an error message lists before it says "and N more".
NAMES_SHOWN = 5


class ConversionError(ValueError):
    """The source weights do not fit the requested architecture; the message says why."""


def load_torch_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Read a `.pth`/`.safetensors` file into float32/int numpy arrays keyed by PyTorch name."""
    if not path.is_file():
        raise ConversionError(f"source weights {str(path)!r} do not exist or are not a file")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        from safetensors.numpy import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:  # the package raises several types for corrupt files
            raise ConversionError(f"cannot read {str(path)!r} as safetensors: {exc}") from exc
    if suffix in PTH_SUFFIXES:
        return _load_pth(path)
    allowed = ", ".join((SAFETENSORS_SUFFIX, *PTH_SUFFIXES))
    raise ConversionError(f"unsupported weights file suffix {suffix!r} of {str(path)!r}; "
                          f"allowed: {allowed}")


def _load_pth(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ConversionError(
            f"reading {str(path)!r} needs PyTorch, which is not installed here: "
            "`pip install torch` (CPU build is enough), or save the state dict as .safetensors "
            "(safetensors.torch.save_file) and convert that"
        ) from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConversionError(f"cannot read {str(path)!r} with torch.load: {exc}") from exc
    state = unwrap_state_dict(obj)
    arrays: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        if not hasattr(tensor, "detach"):
            raise ConversionError(f"entry {name!r} of {str(path)!r} is not a tensor")
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()  # bf16/fp16 have no lossless numpy path otherwise
        arrays[name] = tensor.numpy()
    return arrays


def unwrap_state_dict(obj: Any) -> Mapping[str, Any]:
    """Accept a bare state dict or a training checkpoint holding one; strip DataParallel's prefix."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise ConversionError(f"expected a state dict (name -> tensor), got {type(obj).__name__}")
    if obj and all(str(k).startswith("module.") for k in obj):
        obj = {str(k)[len("module."):]: v for k, v in obj.items()}
    return obj


def shown_names(names: list[str], limit: int = NAMES_SHOWN) -> str:
    """The first `limit` names, and how many more there are."""
    head = ", ".join(names[:limit])
    more = len(names) - limit
    return f"{head} (and {more} more)" if more > 0 else head


def unfit_summary(groups: list[tuple[str, list[str]]], limit: int = NAMES_SHOWN) -> str:
    """`2 missing: a, b; 1 mis-shaped: c [3] (...)` for the non-empty groups; "" if all fit.

    The one wording of "these weights do not fit this model", for conversion and for loading
    pretrained weights."""
    return "; ".join(f"{len(names)} {label}: {shown_names(names, limit)}"
                     for label, names in groups if names)


def map_state_dict(
    source: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], arch: str
) -> dict[str, np.ndarray]:
    """Rename PyTorch tensors to our names and check them against `expected` (name -> shape).

    Raises ConversionError naming every missing, extra and mis-shaped tensor.
    """
    mapped: dict[str, np.ndarray] = {}
    extra: list[str] = []
    misshaped: list[str] = []
    misshaped_targets: set[str] = set()
    for name, array in source.items():
        if name.endswith(DROPPED_SUFFIX):
            continue
        target = _target_name(name, expected)
        if target is None or target in mapped or target in misshaped_targets:
            extra.append(name)  # no counterpart, or a second tensor for the same parameter
            continue
        shape = tuple(int(d) for d in np.shape(array))
        if shape != tuple(expected[target]):
            misshaped.append(f"{name} {list(shape)} (expected {list(expected[target])})")
            misshaped_targets.add(target)
            continue
        mapped[target] = np.ascontiguousarray(array, dtype=np.float32)
    missing = [n for n in expected if n not in mapped and n not in misshaped_targets]
    problems = unfit_summary([("missing", missing), ("unexpected", extra),
                              ("mis-shaped", misshaped)])
    if problems:
        raise ConversionError(f"weights do not fit {arch}: {problems}")
    return {name: mapped[name] for name in expected}


def _target_name(name: str, expected: Mapping[str, tuple[int, ...]]) -> str | None:
    """Our parameter name for a PyTorch tensor name, or None when there is none."""
    if name in expected:
        return name
    prefix, _, leaf = name.rpartition(".")
    renamed = BN_RENAMES.get(leaf)
    if renamed and f"{prefix}.{renamed}" in expected:
        return f"{prefix}.{renamed}"
    return None


def expected_parameters(arch: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of every parameter (BN statistics included) of our `arch`."""
    from resnest.models import create_model

    net = create_model(arch, num_classes=num_classes)
    return {p.name: tuple(p.shape) for p in net.get_parameters()}


def infer_num_classes(source: Mapping[str, np.ndarray]) -> int:
    fc = source.get("fc.weight")
    if fc is None or np.ndim(fc) != 2:
        raise ConversionError("cannot infer the number of classes: no 2-D 'fc.weight' in the "
                              "source; pass --num-classes")
    return int(np.shape(fc)[0])


def convert(src: Path, dst: Path, arch: str, num_classes: int | None = None) -> int:
    """Convert `src` to a MindSpore checkpoint at `dst`; returns the number of tensors written."""
    if arch not in list_models():
        raise ConversionError(f"unknown arch {arch!r}; choose one of: {', '.join(list_models())}")
    if dst.suffix != ".ckpt":
        raise ConversionError(f"destination {str(dst)!r} must end with .ckpt")
    source = load_torch_state_dict(src)
    if num_classes is None:
        num_classes = infer_num_classes(source)
    mapped = map_state_dict(source, expected_parameters(arch, num_classes), arch)

    import mindspore

    dst.parent.mkdir(parents=True, exist_ok=True)
    mindspore.save_checkpoint(
        [{"name": name, "data": mindspore.Tensor(array)} for name, array in mapped.items()],
        str(dst),
    )
    return len(mapped)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m resnest.convert",
        description="Convert official/timm ResNeSt PyTorch weights (.pth or .safetensors) "
        "to a MindSpore .ckpt.",
    )
    parser.add_argument("src", type=Path, help="PyTorch state dict: .pth/.pt or .safetensors")
    parser.add_argument("dst", type=Path, help="MindSpore checkpoint to write (.ckpt)")
    parser.add_argument("--arch", required=True, choices=list_models(), help="our model name")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="classifier size (default: rows of the source's fc.weight)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.num_classes is not None and args.num_classes < 1:
        print(f"convert: error: --num-classes must be >= 1, got {args.num_classes}",
              file=sys.stderr)
        return 2
    try:
        count = convert(args.src, args.dst, args.arch, args.num_classes)
    except ConversionError as exc:
        print(f"convert: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {count} tensors for {args.arch} to {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
