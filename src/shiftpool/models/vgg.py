"""VGG-11 and VGG-16 with batch norm (Simonyan & Zisserman 2015), pooling by any operator.

Each of the five 2x2/2 max pools is replaced by the chosen operator (``max`` reproduces the
network; ``maxblur`` is Zhang's MaxBlurPool, ``s3pool`` Zhai et al.'s S3Pool). The features
are indexed as torchvision's, so its ``features`` weights load as they are; the head is global
average pooling and one linear layer (the usual CIFAR form), not torchvision's 4096-wide one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from shiftpool.core.checks import check_positive_int
from shiftpool.core.errors import InputError
from shiftpool.models.layers import DownsampleSpec, conv2d, init_weights
from shiftpool.models.registry import register_model
from shiftpool.models.resnet import scaled

POOL = "M"

#: name: output channels of each 3x3 convolution, ``"M"`` for a pooling point.
# fmt: off
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11_bn": (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    "vgg16_bn": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL,
                 512, 512, 512, POOL),
}
# fmt: on


class VGG(nn.Module):
    """3x3 convolution → BN → ReLU blocks separated by pooling points; GAP and linear head.

    Args:
        config: channels of each convolution, ``"M"`` for a pooling point (stride 2).
        spec: the operator at every pooling point.
        num_classes: outputs of the classifier.
        in_channels: channels of the input images.

    Shape: ``(N, in_channels, H, W)`` → ``(N, num_classes)``.

    Example:
        >>> net = VGG((8, "M", 16, "M"), DownsampleSpec("max"))
        >>> net(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        config: Sequence[int | str],
        spec: DownsampleSpec,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(config, (str, bytes)) or not isinstance(config, Sequence) or not config:
            raise InputError(
                f"shiftpool.vgg: config must be a non-empty list of channel counts and {POOL!r}, "
                f"got {config!r}"
            )
        layers: list[nn.Module] = []
        channels = in_channels
        for index, item in enumerate(config):
            if item == POOL:
                layers.append(spec.build(channels, 2))
                continue
            width = check_positive_int(item, f"shiftpool.vgg: config[{index}] (or {POOL!r})")
            layers += [
                conv2d(channels, width, 3, circular=spec.circular, bias=True),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _vgg_builder(name: str, config: Sequence[int | str]):
    def build(
        spec: DownsampleSpec, num_classes: int, in_channels: int, *, width: float = 1.0
    ) -> VGG:
        widths = [item if item == POOL else scaled(int(item), width) for item in config]
        return VGG(widths, spec, num_classes, in_channels)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"{name}: VGG with batch norm, channels {config} times ``width``."
    return build


for _name, _config in VGG_CONFIGS.items():
    register_model(_name)(_vgg_builder(_name, _config))
