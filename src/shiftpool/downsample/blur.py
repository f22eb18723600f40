"""Anti-aliased downsampling: BlurPool and MaxBlurPool (Zhang, ICML 2019).

``blur`` low-passes the input with a depthwise binomial filter of size ``f`` and keeps every
``s``-th pixel; only the kept outputs are computed (a convolution with stride ``s``). The input
is padded 'same' — ``(f - 1) // 2`` before and ``f // 2`` after, in ``reflect`` (default),
``replicate``, ``zero`` or ``circular`` mode — so the output has ``ceil(H / s)`` rows.

``maxblur`` first takes a stride-1 max pool of kernel ``k`` (keeping the size, windows placed as
:func:`~shiftpool.downsample.geometry.pool_padding` places them), then blurs.

The filter is built once per module for its channel count (a non-persistent buffer), so no
channel repeat runs in ``forward`` and the ONNX graph holds a constant weight; a module built
with ``channels=None`` broadcasts one filter (a view, no copy). Measured choices (CPU, torch
2.14): one depthwise 2-D convolution on the explicitly padded input beat a separable pair of
1-D convolutions, a single-channel convolution over ``N * C`` maps, a 3-D convolution and a
chain of 2x2 average pools, in fp32 and bf16, contiguous and channels_last. bf16/fp16 inputs
that need a gradient are filtered in float32 on CPU: torch's CPU depthwise-convolution backward
is about ten times slower in bf16/fp16 than in float32.
"""

from __future__ import annotations

import math
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftpool.core.checks import check_positive_int
from shiftpool.downsample.base import Downsample, check_input
from shiftpool.downsample.geometry import check_pad_mode, memory_format, pad2d, pair
from shiftpool.downsample.pool import _kernel, pool_windows
from shiftpool.downsample.registry import register_downsample

__all__ = [
    "BlurDownsample",
    "MaxBlurDownsample",
    "binomial_filter",
    "blur_downsample",
    "maxblur_downsample",
]

Size2 = int | tuple[int, int]


@cache
def _binomial_row(filter_size: int) -> tuple[float, ...]:
    """``C(f-1, i) / 2^(f-1)`` for ``i < f``: the 1-D binomial low-pass, summing to 1."""
    total = 2 ** (filter_size - 1)
    return tuple(math.comb(filter_size - 1, i) / total for i in range(filter_size))


def _check_filter_size(filter_size: int, op: str) -> int:
    return check_positive_int(filter_size, f"shiftpool.{op}: filter_size")


def binomial_filter(filter_size: int, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Tensor:
    """The normalised 2-D binomial filter: outer product of binomial coefficients.

    Args:
        filter_size: ``f >= 1``; ``f = 1`` is the identity, ``f = 3`` is ``[1, 2, 1] / 4``
            in each direction.

    Returns:
        ``(f, f)`` tensor summing to 1.

    Example:
        >>> binomial_filter(3) * 16
        tensor([[1., 2., 1.],
                [2., 4., 2.],
                [1., 2., 1.]])
    """
    _check_filter_size(filter_size, "blur")
    row = torch.tensor(_binomial_row(filter_size), dtype=torch.float64)
    return torch.outer(row, row).to(dtype=dtype, device=device)


def _needs_float32(x: Tensor) -> bool:
    """bf16/fp16 on CPU with a gradient to compute: filter in float32 (see the module doc)."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float16, torch.bfloat16)
        and x.requires_grad
        and torch.is_grad_enabled()
    )


def _blur(
    x: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: str,
    layout: torch.memory_format | None = None,
) -> Tensor:
    """Depthwise 'same' filtering of ``x`` with ``weight``, evaluated only at the strided outputs.

    Args:
        x: ``(N, C, H, W)``.
        weight: ``(C, 1, f, f)`` or ``(1, 1, f, f)`` (then shared by every channel).
        stride: ``(sh, sw)``.
        padding: one of ``PAD_MODES``.
        layout: memory format of the result; default: that of ``x``.

    Returns:
        ``(N, C, ceil(H / sh), ceil(W / sw))``.
    """
    channels, size = x.shape[1], weight.shape[-1]
    layout = memory_format(x) if layout is None else layout
    if size == 1:  # the identity filter: plain subsampling
        return x[..., :: stride[0], :: stride[1]].clone(memory_format=layout)
    dtype = x.dtype
    if weight.shape[0] != channels:  # a shared filter, or a follower's other channel count
        weight = weight[:1].expand(channels, 1, size, size)
    before, after = (size - 1) // 2, size // 2
    padded = pad2d(x, (before, after, before, after), padding)
    if _needs_float32(x):  # pad first: fewer bytes to move in the narrow type
        padded = padded.float()
    y = F.conv2d(padded, weight.to(padded.dtype), stride=stride, groups=channels)
    return y.to(dtype).contiguous(memory_format=layout)  # small maps may pad by indexing


def _same_max(x: Tensor, kernel: tuple[int, int]) -> Tensor:
    """Stride-1 max pool keeping ``(H, W)``: ``max_downsample(x, 1, kernel)``.

    Without a gradient to compute, a running maximum of shifted slices is several times faster
    on CPU than torch's stride-1 max pool (and exactly equal). With one, the pool's indexed
    backward is much faster than that of elementwise maxima.
    """
    if not (x.requires_grad and torch.is_grad_enabled()):
        return _running_max(_running_max(x, kernel[0], 2), kernel[1], 3)
    return pool_windows(x, kernel, (1, 1), "max")


def _running_max(x: Tensor, kernel: int, dim: int) -> Tensor:
    """Max over windows ``[o - (k-1)//2, o + k//2]`` along ``dim``, ignoring positions outside."""
    if kernel == 1:
        return x
    before, size = (kernel - 1) // 2, x.shape[dim]
    pad = [0, 0, 0, 0]
    pad[(3 - dim) * 2 : (3 - dim) * 2 + 2] = [before, kernel - 1 - before]
    padded = F.pad(x, pad, value=float("-inf"))
    out = padded.narrow(dim, 0, size)
    for offset in range(1, kernel):
        out = torch.maximum(out, padded.narrow(dim, offset, size))
    return out


def _functional_args(
    x: Tensor, stride: Size2, filter_size: int, padding: str, op: str
) -> tuple[tuple[int, int], Tensor, str]:
    """The checked arguments of a functional form: stride pair, ``(1, 1, f, f)`` filter for
    ``x``'s dtype and device, padding mode."""
    check_input(x, op)
    s = pair(stride, "stride", op)
    f = _check_filter_size(filter_size, op)
    mode = check_pad_mode(padding, op)
    return s, binomial_filter(f, x.dtype, x.device).view(1, 1, f, f), mode


def blur_downsample(
    x: Tensor, stride: Size2 = 2, filter_size: int = 3, padding: str = "reflect"
) -> Tensor:
    """BlurPool: binomial low-pass of size ``filter_size``, then keep every ``s``-th pixel.

    Args:
        x: ``(N, C, H, W)`` floating tensor.
        stride: int or ``(sh, sw)``, each >= 1 (stride 1 is a 'same' blur).
        filter_size: ``f >= 1``; ``f = 1`` is plain subsampling.
        padding: ``reflect`` (default), ``replicate``, ``zero`` or ``circular``.

    Returns:
        ``(N, C, ceil(H / sh), ceil(W / sw))``.

    Example:
        >>> blur_downsample(torch.ones(1, 2, 5, 5)).shape
        torch.Size([1, 2, 3, 3])
    """
    s, weight, mode = _functional_args(x, stride, filter_size, padding, "blur")
    return _blur(x, weight, s, mode)


def maxblur_downsample(
    x: Tensor,
    stride: Size2 = 2,
    kernel_size: Size2 | None = None,
    filter_size: int = 3,
    padding: str = "reflect",
) -> Tensor:
    """MaxBlurPool: stride-1 max pool of kernel ``k`` (default: the stride), then a blur.

    Equal to ``blur_downsample(max_downsample(x, 1, k), stride, filter_size, padding)``.

    Args:
        x: ``(N, C, H, W)`` floating tensor.
        stride: int or ``(sh, sw)``, each >= 1.
        kernel_size: int or ``(kh, kw)`` >= 1; ``None`` means the stride.
        filter_size: binomial filter size ``f >= 1``.
        padding: the blur's padding mode (the max pool ignores padded pixels).

    Returns:
        ``(N, C, ceil(H / sh), ceil(W / sw))``.

    Example:
        >>> maxblur_downsample(torch.randn(1, 2, 7, 6)).shape
        torch.Size([1, 2, 4, 3])
    """
    s, weight, mode = _functional_args(x, stride, filter_size, padding, "maxblur")
    k = _kernel(kernel_size, s, "maxblur")
    return _blur(_same_max(x, k), weight, s, mode, memory_format(x))


@register_downsample
class BlurDownsample(Downsample):
    """BlurPool: depthwise binomial low-pass then subsampling, see :func:`blur_downsample`.

    Args:
        channels: channel count to build the filter for; ``None`` accepts any (the one filter
            is then broadcast over channels at run time).
        stride: int or ``(sh, sw)``.
        filter_size: ``f >= 1`` (default 3).
        padding: ``reflect`` (default), ``replicate``, ``zero`` or ``circular``.

    Shape:
        ``(N, C, H, W) -> (N, C, ceil(H / sh), ceil(W / sw))``.

    Example:
        >>> pool = BlurDownsample(channels=8, stride=2, filter_size=4)
        >>> pool(torch.randn(2, 8, 9, 9)).shape
        torch.Size([2, 8, 5, 5])
    """

    name = "blur"
    filter: Tensor

    def __init__(
        self,
        channels: int | None = None,
        stride: Size2 = 2,
        filter_size: int = 3,
        padding: str = "reflect",
    ) -> None:
        super().__init__(stride=stride, channels=channels)
        self.filter_size = _check_filter_size(filter_size, self.name)
        self.padding = check_pad_mode(padding, self.name)
        f = self.filter_size
        weight = binomial_filter(f).view(1, 1, f, f).repeat(channels or 1, 1, 1, 1)
        self.register_buffer("filter", weight, persistent=False)

    def _downsample(self, x: Tensor) -> Tensor:
        return _blur(x, self.filter, self.stride, self.padding)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self._downsample(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, filter_size={self.filter_size}, padding={self.padding!r}"


@register_downsample
class MaxBlurDownsample(BlurDownsample):
    """MaxBlurPool: stride-1 max pool (kernel ``k``) then BlurPool, see :func:`maxblur_downsample`.

    Args:
        channels: channel count to build the filter for; ``None`` accepts any.
        stride: int or ``(sh, sw)``.
        kernel_size: the max pool's kernel, int or ``(kh, kw)`` >= 1; ``None`` means the stride.
        filter_size: ``f >= 1`` (default 3).
        padding: the blur's padding mode, ``reflect`` by default.

    Shape:
        ``(N, C, H, W) -> (N, C, ceil(H / sh), ceil(W / sw))``.

    Example:
        >>> MaxBlurDownsample(channels=4)(torch.randn(1, 4, 8, 8)).shape
        torch.Size([1, 4, 4, 4])
    """

    name = "maxblur"

    def __init__(
        self,
        channels: int | None = None,
        stride: Size2 = 2,
        kernel_size: Size2 | None = None,
        filter_size: int = 3,
        padding: str = "reflect",
    ) -> None:
        super().__init__(channels=channels, stride=stride, filter_size=filter_size, padding=padding)
        self.kernel_size: tuple[int, int] = _kernel(kernel_size, self.stride, self.name)

    def _downsample(self, x: Tensor) -> Tensor:
        maxed = _same_max(x, self.kernel_size)
        return _blur(maxed, self.filter, self.stride, self.padding, memory_format(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}"
