"""Label-smoothing cross-entropy, the seed's way: the true class gets 1 - s, every other s/(K-1)."""

from __future__ import annotations

import numpy as np


def smoothed_targets(labels: np.ndarray, num_classes: int, smoothing: float) -> np.ndarray:
    """Reference (NumPy) target distribution; used by tests and as the definition."""
    off = smoothing / (num_classes - 1) if num_classes > 1 else 0.0
    targets = np.full((len(labels), num_classes), off, dtype=np.float32)
    targets[np.arange(len(labels)), labels] = 1.0 - smoothing
    return targets


def label_smoothing_cross_entropy(num_classes: int, smoothing: float):
    """A Cell: (logits [B,K] float, labels [B] int32) -> mean smoothed cross-entropy."""
    import mindspore as ms
    from mindspore import Tensor, nn, ops

    off = smoothing / (num_classes - 1) if num_classes > 1 else 0.0

    class LabelSmoothingCrossEntropy(nn.LossBase):
        def __init__(self) -> None:
            super().__init__()
            self.num_classes = num_classes
            self.on_value = Tensor(1.0 - smoothing, ms.float32)
            self.off_value = Tensor(off, ms.float32)
            self.one_hot = ops.OneHot()
            self.cross_entropy = nn.SoftmaxCrossEntropyWithLogits(sparse=False, reduction="mean")
            self.cast = ops.Cast()

        def construct(self, logits, labels):
            targets = self.one_hot(labels, self.num_classes, self.on_value, self.off_value)
            return self.cross_entropy(self.cast(logits, ms.float32), targets)

    return LabelSmoothingCrossEntropy()
