"""Train-transform throughput: our mindspore.dataset pipeline vs plain Pillow + NumPy.

Both do the same work per image: decode a 500x375 JPEG, random resized crop to 224 (scale
0.08-1, ratio 3/4-4/3), horizontal flip, colour jitter 0.4 (brightness, contrast, saturation),
normalise, HWC->CHW float32. One worker each, so the figure is img/s per core; ours is also run
with one worker per CPU, and with AutoAugment on top (the seed's recipe) for reference.

    .venv/bin/python benchmarks/data_pipeline.py [--images 200] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def write_jpegs(folder: Path, count: int) -> None:
    """Photo-like 500x375 JPEGs (smooth colour fields plus texture), ImageNet layout, 1 class."""
    rng = np.random.default_rng(0)
    cls = folder / "train" / "n00000000"
    cls.mkdir(parents=True)
    yy, xx = np.mgrid[0:375, 0:500].astype(np.float32)
    for i in range(count):
        base = rng.uniform(0, 255, 3)
        grad = np.stack([np.sin(xx / rng.uniform(20, 90) + c) * 60 + np.cos(yy / rng.uniform(20, 90)) * 60
                         for c in range(3)], axis=-1)
        pixels = np.clip(base + grad + rng.normal(0, 12, (375, 500, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(cls / f"img_{i:05d}.JPEG", quality=90)


def pillow_numpy_transform(path: Path, size: int = 224) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    width, height = image.size
    area = width * height
    for _ in range(10):  # torchvision's RandomResizedCrop sampling
        target = area * random.uniform(0.08, 1.0)
        ratio = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            x, y = random.randint(0, width - w), random.randint(0, height - h)
            break
    else:
        w = h = min(width, height)
        x, y = (width - w) // 2, (height - h) // 2
    image = image.resize((size, size), Image.BILINEAR, box=(x, y, x + w, y + h))
    if random.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    for enhancer in random.sample([ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color], 3):
        image = enhancer(image).enhance(random.uniform(0.6, 1.4))
    array = (np.asarray(image, dtype=np.float32) - MEAN) / STD
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def bench_pillow(files: list[Path], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        for path in files:
            pillow_numpy_transform(path)
    return repeats * len(files) / (time.perf_counter() - start)


def bench_ours(data: Path, repeats: int, workers: int, autoaugment: bool) -> float:
    import mindspore.dataset as ds

    from resnest.config import load_config
    from resnest.data.pipeline import train_transforms

    config = load_config(None, {"autoaugment": autoaugment, "num_workers": workers})
    ds.config.set_prefetch_size(8)
    dataset = ds.ImageFolderDataset(str(data / "train"), shuffle=True, decode=False,
                                    num_parallel_workers=workers)
    dataset = dataset.map(train_transforms(config), input_columns="image",
                          num_parallel_workers=workers, python_multiprocessing=False)
    iterator = dataset.create_tuple_iterator(output_numpy=True, num_epochs=repeats + 1)
    for _ in iterator:  # warm-up epoch (each epoch ends with StopIteration): thread pools
        pass
    images = 0
    start = time.perf_counter()
    for _ in range(repeats):
        images += sum(1 for _ in iterator)
    return images / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        write_jpegs(data, args.images)
        files = sorted((data / "train" / "n00000000").iterdir())
        bench_pillow(files[:10], 1)  # warm-up
        results = {
            "pillow_numpy_1_core": bench_pillow(files, args.repeats),
            "ours_1_worker": bench_ours(data, args.repeats, 1, autoaugment=False),
            f"ours_{cpus}_workers": bench_ours(data, args.repeats, cpus, autoaugment=False),
            "ours_1_worker_autoaugment": bench_ours(data, args.repeats, 1, autoaugment=True),
        }
    load = os.getloadavg()[0]
    print(f"train transforms on {args.images} 500x375 JPEGs x {args.repeats}, {cpus} CPUs, "
          f"load average {load:.1f}")
    for name, value in results.items():
        print(f"  {name:28s} {value:8.1f} img/s")
    speedup = results["ours_1_worker"] / results["pillow_numpy_1_core"]
    print(f"  ours / Pillow+NumPy, per core: {speedup:.2f}x")
    print(json.dumps({**results, "speedup_per_core": speedup, "load_average": load}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
