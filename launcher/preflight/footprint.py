"""How much device memory a ResNeSt training step needs per card: an estimate, no mindspore.

The network is walked from its registry config (`resnest.models.registry`) with the same layer
shapes as `resnest/models/resnest.py`, counting trainable parameters and the elements of the
tensors the backward pass keeps. Then, per card at batch B (`docs/preflight.md`):

    bytes = P * (4 weight + 4 gradient + 4 momentum [+ 2 fp16 copy under AMP O2/O3])
          + B * A * a            a = 2 bytes under AMP O2/O3, else 4
          + RESERVED_BYTES       framework workspace, kernels, communication buffers

P counts parameters (resnest50 with 1000 classes: 27,483,240, the figure PyTorch reports for the
official model), A the activation elements of one image: for every convolution its output,
its BatchNorm's output and, when one follows, its ReLU's output (each kept for backward), plus
the pooling and split-attention outputs. It ignores allocator fragmentation; the check wants
the estimate below USABLE_FRACTION of the card.
"""

from __future__ import annotations

from dataclasses import dataclass

RESERVED_BYTES = 1 << 30
USABLE_FRACTION = 0.9
GIB = 1 << 30


@dataclass
class Footprint:
    parameters: int
    activations_per_image: int

    def training_bytes(self, batch_size: int, amp: bool) -> int:
        per_param = 14 if amp else 12
        per_activation = 2 if amp else 4
        return (self.parameters * per_param + batch_size * self.activations_per_image
                * per_activation + RESERVED_BYTES)


class _Walker:
    """Accumulates parameters and kept activation elements layer by layer."""

    def __init__(self, size: int) -> None:
        self.params = 0
        self.acts = 0
        self.size = size  # current spatial side

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
             bias: bool = False, bn: bool = True, relu: bool = True) -> None:
        self.size = (self.size + 2 * (k // 2) - k) // stride + 1
        self.params += cin // groups * k * k * cout + (cout if bias else 0)
        self.acts += cout * self.size * self.size * (1 + bn + relu)
        if bn:
            self.params += 2 * cout  # gamma, beta (moving statistics are not trained)

    def pool(self, channels: int, stride: int) -> None:
        self.size = (self.size + stride - 1) // stride if stride > 1 else self.size
        self.acts += channels * self.size * self.size


def footprint(net_name: str, num_classes: int, crop_size: int) -> Footprint:
    from resnest.models.registry import MODEL_CONFIGS

    c = MODEL_CONFIGS[net_name]
    w = _Walker(crop_size)
    if c.deep_stem:
        w.conv(3, c.stem_width, 3, stride=2)
        w.conv(c.stem_width, c.stem_width, 3)
        w.conv(c.stem_width, c.stem_width * 2, 3, relu=True)
        inplanes = c.stem_width * 2
    else:
        w.conv(3, 64, 7, stride=2)
        inplanes = 64
    w.pool(inplanes, 2)  # max pool
    for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), c.layers, strict=True)):
        stride = 1 if index == 0 else 2
        for block in range(blocks):
            block_stride = stride if block == 0 else 1
            down = block == 0 and (block_stride != 1 or inplanes != planes * 4)
            inplanes = _bottleneck(w, c, inplanes, planes, block_stride, down, index > 0)
    w.params += inplanes * num_classes + num_classes
    return Footprint(w.params, w.acts)


def _bottleneck(w: _Walker, c, inplanes: int, planes: int, stride: int,  # type: ignore[no-untyped-def]
                down: bool, is_first: bool) -> int:
    width = int(planes * (c.bottleneck_width / 64.0)) * c.cardinality
    size_in = w.size
    w.conv(inplanes, width, 1)
    avd = c.avd and (stride > 1 or is_first)
    if avd and c.avd_first:
        w.pool(width, stride)
    radix, inter = c.radix, max(width * c.radix // 4, 32)
    w.conv(width, width * radix, 3, stride=1 if avd else stride, groups=c.cardinality * radix)
    side = w.size
    # attention: fc1 (+BN, ReLU) and fc2 on the pooled 1x1 map, softmax, weighted sum
    w.params += width // c.cardinality * inter + inter + 2 * inter
    w.params += inter // c.cardinality * width * radix + width * radix
    w.acts += width * side * side * 2  # the sum of the splits and the weighted sum
    if avd and not c.avd_first:
        w.pool(width, stride)
    w.conv(width, planes * 4, 1, relu=True)
    if down:
        out_side = w.size
        w.size = size_in
        if c.avg_down:
            if stride > 1:
                w.pool(inplanes, stride)
            w.conv(inplanes, planes * 4, 1, relu=False)
        else:
            w.conv(inplanes, planes * 4, 1, stride=stride, relu=False)
        w.size = out_side
    return planes * 4
