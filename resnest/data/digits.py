"""A real image set for tests and benchmarks: scikit-learn's bundled handwritten digits.

`sklearn.datasets.load_digits()` ships 1,797 8x8 grey images of the digits 0-9 (the UCI
"Optical Recognition of Handwritten Digits" test set, written by 43 people) inside the wheel,
so it loads offline. `write_digits_folders` upsamples them and writes the ImageNet layout
(`train/<class>/*.png`, `val/<class>/*.png`) that `resnest.train` reads. The split is fixed:
every fifth image of each class goes to val (about 360 val, 1,437 train images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VAL_EVERY = 5  # image i of a class goes to val when i % VAL_EVERY == 0
DIGITS_MAX = 16.0  # load_digits pixel values are 0..16


def digits_arrays(image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """All digits as uint8 RGB [N, S, S, 3] (bilinear upsampling, white ink on black) and labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.empty((len(digits.images), image_size, image_size, 3), dtype=np.uint8)
    for i, small in enumerate(digits.images):
        grey = Image.fromarray(np.round(small / DIGITS_MAX * 255).astype(np.uint8), mode="L")
        big = grey.resize((image_size, image_size), Image.Resampling.BILINEAR)
        images[i] = np.asarray(big.convert("RGB"))
    return images, digits.target.astype(np.int64)


def split_indices(labels: np.ndarray, classes: list[int]) -> tuple[list[int], list[int]]:
    """Indices of the train and val images of `classes` (a fixed, stratified split)."""
    train: list[int] = []
    val: list[int] = []
    for label in classes:
        for rank, index in enumerate(np.flatnonzero(labels == label)):
            (val if rank % VAL_EVERY == 0 else train).append(int(index))
    return train, val


def write_digits_folders(root: str | Path, classes: list[int] | None = None,
                         image_size: int = 32, train_per_class: int | None = None) -> Path:
    """Write DATA/{train,val}/<digit>/<index>.png for `classes` (default all ten); returns root.

    `train_per_class` keeps only the first N train images of each class (a few-shot set); val
    stays whole.
    """
    from PIL import Image

    root = Path(root)
    classes = list(range(10)) if classes is None else sorted(classes)
    images, labels = digits_arrays(image_size)
    train, val = split_indices(labels, classes)
    if train_per_class is not None:
        train = [i for label in classes
                 for i in [j for j in train if labels[j] == label][:train_per_class]]
    for split, indices in (("train", train), ("val", val)):
        for index in indices:
            folder = root / split / f"digit{int(labels[index])}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index]).save(folder / f"{index:04d}.png")
    return root
