"""Run a PyTorch ResNeSt (official package or timm) on synthetic weights; save what we compare.

Runs ONLY under the reference venv (`.venv-ref/bin/python`, made by scripts/setup.sh): the
official package's top-level module is also called `resnest`, so it must never share a process
with this project. Usage:

    .venv-ref/bin/python tests/models/torch_reference.py official resnest50 OUT_DIR \
        [--seed 0] [--batch 2] [--height 224] [--width 224] [--num-classes 1000]

writes OUT_DIR/weights.safetensors (the model's full state dict, PyTorch names, including
num_batches_tracked), OUT_DIR/logits.npy (eval mode, fp32) and OUT_DIR/meta.json.
With `timm` instead of `official` the architecture comes from timm.models.resnest; `--fixture F`
writes a small JSON fixture (names, shapes, logits; no weights) instead, see make_timm_fixture.sh.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import json
import sys
import types
from pathlib import Path

from synthetic_weights import synthetic_images, synthetic_state_dict


def _stub_torchvision() -> None:
    """Let `import timm` succeed without torchvision.

    timm imports torchvision at start-up for data transforms and FrozenBatchNorm2d; neither is
    used by the ResNeSt forward pass, and torchvision's wheels here do not load with torch 2.13.
    Every torchvision name becomes an inert placeholder class.
    """

    class Placeholder(type):
        def __getattr__(cls, name: str):
            if name.startswith("__"):
                raise AttributeError(name)
            return Placeholder(name, (), {})

    class PlaceholderModule(types.ModuleType):
        def __getattr__(self, name: str):
            if name.startswith("__"):
                raise AttributeError(name)
            return Placeholder(name, (), {})

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path, target=None):
            if fullname.split(".")[0] == "torchvision":
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            return PlaceholderModule(spec.name)

        def exec_module(self, module):
            module.__path__ = []

    sys.meta_path.insert(0, Finder())


def build(source: str, arch: str, num_classes: int):
    if source == "official":
        from resnest import torch as official

        return getattr(official, arch)(pretrained=False, num_classes=num_classes)
    _stub_torchvision()
    timm_resnest = importlib.import_module("timm.models.resnest")
    return getattr(timm_resnest, arch)(pretrained=False, num_classes=num_classes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source", choices=("official", "timm"))
    parser.add_argument("arch")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--fixture", type=Path, default=None)
    args = parser.parse_args()

    import numpy as np
    import torch

    model = build(args.source, args.arch, args.num_classes)
    names_and_shapes = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    state = synthetic_state_dict(args.seed, names_and_shapes)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    model.eval()
    images = synthetic_images(args.seed, (args.batch, 3, args.height, args.width))
    with torch.no_grad():
        logits = model(torch.from_numpy(images)).numpy().astype(np.float32)

    meta = {
        "source": args.source,
        "arch": args.arch,
        "seed": args.seed,
        "input_shape": list(images.shape),
        "num_classes": args.num_classes,
        "torch_version": torch.__version__,
        "package_version": _package_version(args.source),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if args.fixture is not None:
        meta["tensors"] = names_and_shapes
        meta["logits"] = [[float(f"{v:.8g}") for v in row] for row in logits.tolist()]
        args.fixture.write_text(json.dumps(meta, indent=1) + "\n")
        return
    from safetensors.torch import save_file

    args.out_dir.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(args.out_dir / "weights.safetensors"))
    np.save(args.out_dir / "logits.npy", logits)
    (args.out_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def _package_version(source: str) -> str:
    from importlib.metadata import version

    return version("resnest" if source == "official" else "timm")


if __name__ == "__main__":
    main()
