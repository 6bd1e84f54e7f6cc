"""Top-1/top-5 evaluation whose counts are summed over ranks with a real AllReduce.

Each rank evaluates its own slice of the val split (image i on rank i % world), pads its short
last batch to the full batch size (one compiled graph shape) and masks the padding out, so every
validation image is counted exactly once whatever the world size and batch size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from resnest.config import TrainConfig
from resnest.contract import EvalResult  # re-exported: `resnest.evaluation.EvalResult` stays valid
from resnest.distributed import ProcessGroupInfo, allreduce_sum

__all__ = ["EvalResult", "count_topk_correct", "evaluate", "pad_batch"]


def count_topk_correct(logits: np.ndarray, labels: np.ndarray, valid: np.ndarray) -> tuple[int, int, int]:
    """(top-1 correct, top-5 correct, images) over the rows where `valid` is true."""
    logits = logits[valid]
    labels = labels[valid]
    if len(labels) == 0:
        return 0, 0, 0
    k = min(5, logits.shape[1])
    top1 = int((logits.argmax(axis=1) == labels).sum())
    topk = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    top5 = int((topk == labels[:, None]).any(axis=1).sum())
    return top1, top5, len(labels)


def pad_batch(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad a short batch with zeros to `batch_size`; return it with its validity mask."""
    n = len(labels)
    valid = np.zeros(batch_size, dtype=bool)
    valid[:n] = True
    if n == batch_size:
        return images, labels, valid
    pad = batch_size - n
    images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
    labels = np.concatenate([labels, np.full(pad, -1, labels.dtype)])
    return images, labels, valid


def evaluate(net: Any, data_dir: str | Path, config: TrainConfig, info: ProcessGroupInfo) -> EvalResult:
    """Run `net` over this rank's val slice and AllReduce the counts."""
    from mindspore import Tensor

    from resnest.data.pipeline import create_eval_dataset

    dataset, expected_total = create_eval_dataset(data_dir, config, info.rank, info.world_size)
    was_training = net.training
    net.set_train(False)
    top1 = top5 = seen = 0
    for images, labels in dataset.create_tuple_iterator(output_numpy=True, num_epochs=1):
        images, labels, valid = pad_batch(images, labels, config.test_batch_size)
        logits = net(Tensor(images)).asnumpy()
        c1, c5, n = count_topk_correct(logits, labels, valid)
        top1, top5, seen = top1 + c1, top5 + c5, seen + n
    net.set_train(was_training)
    s1, s5, total = allreduce_sum([top1, top5, seen], info)
    return EvalResult(round(s1), round(s5), round(total), expected_total)
