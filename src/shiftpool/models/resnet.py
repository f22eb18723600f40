"""ResNets (He et al. 2016) whose every downsampling point takes any shiftpool operator.

Two stems: ``"imagenet"`` (7x7/2 convolution, 3x3/2 max pool) and ``"cifar"`` (3x3/1
convolution, no pool). Block and attribute names follow torchvision, so the state_dict of a
torchvision ResNet loads into ``create_model("resnet50", downsample=None, num_classes=1000)``
as it is, and into any other operator with only the operator's own parameters missing.

Downsampling placement (see :mod:`shiftpool.models.layers`): the strided convolution of a
block runs at stride 1, then BN → ReLU → ``pool``; the shortcut runs ``shortcut_pool`` → 1x1
convolution → BN, where ``shortcut_pool`` follows ``pool``'s phase choice for APS/LPS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from shiftpool.core.checks import check_choice, check_range
from shiftpool.core.errors import InputError
from shiftpool.models.layers import (
    DownsampleSpec,
    conv2d,
    init_weights,
    positive_ints,
    projection,
    stem_max_pool,
)
from shiftpool.models.registry import register_model

Stem = Literal["imagenet", "cifar"]
STEMS: tuple[str, ...] = ("imagenet", "cifar")


def scaled(channels: int, width: float) -> int:
    """``channels`` times the width multiplier, rounded, at least 1.

    Example:
        >>> scaled(64, 0.5)
        32
    """
    check_range(width, "shiftpool.models: width", 0, None, low_open=True)
    return max(1, round(channels * width))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection; ``expansion = 1``.

    Shape: ``(N, in_channels, H, W)`` → ``(N, channels, ceil(H / s), ceil(W / s))``.
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int, spec: DownsampleSpec) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv2d(
            in_channels, channels, 3, spec.conv_stride(stride), circular=spec.circular
        )
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = spec.after_conv(channels, stride)
        self.conv2 = conv2d(channels, out_channels, 3, circular=spec.circular)
        self.bn2 = nn.BatchNorm2d(out_channels)
        _add_shortcut(self, in_channels, out_channels, stride, spec)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        if self.pool is not None:
            out = self.pool(out)
        out = self.bn2(self.conv2(out))
        return self.relu(out + _shortcut(self, x))


class Bottleneck(nn.Module):
    """1x1 → 3x3 (strided: ResNet v1.5, as torchvision) → 1x1 with a residual; ``expansion = 4``.

    Shape: ``(N, in_channels, H, W)`` → ``(N, 4 * channels, ceil(H / s), ceil(W / s))``.
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int, spec: DownsampleSpec) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv2d(in_channels, channels, 1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv2d(channels, channels, 3, spec.conv_stride(stride), circular=spec.circular)
        self.bn2 = nn.BatchNorm2d(channels)
        self.pool = spec.after_conv(channels, stride)
        self.conv3 = conv2d(channels, out_channels, 1)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        _add_shortcut(self, in_channels, out_channels, stride, spec)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        if self.pool is not None:
            out = self.pool(out)
        out = self.bn3(self.conv3(out))
        return self.relu(out + _shortcut(self, x))


def _add_shortcut(
    block: nn.Module, in_channels: int, out_channels: int, stride: int, spec: DownsampleSpec
) -> None:
    """Give ``block`` its ``shortcut_pool`` and ``downsample`` (projection), or ``None``s."""
    needs_projection = stride != 1 or in_channels != out_channels
    block.shortcut_pool = spec.before_shortcut(block.pool, in_channels, stride)
    block.downsample = (
        projection(in_channels, out_channels, stride, spec) if needs_projection else None
    )


def _shortcut(block: nn.Module, x: Tensor) -> Tensor:
    """The shortcut branch; runs after the main path so that a phase follower has its choice."""
    if block.shortcut_pool is not None:
        x = block.shortcut_pool(x)
    return x if block.downsample is None else block.downsample(x)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """A ResNet with a CIFAR or ImageNet stem and shiftpool downsampling.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        depths: blocks per stage.
        widths: channels per stage (before the block's expansion); the stem has ``widths[0]``.
        spec: the downsampling operator and its placement options.
        stem: ``"imagenet"`` or ``"cifar"``.
        num_classes: outputs of the final linear layer.
        in_channels: channels of the input images.

    Shape: ``(N, in_channels, H, W)`` → ``(N, num_classes)``.

    Example:
        >>> net = ResNet(BasicBlock, [3, 3, 3], [16, 32, 64], DownsampleSpec(None), stem="cifar")
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        block: Block,
        depths: Sequence[int],
        widths: Sequence[int],
        spec: DownsampleSpec,
        *,
        stem: Stem = "cifar",
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        check_choice(stem, "shiftpool.models: ResNet stem", STEMS)
        depths = positive_ints(depths, "shiftpool.models: ResNet depths")
        widths = positive_ints(widths, "shiftpool.models: ResNet widths")
        if len(depths) != len(widths):
            raise InputError(
                f"shiftpool.models: {len(depths)} stage depths but {len(widths)} widths"
            )
        stem_width = widths[0]
        imagenet = stem == "imagenet"
        self.conv1 = conv2d(
            in_channels,
            stem_width,
            7 if imagenet else 3,
            spec.conv_stride(2) if imagenet else 1,
            circular=spec.circular,
        )
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.stem_pool = spec.after_conv(stem_width, 2) if imagenet else None
        self.maxpool = stem_max_pool(spec, stem_width) if imagenet else None
        channels = stem_width
        for index, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            stride = 1 if index == 0 else 2
            blocks = []
            for b in range(depth):
                blocks.append(block(channels, width, stride if b == 0 else 1, spec))
                channels = width * block.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
        self.num_stages = len(depths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's feature map ``(N, C, H', W')``."""
        x = self.relu(self.bn1(self.conv1(x)))
        if self.stem_pool is not None:
            x = self.stem_pool(x)
        if self.maxpool is not None:
            x = self.maxpool(x)
        for index in range(self.num_stages):
            x = getattr(self, f"layer{index + 1}")(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.avgpool(self.forward_features(x)), 1))


def resnet(
    block: Block,
    depths: Sequence[int],
    widths: Sequence[int],
    spec: DownsampleSpec,
    num_classes: int,
    in_channels: int,
    *,
    stem: Stem,
    width: float = 1.0,
) -> ResNet:
    """A :class:`ResNet` with every stage width multiplied by ``width``."""
    return ResNet(
        block,
        depths,
        [scaled(w, width) for w in widths],
        spec,
        stem=stem,
        num_classes=num_classes,
        in_channels=in_channels,
    )


def resnet_builder(
    block: Block, depths: Sequence[int], widths: Sequence[int], stem: Stem, name: str
) -> Callable[..., ResNet]:
    """A registry builder for one ResNet configuration; its one model option is ``width``."""

    def build(
        spec: DownsampleSpec, num_classes: int, in_channels: int, *, width: float = 1.0
    ) -> ResNet:
        return resnet(block, depths, widths, spec, num_classes, in_channels, stem=stem, width=width)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"{name}: {block.__name__} stages {tuple(depths)}, widths {tuple(widths)} times "
        f"``width``, {stem} stem."
    )
    return build


IMAGENET_WIDTHS = (64, 128, 256, 512)

#: name: (block, blocks per stage); each in an ImageNet form and a CIFAR form (``_cifar``).
RESNETS: dict[str, tuple[Block, tuple[int, ...]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}

for _name, (_block, _depths) in RESNETS.items():
    register_model(_name)(resnet_builder(_block, _depths, IMAGENET_WIDTHS, "imagenet", _name))
    _cifar = f"{_name}_cifar"
    register_model(_cifar)(resnet_builder(_block, _depths, IMAGENET_WIDTHS, "cifar", _cifar))
