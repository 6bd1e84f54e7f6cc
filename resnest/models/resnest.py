"""ResNeSt (Zhang et al., 2020, "ResNeSt: Split-Attention Networks") in MindSpore 2.x.

Parameter names mirror the official PyTorch package (zhanghang1989/ResNeSt), with MindSpore's
BatchNorm names (gamma/beta/moving_mean/moving_variance), so published weights convert by name.
All padding is explicit and symmetric: MindSpore's 'same' padding with stride 2 pads differently
from PyTorch, and pooling with pad_mode="pad" does not export to ONNX.
"""

from __future__ import annotations

from mindspore import nn, ops
from mindspore.common.initializer import HeNormal

from resnest.models.registry import ResNeStConfig

# PyTorch's BatchNorm2d momentum of 0.1 is MindSpore's 0.9 (MindSpore weights the old value).
BN_MOMENTUM = 0.9
BN_EPS = 1e-5


def batch_norm(channels: int, zero_gamma: bool = False) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(
        channels, eps=BN_EPS, momentum=BN_MOMENTUM, gamma_init="zeros" if zero_gamma else "ones"
    )


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    group: int = 1,
    has_bias: bool = False,
) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        pad_mode="pad" if padding else "valid",
        padding=padding,
        dilation=dilation,
        group=group,
        has_bias=has_bias,
        weight_init=HeNormal(mode="fan_out", nonlinearity="relu"),
    )


class PaddedAvgPool2d(nn.Cell):
    """Average pool over an explicitly zero-padded input: PyTorch's count_include_pad=True."""

    def __init__(self, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        p = padding
        self.pad = nn.Pad(((0, 0), (0, 0), (p, p), (p, p))) if p else None
        self.pool = nn.AvgPool2d(kernel_size=kernel_size, stride=stride, pad_mode="valid")

    def construct(self, x):
        if self.pad is not None:
            x = self.pad(x)
        return self.pool(x)


class CeilAvgPool2d(nn.Cell):
    """k x k / stride k average pool with ceil_mode=True and count_include_pad=False.

    Odd sizes get a partial last window averaged over its valid elements only, as in the
    official avg_down shortcut; even sizes (the usual case) are a plain pool.
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.k = kernel_size
        self.pool = nn.AvgPool2d(kernel_size=kernel_size, stride=kernel_size, pad_mode="valid")

    def construct(self, x):
        k = self.k
        if k == 1:
            return x
        h, w = x.shape[2], x.shape[3]
        pad_h = (k - h % k) % k
        pad_w = (k - w % k) % k
        if pad_h == 0 and pad_w == 0:
            return self.pool(x)
        summed = self.pool(ops.pad(x, (0, pad_w, 0, pad_h)))
        valid = self.pool(ops.pad(ops.ones((1, 1, h, w), x.dtype), (0, pad_w, 0, pad_h)))
        return summed / valid


class GlobalAvgPool2d(nn.Cell):
    """Mean over H and W; works for any (also non-square) input size."""

    def construct(self, x):
        return ops.mean(x, (2, 3), keep_dims=False)


class RadixSoftmax(nn.Cell):
    """Softmax across the radix splits of each cardinal group (sigmoid when radix is 1)."""

    def __init__(self, radix: int, cardinality: int) -> None:
        super().__init__()
        self.radix = radix
        self.cardinality = cardinality

    def construct(self, x):
        batch = x.shape[0]
        if self.radix > 1:
            x = x.reshape(batch, self.cardinality, self.radix, -1).transpose(0, 2, 1, 3)
            x = ops.softmax(x, axis=1)
            return x.reshape(batch, -1)
        return ops.sigmoid(x).reshape(batch, -1)


class SplitAttentionConv2d(nn.Cell):
    """Split-attention conv: a grouped conv makes `radix` splits, attention weighs their sum."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        radix: int = 2,
        reduction_factor: int = 4,
    ) -> None:
        super().__init__()
        inter_channels = max(in_channels * radix // reduction_factor, 32)
        self.radix = radix
        self.channels = channels
        self.conv = conv2d(
            in_channels, channels * radix, kernel_size, stride, padding, dilation, groups * radix
        )
        self.bn0 = batch_norm(channels * radix)
        self.relu = nn.ReLU()
        self.fc1 = conv2d(channels, inter_channels, 1, group=groups, has_bias=True)
        self.bn1 = batch_norm(inter_channels)
        self.fc2 = conv2d(inter_channels, channels * radix, 1, group=groups, has_bias=True)
        self.rsoftmax = RadixSoftmax(radix, groups)

    def construct(self, x):
        x = self.relu(self.bn0(self.conv(x)))
        batch = x.shape[0]
        if self.radix > 1:
            splits = ops.split(x, self.channels, axis=1)
            gap = splits[0]
            for i in range(1, self.radix):
                gap = gap + splits[i]
        else:
            gap = x
        gap = ops.mean(gap, (2, 3), keep_dims=True)
        gap = self.relu(self.bn1(self.fc1(gap)))
        atten = self.rsoftmax(self.fc2(gap)).reshape(batch, -1, 1, 1)
        if self.radix > 1:
            attens = ops.split(atten, self.channels, axis=1)
            out = attens[0] * splits[0]
            for i in range(1, self.radix):
                out = out + attens[i] * splits[i]
            return out
        return atten * x


class Bottleneck(nn.Cell):
    """ResNeSt bottleneck: 1x1 conv, split-attention 3x3 conv, [avd pool], 1x1 conv, shortcut."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Cell | None = None,
        radix: int = 2,
        cardinality: int = 1,
        bottleneck_width: int = 64,
        avd: bool = False,
        avd_first: bool = False,
        is_first: bool = False,
        last_gamma: bool = False,
    ) -> None:
        super().__init__()
        group_width = int(planes * (bottleneck_width / 64.0)) * cardinality
        self.conv1 = conv2d(inplanes, group_width, 1)
        self.bn1 = batch_norm(group_width)
        self.avd = avd and (stride > 1 or is_first)
        self.avd_first = avd_first
        if self.avd:
            self.avd_layer = PaddedAvgPool2d(3, stride, padding=1)
            stride = 1
        self.conv2 = SplitAttentionConv2d(
            group_width, group_width, 3, stride, padding=1, groups=cardinality, radix=radix
        )
        self.conv3 = conv2d(group_width, planes * 4, 1)
        self.bn3 = batch_norm(planes * 4, zero_gamma=last_gamma)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def construct(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        if self.avd and self.avd_first:
            out = self.avd_layer(out)
        out = self.conv2(out)
        if self.avd and not self.avd_first:
            out = self.avd_layer(out)
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class ResNeSt(nn.Cell):
    """Deep stem, four stages of split-attention bottlenecks, global pool, [dropout], fc."""

    def __init__(self, config: ResNeStConfig, num_classes: int = 1000) -> None:
        super().__init__()
        c = config
        self.config = c
        self.num_classes = num_classes
        if c.deep_stem:
            self.inplanes = c.stem_width * 2
            self.conv1 = nn.SequentialCell(
                conv2d(3, c.stem_width, 3, stride=2, padding=1),
                batch_norm(c.stem_width),
                nn.ReLU(),
                conv2d(c.stem_width, c.stem_width, 3, padding=1),
                batch_norm(c.stem_width),
                nn.ReLU(),
                conv2d(c.stem_width, c.stem_width * 2, 3, padding=1),
            )
        else:
            self.inplanes = 64
            self.conv1 = conv2d(3, 64, 7, stride=2, padding=3)
        self.bn1 = batch_norm(self.inplanes)
        self.relu = nn.ReLU()
        # Zero padding equals PyTorch's -inf padding here: the input is post-ReLU (>= 0).
        self.maxpool_pad = nn.Pad(((0, 0), (0, 0), (1, 1), (1, 1)))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")
        self.layer1 = self._make_layer(64, c.layers[0], stride=1, is_first=False)
        self.layer2 = self._make_layer(128, c.layers[1], stride=2)
        self.layer3 = self._make_layer(256, c.layers[2], stride=2)
        self.layer4 = self._make_layer(512, c.layers[3], stride=2)
        self.avgpool = GlobalAvgPool2d()
        self.drop = nn.Dropout(p=c.final_drop) if c.final_drop > 0.0 else None
        self.fc = nn.Dense(512 * Bottleneck.expansion, num_classes)

    def _make_layer(
        self, planes: int, blocks: int, stride: int, is_first: bool = True
    ) -> nn.SequentialCell:
        c = self.config
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            if c.avg_down:
                down = [
                    CeilAvgPool2d(stride),
                    conv2d(self.inplanes, planes * Bottleneck.expansion, 1),
                ]
            else:
                down = [conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride)]
            downsample = nn.SequentialCell(*down, batch_norm(planes * Bottleneck.expansion))
        block_args = {
            "radix": c.radix,
            "cardinality": c.cardinality,
            "bottleneck_width": c.bottleneck_width,
            "avd": c.avd,
            "avd_first": c.avd_first,
            "last_gamma": c.last_gamma,
        }
        layers = [
            Bottleneck(self.inplanes, planes, stride, downsample, is_first=is_first, **block_args)
        ]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes, **block_args) for _ in range(1, blocks)]
        return nn.SequentialCell(*layers)

    def forward_features(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(self.maxpool_pad(x))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def construct(self, x):
        x = self.avgpool(self.forward_features(x))
        if self.drop is not None:
            x = self.drop(x)
        return self.fc(x)
