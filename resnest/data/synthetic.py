"""Write a small ImageNet-layout JPEG data set whose classes can be learnt in a few CPU epochs.

Each class has its own hue and stripe orientation; every image varies in stripe phase and
frequency, brightness, noise and the position of a bright blob, so a model has to look at the
image (and survive crops, flips and colour jitter) rather than memorise one picture.

    python -m resnest.data.synthetic OUT --classes K --train-per-class N --val-per-class M --image-size S
"""

from __future__ import annotations

import argparse
import colorsys
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def class_name(index: int) -> str:
    """Folder name of class `index`; zero-padded so sorted order is numeric order."""
    return f"n{index:08d}"


def render_image(label: int, num_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One HxWx3 uint8 image of class `label`."""
    hue = label / num_classes
    angle = np.pi * ((label * 0.382) % 1.0)  # golden-ratio spread of stripe orientations
    freq = rng.uniform(3.0, 5.0) * 2 * np.pi / size
    phase = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
    value = 0.55 + 0.35 * stripes * rng.uniform(0.7, 1.0)
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.65, 0.95), 1.0)
    image = value[..., None] * np.array([r, g, b], dtype=np.float32)[None, None, :]
    cy, cx = rng.uniform(0.2, 0.8, size=2) * size  # a blob: something local to find
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size * 0.08) ** 2))
    image = image * (1 - 0.5 * blob[..., None]) + 0.5 * blob[..., None]
    image += rng.normal(0.0, 0.04, size=image.shape).astype(np.float32)
    return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def write_split(root: Path, split: str, num_classes: int, per_class: int, size: int,
                rng: np.random.Generator) -> int:
    count = 0
    for label in range(num_classes):
        folder = root / split / class_name(label)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = render_image(label, num_classes, size, rng)
            Image.fromarray(pixels).save(folder / f"{split}_{label:04d}_{i:05d}.JPEG", quality=90)
            count += 1
    return count


def generate(out: Path, classes: int, train_per_class: int, val_per_class: int, image_size: int,
             seed: int = 0) -> dict[str, int]:
    """Write OUT/train/<class>/*.JPEG and OUT/val/<class>/*.JPEG; return image counts."""
    rng = np.random.default_rng(seed)
    return {
        "train": write_split(out, "train", classes, train_per_class, image_size, rng),
        "val": write_split(out, "val", classes, val_per_class, image_size, rng),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnest.data.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="output folder (train/ and val/ are created in it)")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--train-per-class", type=int, default=64)
    parser.add_argument("--val-per-class", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("classes", "train_per_class", "val_per_class"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')}={getattr(args, name)}: must be >= 1", file=sys.stderr)
            return 2
    if args.image_size < 32:
        print(f"error: --image-size={args.image_size}: must be >= 32", file=sys.stderr)
        return 2
    counts = generate(args.out, args.classes, args.train_per_class, args.val_per_class,
                      args.image_size, args.seed)
    print(f"wrote {counts['train']} train and {counts['val']} val images of {args.classes} classes "
          f"to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
