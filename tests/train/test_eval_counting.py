"""Eval counting: every val image exactly once across ranks, padded last batch masked out."""

from __future__ import annotations

import numpy as np
import pytest

from resnest.data.pipeline import eval_shard
from resnest.evaluation import EvalResult, count_topk_correct, pad_batch


@pytest.mark.parametrize("num_images", [1, 35, 64, 101])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_eval_shards_partition_the_val_set(num_images: int, world: int) -> None:
    shards = [eval_shard(num_images, r, world) for r in range(world)]
    flat = sorted(i for shard in shards for i in shard)
    assert flat == list(range(num_images))


def test_padding_is_masked_out() -> None:
    images = np.ones((3, 3, 4, 4), np.float32)
    labels = np.array([0, 1, 2], np.int32)
    padded, padded_labels, valid = pad_batch(images, labels, 8)
    assert padded.shape == (8, 3, 4, 4) and valid.tolist() == [True] * 3 + [False] * 5
    logits = np.zeros((8, 6), np.float32)
    logits[np.arange(8), [0, 1, 5, 0, 0, 0, 0, 0]] = 1.0  # third image wrong; padding "right"
    top1, top5, seen = count_topk_correct(logits, padded_labels, valid)
    assert (top1, seen) == (2, 3)
    assert top5 == 3  # with 6 classes the true class is always in the top 5 of these logits


def test_top5_with_fewer_than_five_classes() -> None:
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]], np.float32)
    assert count_topk_correct(logits, np.array([2, 1]), np.array([True, True])) == (0, 2, 2)


def test_seed_log_lines_are_verbatim() -> None:
    lines = EvalResult(40525, 47716, 49984, 49984).seed_log_lines()
    assert lines == [
        "after allreduce eval: top1_correct=40525, tot=49984, acc=81.08%(TOP1)",
        "after allreduce eval: top5_correct=47716, tot=49984, acc=95.46%(TOP5)",
    ]
