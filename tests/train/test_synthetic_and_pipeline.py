"""Synthetic data set layout and the mindspore.dataset pipelines' shapes and sharding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from resnest.config import load_config
from resnest.data.pipeline import DataError, create_eval_dataset, create_train_dataset, list_images
from resnest.data.synthetic import generate


def test_synthetic_cli_writes_imagenet_layout(tmp_path: Path) -> None:
    out = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "resnest.data.synthetic", str(out), "--classes", "3",
                    "--train-per-class", "2", "--val-per-class", "1", "--image-size", "40"],
                   check=True, capture_output=True)
    train = list_images(out / "train")
    assert train.classes == ["n00000000", "n00000001", "n00000002"]
    assert len(train.files) == 6 and train.labels == [0, 0, 1, 1, 2, 2]
    assert all(p.suffix == ".JPEG" for p in train.files)
    assert len(list_images(out / "val").files) == 3


def test_synthetic_cli_rejects_bad_sizes(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "resnest.data.synthetic", str(tmp_path),
                             "--image-size", "8"], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "--image-size=8" in result.stderr


def test_pipelines_shapes_and_sharding(tmp_path: Path) -> None:
    generate(tmp_path, classes=3, train_per_class=8, val_per_class=5, image_size=48)
    config = load_config(None, {"crop_size": 32, "batch_size": 4, "test_batch_size": 4,
                                "num_classes": 3, "num_workers": 1})
    shards = [create_train_dataset(tmp_path, config, rank, 2) for rank in range(2)]
    assert [s.get_dataset_size() for s in shards] == [3, 3]  # 12 images per rank, batch 4
    images, labels = next(shards[0].create_tuple_iterator(output_numpy=True))
    assert images.shape == (4, 3, 32, 32) and images.dtype == np.float32
    assert labels.dtype == np.int32
    seen = 0
    for rank in range(2):
        dataset, total = create_eval_dataset(tmp_path, config, rank, 2)
        assert total == 15
        for images, _ in dataset.create_tuple_iterator(output_numpy=True):
            assert images.shape[1:] == (3, 32, 32)
            seen += len(images)
    assert seen == 15


def test_missing_split_and_too_many_classes(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        list_images(tmp_path / "train")
    generate(tmp_path, classes=3, train_per_class=1, val_per_class=1, image_size=32)
    config = load_config(None, {"num_classes": 2, "batch_size": 1})
    with pytest.raises(DataError, match="3 classes but num_classes=2"):
        create_train_dataset(tmp_path, config)


def test_every_epoch_draws_a_new_shuffle_and_new_augmentations(tmp_path) -> None:
    """Regression: one iterator per epoch used to replay epoch 0's order and crops each epoch."""
    import mindspore as ms

    from resnest.config import load_config
    from resnest.data.pipeline import create_train_dataset, start_epoch
    from resnest.data.synthetic import generate

    generate(tmp_path, 3, 8, 1, image_size=40, seed=0)
    ms.set_seed(1)
    config = load_config(None, {"num_classes": 3, "crop_size": 32, "batch_size": 8,
                                "autoaugment": "off", "num_workers": 1})
    dataset = create_train_dataset(tmp_path, config)

    def first_batch(epoch: int):
        images, labels = next(start_epoch(dataset, config.seed, epoch))
        return labels.asnumpy().tolist(), float(images.asnumpy().sum())

    epoch0, epoch1 = first_batch(0), first_batch(1)
    assert epoch0 != epoch1
    assert first_batch(0) == epoch0  # deterministic per (seed, epoch): resume draws the same
