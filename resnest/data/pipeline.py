"""`mindspore.dataset` pipelines for ImageNet-layout folders (DATA/train/<class>/*.JPEG).

Training shards with the dataset's own distributed sampler (each rank a disjoint slice per epoch,
equal step counts). Evaluation shards by hand, image i to rank i % world, without padding the
file list: every image is seen by exactly one rank, and the caller pads and masks the last batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnest.config import TrainConfig
from resnest.contract import IMAGE_SUFFIXES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_RESIZE_RATIO = 0.875  # resize the short side to crop/0.875, then centre-crop (224 <- 256)


class DataError(ValueError):
    """A data folder that does not have the ImageNet layout."""


@dataclass(frozen=True)
class ImageList:
    """Files and labels of one split, classes in sorted folder order."""

    classes: list[str]
    files: list[Path]
    labels: list[int]


def list_images(split_dir: str | Path) -> ImageList:
    """Sorted classes and files of `split_dir`; the same order `ImageFolderDataset` uses."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"{str(split_dir)!r} is not a folder; expected DATA/train/<class>/*.JPEG "
                        "and DATA/val/<class>/*.JPEG")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        for path in sorted((split_dir / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
                labels.append(label)
    if not files:
        raise DataError(f"no images under {str(split_dir)!r} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return ImageList(classes, files, labels)


def worker_count(requested: int) -> int:
    """Decode workers: what the config asks for, but never more than the CPUs present."""
    return max(1, min(requested, os.cpu_count() or 1))


AUTOAUGMENT_POLICY_NAMES = {"imagenet": "IMAGENET", "cifar10": "CIFAR10", "svhn": "SVHN"}


def eval_resize_size(config: TrainConfig) -> int:
    """Short side eval resizes to before the centre crop (`eval_resize`, else crop/0.875)."""
    return config.eval_resize or round(config.crop_size / EVAL_RESIZE_RATIO)


def train_transforms(config: TrainConfig) -> list[Any]:
    """Random resized crop (decode fused in), [flip], [colour jitter], [AutoAugment], normalise, CHW.

    Each step is a config key (rrc_scale_min/max, hflip, color_jitter, autoaugment); the
    defaults are the seed's ImageNet recipe.
    """
    from mindspore.dataset import vision

    scale = (config.rrc_scale_min, config.rrc_scale_max)
    ops: list[Any] = [vision.RandomCropDecodeResize(config.crop_size, scale=scale,
                                                    ratio=(3 / 4, 4 / 3))]
    if config.hflip:
        ops.append(vision.RandomHorizontalFlip())
    if config.color_jitter > 0:
        j = config.color_jitter
        ops.append(vision.RandomColorAdjust(brightness=j, contrast=j, saturation=j))
    if config.autoaugment != "off":
        policy = getattr(vision.AutoAugmentPolicy, AUTOAUGMENT_POLICY_NAMES[config.autoaugment])
        ops.append(vision.AutoAugment(policy))
    ops += [
        vision.Normalize([m * 255 for m in IMAGENET_MEAN], [s * 255 for s in IMAGENET_STD]),
        vision.HWC2CHW(),
    ]
    return ops


def eval_transforms(config: TrainConfig) -> list[Any]:
    """Decode, resize the short side (eval_resize_size), centre-crop, normalise, CHW."""
    from mindspore.dataset import vision

    return [
        vision.Decode(),
        vision.Resize(eval_resize_size(config)),
        vision.CenterCrop(config.crop_size),
        vision.Normalize([m * 255 for m in IMAGENET_MEAN], [s * 255 for s in IMAGENET_STD]),
        vision.HWC2CHW(),
    ]


def epoch_seed(seed: int, epoch: int) -> int:
    """The data pipeline's seed for one epoch: a new shuffle and new augmentations every epoch.

    A `mindspore.dataset` pipeline re-launched (one iterator per epoch) starts from the global
    dataset seed again: without a per-epoch seed every epoch replays the first one's order and
    the very same random crops and flips. Deterministic in (seed, epoch), so a resumed epoch
    draws what the interrupted one drew, and equal on every rank (the shard sampler needs one
    permutation).
    """
    return (seed * 1_000_003 + epoch) % (2**32)


def start_epoch(dataset: Any, seed: int, epoch: int) -> Any:
    """One epoch's iterator over `dataset`, seeded with `epoch_seed`."""
    import mindspore.dataset as ds

    ds.config.set_seed(epoch_seed(seed, epoch))
    return dataset.create_tuple_iterator(num_epochs=1)


def create_train_dataset(data_dir: str | Path, config: TrainConfig, rank: int = 0,
                         world_size: int = 1) -> Any:
    """Shuffled, sharded, augmented, batched train split (drop_remainder: equal steps per rank)."""
    import mindspore.dataset as ds
    from mindspore import dtype as mstype
    from mindspore.dataset import transforms

    split_dir = Path(data_dir) / "train"
    images = list_images(split_dir)
    if len(images.classes) > config.num_classes:
        raise DataError(f"{str(split_dir)!r} has {len(images.classes)} classes but "
                        f"num_classes={config.num_classes}; set --set num_classes=...")
    workers = worker_count(config.num_workers)
    dataset = ds.ImageFolderDataset(
        str(split_dir), shuffle=True, decode=False, num_parallel_workers=workers,
        num_shards=world_size if world_size > 1 else None,
        shard_id=rank if world_size > 1 else None,
    )
    dataset = dataset.map(train_transforms(config), input_columns="image",
                          num_parallel_workers=workers)
    dataset = dataset.map(transforms.TypeCast(mstype.int32), input_columns="label",
                          num_parallel_workers=1)
    per_rank = -(-len(images.files) // world_size)
    if per_rank < config.batch_size:
        raise DataError(f"batch_size={config.batch_size} is larger than the {per_rank} train images "
                        f"each of {world_size} rank(s) gets; lower batch_size")
    return dataset.batch(config.batch_size, drop_remainder=True)


class _EncodedImages:
    """Random-access source of (jpeg bytes, label) for GeneratorDataset."""

    def __init__(self, files: list[Path], labels: list[int]) -> None:
        self.files = files
        self.labels = labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return (np.fromfile(self.files[index], dtype=np.uint8),
                np.array(self.labels[index], dtype=np.int32))


def eval_shard(num_images: int, rank: int, world_size: int) -> list[int]:
    """Indices rank `rank` evaluates: every image belongs to exactly one rank, none repeated."""
    return list(range(rank, num_images, world_size))


def create_eval_dataset(data_dir: str | Path, config: TrainConfig, rank: int = 0,
                        world_size: int = 1) -> tuple[Any, int]:
    """This rank's slice of the val split, batched with a short last batch; and the split's size."""
    import mindspore.dataset as ds

    images = list_images(Path(data_dir) / "val")
    if len(images.classes) > config.num_classes:
        raise DataError(f"val has {len(images.classes)} classes but num_classes={config.num_classes}")
    indices = eval_shard(len(images.files), rank, world_size)
    source = _EncodedImages([images.files[i] for i in indices], [images.labels[i] for i in indices])
    workers = worker_count(config.num_workers)
    dataset = ds.GeneratorDataset(source, column_names=["image", "label"], shuffle=False)
    dataset = dataset.map(eval_transforms(config), input_columns="image",
                          num_parallel_workers=workers)
    return dataset.batch(config.test_batch_size, drop_remainder=False), len(images.files)
