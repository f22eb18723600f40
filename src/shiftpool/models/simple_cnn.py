"""The small CNN of the stride and pooling-kernel studies (Mouton, Myburgh & Davel).

A few stages of 3x3 convolution → BN → ReLU → pooling point, where the pooling kernel ``k``
and stride ``s`` are set independently (Mouton et al. vary both: kernels larger than the
stride pool overlapping windows), then a global-average-pooling or fully connected head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from shiftpool.core.checks import check_choice, check_positive_int
from shiftpool.core.errors import InputError
from shiftpool.downsample import downsample_options, list_downsamples
from shiftpool.downsample.geometry import output_size
from shiftpool.models.layers import DownsampleSpec, conv2d, init_weights, positive_ints
from shiftpool.models.registry import register_model

#: The option through which an operator takes its pooling kernel.
KERNEL_OPTION = "kernel_size"

Head = Literal["gap", "fc"]
HEADS: tuple[str, ...] = ("gap", "fc")


def _pool_options(spec: DownsampleSpec, pool_kernel: int | None) -> dict[str, int]:
    """Options that set the pooling kernel of ``spec``'s operator; a clear error if it has none."""
    if pool_kernel is None:
        return {}
    name = spec.name or "max"
    if KERNEL_OPTION not in downsample_options(name):
        takers = [n for n in list_downsamples() if KERNEL_OPTION in downsample_options(n)]
        raise InputError(
            f"shiftpool.simple_cnn: pool_kernel needs an operator with a pooling kernel "
            f"({', '.join(takers)}); {name!r} has none"
        )
    return {KERNEL_OPTION: pool_kernel}


@register_model("simple_cnn")
class SimpleCNN(nn.Module):
    """Stages of conv → BN → ReLU → downsampler, then a GAP or fully connected head.

    Args:
        spec: the operator at every pooling point.
        num_classes: outputs of the classifier.
        in_channels: channels of the input images.
        channels: output channels of each stage's convolution.
        pool_kernel: kernel of the pooling operator (``max``, ``avg``...); ``None``: its default.
        pool_stride: stride of every pooling point; at most the input's height and width
            (a larger one would only pad: a 10**6 stride would allocate terabytes).
        head: ``"gap"`` (global average pooling → linear) or ``"fc"`` (flatten → linear).
        input_size: the input's H = W, needed by the ``"fc"`` head: its flattened size is
            ``channels[-1] * s * s`` with ``s = input_size`` divided (rounded up) by
            ``pool_stride`` once per stage.
        batch_norm: BN after each convolution.

    Every argument is checked when the model is built; inputs are checked before the first
    layer runs (their size against ``pool_stride``, and ``input_size`` for the ``"fc"`` head).

    Shape: ``(N, in_channels, H, W)`` → ``(N, num_classes)``; ``H = W = input_size`` for the
    ``"fc"`` head.

    Example:
        >>> net = SimpleCNN(DownsampleSpec("max"), channels=(8, 16), pool_kernel=3, head="fc",
        ...                 input_size=28, in_channels=1)
        >>> net(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        spec: DownsampleSpec,
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        channels: Sequence[int] = (32, 64, 128),
        pool_kernel: int | None = None,
        pool_stride: int = 2,
        head: Head = "gap",
        input_size: int = 32,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        what = "shiftpool.simple_cnn"
        check_choice(head, f"{what}: head", HEADS)
        channels = positive_ints(channels, f"{what}: channels")
        check_positive_int(pool_stride, f"{what}: pool_stride")
        if pool_kernel is not None:
            check_positive_int(pool_kernel, f"{what}: pool_kernel")
        check_positive_int(input_size, f"{what}: input_size")
        if head == "fc" and pool_stride > input_size:
            raise InputError(
                f"{what}: pool_stride must be <= input_size ({input_size}) for the fc head, "
                f"got {pool_stride}"
            )
        options = _pool_options(spec, pool_kernel)
        layers: list[nn.Module] = []
        previous, size = in_channels, (input_size, input_size)
        for width in channels:
            layers += [
                conv2d(previous, width, 3, circular=spec.circular, bias=not batch_norm),
                nn.BatchNorm2d(width) if batch_norm else nn.Identity(),
                nn.ReLU(inplace=True),
                spec.build(width, pool_stride, **options),
            ]
            previous, size = width, output_size(size, (pool_stride, pool_stride))
        self.features = nn.Sequential(*layers)
        self.head = head
        self.pool_stride = pool_stride
        self.input_size = input_size
        features = previous if head == "gap" else previous * size[0] * size[1]
        self.classifier = nn.Linear(features, num_classes)
        init_weights(self)

    def check_input(self, x: Tensor) -> None:
        """Refuse an input the network cannot take, before anything is allocated for it."""
        if x.dim() != 4:
            raise InputError(
                f"shiftpool.simple_cnn: input must be (N, C, H, W), got shape {tuple(x.shape)}"
            )
        height, width = x.shape[-2:]
        if self.head == "fc" and (height, width) != (self.input_size, self.input_size):
            raise InputError(
                f"shiftpool.simple_cnn: the fc head was built for {self.input_size}x"
                f"{self.input_size} inputs (input_size={self.input_size}), got {height}x{width}; "
                "build it with that input_size or use head='gap'"
            )
        if self.pool_stride > min(height, width):
            raise InputError(
                f"shiftpool.simple_cnn: pool_stride must be <= the input's height and width "
                f"({height}x{width}), got {self.pool_stride}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        x = self.features(x)
        if self.head == "gap":
            x = x.mean((2, 3))
        return self.classifier(torch.flatten(x, 1))
