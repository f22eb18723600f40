"""Classic downsamplers: max pooling, average pooling and plain subsampling.

All three keep the size contract ``(N, C, H, W) -> (N, C, ceil(H / sh), ceil(W / sw))`` for any
``H, W >= 1``. Pooling windows are placed by :func:`~shiftpool.downsample.geometry.pool_padding`:
window ``o`` starts at ``o * s - before``; padded positions never win a max and never count in an
average (the average is over the valid pixels of each window, like ``count_include_pad=False``).

Whenever torch's own pooling places the windows the same way (always for ``kernel == stride`` on
sizes divisible by the stride, and for most other cases), the operators call
:func:`torch.nn.functional.max_pool2d` / :func:`~torch.nn.functional.avg_pool2d` directly, so
they are exactly torch's ops and as fast; otherwise they pad explicitly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftpool.downsample.base import Downsample, check_input
from shiftpool.downsample.geometry import (
    is_traced,
    memory_format,
    output_size,
    pair,
    pool_padding,
    zeros_in_layout,
)
from shiftpool.downsample.registry import register_downsample

__all__ = [
    "AvgDownsample",
    "MaxDownsample",
    "Subsample",
    "avg_downsample",
    "max_downsample",
    "subsample",
]

Size2 = int | tuple[int, int]


def _torch_covers(size: int, kernel: int, stride: int, before: int) -> bool:
    """Whether torch's pooling (padding ``before``, ``ceil_mode``) yields at least our windows.

    Windows start at the same places (``o * stride - before``) by construction, and torch clips
    windows at the border instead of padding them, which is the same for a max and for an
    average over valid pixels. Our last window starts before ``size``; torch keeps it when
    ``kernel <= 2 * before + stride``. It may add one more window, which is cut off.
    """
    return before <= kernel // 2 and kernel <= 2 * before + stride and size + 2 * before >= kernel


def pool_windows(
    x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], mode: str
) -> Tensor:
    """Max (``mode="max"``) or valid-pixel average (``"avg"``) pooling under the size contract.

    The unchecked core of :func:`max_downsample` and :func:`avg_downsample`.

    Args:
        x: ``(N, C, H, W)``.
        kernel: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        mode: ``"max"`` or ``"avg"``.

    Returns:
        ``(N, C, ceil(H / sh), ceil(W / sw))``.
    """
    (kh, kw), (sh, sw) = kernel, stride
    h, w = x.shape[-2], x.shape[-1]
    top, left = pool_padding(h, kh, sh)[0], pool_padding(w, kw, sw)[0]
    if _torch_covers(h, kh, sh, top) and _torch_covers(w, kw, sw, left):
        if mode == "max":
            y = F.max_pool2d(x, kernel, stride, (top, left), ceil_mode=True)
        else:
            y = F.avg_pool2d(x, kernel, stride, (top, left), ceil_mode=True,
                             count_include_pad=False)
        out_h, out_w = output_size((h, w), stride)  # a no-op slice when kernel == stride
        return y[..., :out_h, :out_w].contiguous(memory_format=memory_format(x))
    top, bottom = pool_padding(h, kh, sh)
    left, right = pool_padding(w, kw, sw)
    pad = (left, right, top, bottom)
    if mode == "max":
        return F.max_pool2d(F.pad(x, pad, value=float("-inf")), kernel, stride)
    total = F.avg_pool2d(F.pad(x, pad), kernel, stride)
    valid = F.avg_pool2d(F.pad(x.new_ones((1, 1, h, w)), pad), kernel, stride)
    return total / valid


def _kernel(kernel_size: Size2 | None, stride: tuple[int, int], op: str) -> tuple[int, int]:
    return stride if kernel_size is None else pair(kernel_size, "kernel_size", op)


def max_downsample(x: Tensor, stride: Size2 = 2, kernel_size: Size2 | None = None) -> Tensor:
    """Max pooling with kernel ``kernel_size`` (default: the stride) under the size contract.

    Args:
        x: ``(N, C, H, W)`` floating tensor.
        stride: int or ``(sh, sw)``, each >= 1.
        kernel_size: int or ``(kh, kw)``, each >= 1; overlapping (``k > s``) and gapped
            (``k < s``) windows are allowed. ``None`` means ``kernel_size = stride``.

    Returns:
        ``(N, C, ceil(H / sh), ceil(W / sw))``; equal to ``F.max_pool2d(x, s)`` when
        ``kernel_size == stride`` divides ``H`` and ``W``.

    Example:
        >>> import torch
        >>> max_downsample(torch.arange(9.).view(1, 1, 3, 3)).squeeze()
        tensor([[4., 5.],
                [7., 8.]])
    """
    check_input(x, "max")
    s = pair(stride, "stride", "max")
    return pool_windows(x, _kernel(kernel_size, s, "max"), s, "max")


def avg_downsample(x: Tensor, stride: Size2 = 2, kernel_size: Size2 | None = None) -> Tensor:
    """Average pooling over the valid pixels of each window, under the size contract.

    Windows that hang over the border (odd sizes, overlapping kernels) average only the input
    pixels they cover, so a constant map stays constant.

    Args:
        x: ``(N, C, H, W)`` floating tensor.
        stride: int or ``(sh, sw)``, each >= 1.
        kernel_size: int or ``(kh, kw)``, each >= 1; ``None`` means ``kernel_size = stride``.

    Returns:
        ``(N, C, ceil(H / sh), ceil(W / sw))``; equal to ``F.avg_pool2d(x, s)`` when
        ``kernel_size == stride`` divides ``H`` and ``W``.

    Example:
        >>> import torch
        >>> avg_downsample(torch.arange(9.).view(1, 1, 3, 3)).squeeze()
        tensor([[2.0000, 3.5000],
                [6.5000, 8.0000]])
    """
    check_input(x, "avg")
    s = pair(stride, "stride", "avg")
    return pool_windows(x, _kernel(kernel_size, s, "avg"), s, "avg")


def subsample(x: Tensor, stride: Size2 = 2) -> Tensor:
    """Keep every ``s``-th pixel from the top-left, ``x[..., ::sh, ::sw]``: a strided conv's grid.

    The result is a new tensor in the input's memory format (not a strided view).

    Args:
        x: ``(N, C, H, W)`` floating tensor.
        stride: int or ``(sh, sw)``, each >= 1.

    Returns:
        ``(N, C, ceil(H / sh), ceil(W / sw))``.

    Example:
        >>> import torch
        >>> subsample(torch.arange(9.).view(1, 1, 3, 3)).squeeze()
        tensor([[0., 2.],
                [6., 8.]])
    """
    check_input(x, "subsample")
    sh, sw = pair(stride, "stride", "subsample")
    return _subsample(x, sh, sw)


def _subsample(x: Tensor, sh: int, sw: int) -> Tensor:
    # nested: TorchScript skips the body of this `if` only, and cannot compile is_traced()
    if not torch.jit.is_scripting():  # noqa: SIM102
        if not is_traced() and torch.is_grad_enabled() and x.requires_grad:
            return _Subsample.apply(x, sh, sw)
    return x[..., ::sh, ::sw].clone(memory_format=memory_format(x))


class _Subsample(torch.autograd.Function):
    """:func:`subsample` with a backward that returns the input gradient in the input's memory
    format (autograd's slice backward zero-fills a contiguous tensor, and every layer before
    a channels_last model's subsampling then runs its backward on mixed layouts)."""

    @staticmethod
    def forward(ctx, x: Tensor, sh: int, sw: int) -> Tensor:
        ctx.stride, ctx.shape, ctx.layout = (sh, sw), tuple(x.shape), memory_format(x)
        return x[..., ::sh, ::sw].clone(memory_format=ctx.layout)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        sh, sw = ctx.stride
        grad_x = zeros_in_layout(ctx.shape, grad, ctx.layout)
        grad_x[..., ::sh, ::sw] = grad
        return grad_x, None, None


class _Pool(Downsample):
    """Shared body of :class:`MaxDownsample` and :class:`AvgDownsample`."""

    def __init__(
        self, channels: int | None = None, stride: Size2 = 2, kernel_size: Size2 | None = None
    ) -> None:
        super().__init__(stride=stride, channels=channels)
        self.kernel_size: tuple[int, int] = _kernel(kernel_size, self.stride, self.name)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return pool_windows(x, self.kernel_size, self.stride, self.name)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}"


@register_downsample
class MaxDownsample(_Pool):
    """Max pooling, kernel ``k`` (default: the stride), stride ``s``: :func:`max_downsample`.

    Args:
        channels: accepted for the common interface; ``None`` (any) is fine.
        stride: int or ``(sh, sw)``.
        kernel_size: int or ``(kh, kw)`` >= 1; ``None`` means the stride.

    Shape:
        ``(N, C, H, W) -> (N, C, ceil(H / sh), ceil(W / sw))``.

    Example:
        >>> import torch
        >>> pool = MaxDownsample(stride=2, kernel_size=3)
        >>> pool(torch.randn(2, 8, 7, 7)).shape
        torch.Size([2, 8, 4, 4])
    """

    name = "max"


@register_downsample
class AvgDownsample(_Pool):
    """Average pooling over valid pixels, kernel ``k`` (default: stride): :func:`avg_downsample`.

    Args:
        channels: accepted for the common interface; ``None`` (any) is fine.
        stride: int or ``(sh, sw)``.
        kernel_size: int or ``(kh, kw)`` >= 1; ``None`` means the stride.

    Shape:
        ``(N, C, H, W) -> (N, C, ceil(H / sh), ceil(W / sw))``.

    Example:
        >>> import torch
        >>> pool = AvgDownsample(stride=2)
        >>> pool(torch.ones(1, 3, 5, 5)).unique()
        tensor([1.])
    """

    name = "avg"


@register_downsample
class Subsample(Downsample):
    """``x[..., ::sh, ::sw]``: the sampling of a strided convolution, see :func:`subsample`.

    Shape:
        ``(N, C, H, W) -> (N, C, ceil(H / sh), ceil(W / sw))``.

    Example:
        >>> import torch
        >>> Subsample(stride=(2, 3))(torch.randn(1, 4, 5, 7)).shape
        torch.Size([1, 4, 3, 3])
    """

    name = "subsample"

    def __init__(self, channels: int | None = None, stride: Size2 = 2) -> None:
        super().__init__(stride=stride, channels=channels)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return _subsample(x, self.stride[0], self.stride[1])
