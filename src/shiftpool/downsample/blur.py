"""Anti-aliased downsampling: BlurPool and MaxBlurPool (Zhang, ICML 2019).

``blur`` low-passes the input with a depthwise binomial filter of size ``f`` and keeps every
``s``-th pixel; only the kept outputs are computed (a convolution with stride ``s``). The input
is padded 'same' — ``(f - 1) // 2`` before and ``f // 2`` after, in ``reflect`` (default),
``replicate``, ``zero`` or ``circular`` mode — so the output has ``ceil(H / s)`` rows.

``maxblur`` is Zhang's MaxBlurPool: a stride-1 max pool of kernel ``k`` over the windows that lie
inside the map, ``M[r, c] = max x[r : r + k, c : c + k]`` (``L = H - k + 1`` rows; a kernel larger
than the map is cut to it), then the blur of ``M``. Exactly, per axis, with ``out = ceil(H / s)``
and ``before = (f - 1) // 2``::

    maxblur(x) = conv_stride_s(pad(M, before, (out - 1) * s + f - L - before, mode), binomial_f)

The reference implementations (Zhang's antialiased-cnns ``MaxBlurPool``: ``k = 2``, reflect;
kornia's ``MaxBlurPool2D``: any ``k``, zero padding) compute the same with ``f // 2`` after and
return ``ceil(L / s)`` rows. ``maxblur`` equals them bit for bit on those rows; to keep the size
contract it has ``ceil(H / s) - ceil(L / s)`` more at the end (for ``k = s = 2``: none on even
sizes, one last row/column on odd sizes), read from further padding of ``M`` in the same mode.
So on even sizes with ``k = s = 2`` (every ResNet/VGG stage), the output equals the reference's.

The filter is built once per module for its channel count (a non-persistent buffer), so no
channel repeat runs in ``forward`` and the ONNX graph holds a constant weight; a module built
with ``channels=None`` broadcasts one filter (a view, no copy). Measured choices (CPU, torch
2.14): one depthwise 2-D convolution on the explicitly padded input beat a separable pair of
1-D convolutions, a single-channel convolution over ``N * C`` maps, a 3-D convolution and a
chain of 2x2 average pools, in fp32 and bf16, contiguous and channels_last. Zero padding on both
sides alike (odd ``f``) is the convolution's own ``padding=``, without a padded copy; so is
reflect/replicate padding in channels_last inference, the few border rows and columns then
computed again from thin padded strips (bit-equal; the time of timm's pad and convolution
times 0.72-0.91 in float32, 0.87-1.10 in bf16, at (16, 64, 56, 56) and (128, 32, 32, 32);
in contiguous format it measured no faster, so there the padded copy stays). On CPU,
a strided filtering that needs a gradient runs in float32 when the input is bf16/fp16 or when
an autocast region would make the convolution bf16/fp16 (autocast is switched off around it):
torch's CPU strided depthwise-convolution backward is about four times slower in bf16 than in
float32 (not so at stride 1). The result keeps the dtype the convolution would have had.
"""

from __future__ import annotations

import math
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftpool.core.checks import check_positive_int
from shiftpool.downsample.base import Downsample, check_input
from shiftpool.downsample.geometry import (
    check_pad_mode,
    is_traced,
    memory_format,
    pad2d,
    pair,
    relayout,
)
from shiftpool.downsample.pool import _kernel
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


_HALF = (torch.float16, torch.bfloat16)


def _float32_fallback(x: Tensor) -> torch.dtype | None:
    """The dtype to return when the depthwise convolution must run in float32, else ``None``.

    On CPU, torch's *strided* depthwise-convolution backward is several times slower in
    bf16/fp16 than in float32 (measured at stride 2, (128, 32, 32, 32), channels_last: 51 ms
    against 13 ms with the casts), so a strided filtering that needs a gradient runs in float32
    when ``x`` is bf16/fp16, or when a CPU autocast region would turn the convolution into
    bf16/fp16. At stride 1 bf16 is the faster (8.6 ms against 15.5 ms): no fallback there.
    The result has the dtype the convolution would have had (``x``'s, or autocast's).
    """
    if x.device.type != "cpu" or not (x.requires_grad and torch.is_grad_enabled()):
        return None
    if torch.is_autocast_enabled("cpu") and x.dtype != torch.float64:
        low = torch.get_autocast_dtype("cpu")
        return low if low in _HALF else None
    return x.dtype if x.dtype in _HALF else None


def _fill_border(out: Tensor, pad: tuple[int, int, int, int], mode: str) -> None:
    """Fill the ``pad`` border of ``out`` (interior already written) in ``mode``, in place.

    Columns of the interior rows first, then whole rows (so corners come from the padded
    columns). Needs ``pad`` smaller than the interior (``<=`` for circular).
    """
    left, right, top, bottom = pad
    h, w = out.shape[-2] - top - bottom, out.shape[-1] - left - right
    rows = out[..., top : top + h, :]
    for dim, view, before, after, size in ((-1, rows, left, right, w), (-2, out, top, bottom, h)):
        for i in range(1, before + 1):  # padded index before - i
            source = {"reflect": before + i, "replicate": before,
                      "circular": before + size - i}.get(mode)
            target = view.narrow(dim, before - i, 1)
            if source is None:
                target.zero_()
            else:
                target.copy_(view.narrow(dim, source, 1))
        for i in range(1, after + 1):  # padded index before + size - 1 + i
            last = before + size - 1
            source = {"reflect": last - i, "replicate": last, "circular": before + i - 1}.get(mode)
            target = view.narrow(dim, last + i, 1)
            if source is None:
                target.zero_()
            else:
                target.copy_(view.narrow(dim, source, 1))


def _fold_border(grad: Tensor, pad: tuple[int, int, int, int], mode: str) -> Tensor:
    """The backward of :func:`_fill_border`: border gradients added (in place) to the pixels
    they copied; returns the interior view."""
    left, right, top, bottom = pad
    h, w = grad.shape[-2] - top - bottom, grad.shape[-1] - left - right
    if mode != "zero":
        for dim, view, before, after, size in ((-2, grad, top, bottom, h),
                                               (-1, grad[..., top : top + h, :], left, right, w)):
            last = before + size - 1
            for i in range(1, before + 1):
                source = {"reflect": before + i, "replicate": before,
                          "circular": before + size - i}[mode]
                view.narrow(dim, source, 1).add_(view.narrow(dim, before - i, 1))
            for i in range(1, after + 1):
                source = {"reflect": last - i, "replicate": last, "circular": before + i - 1}[mode]
                view.narrow(dim, source, 1).add_(view.narrow(dim, last + i, 1))
    return grad[..., top : top + h, left : left + w]


class _PaddedCopy(torch.autograd.Function):
    """``x`` padded by ``pad`` in ``mode`` as a new tensor of ``dtype``, with a backward that
    folds the border into the interior and casts back in one pass (torch's reflection-pad
    backward zero-fills and scatters: measured 2-3x the time). Forward: torch's pad where the
    dtype stays, else one copy that also casts (the CPU fallback's float32: 0.57x the time of
    a pad then a cast, bf16 channels_last)."""

    @staticmethod
    def forward(ctx, x: Tensor, pad: tuple[int, int, int, int], mode: str,
                dtype: torch.dtype) -> Tensor:
        left, right, top, bottom = pad
        h, w = x.shape[-2], x.shape[-1]
        ctx.pad, ctx.mode, ctx.dtype, ctx.layout = pad, mode, x.dtype, memory_format(x)
        if dtype == x.dtype:  # torch's pad is the faster copy (measured); the same values
            torch_mode = "constant" if mode == "zero" else mode
            return F.pad(x, pad, mode=torch_mode).contiguous(memory_format=ctx.layout)
        out = torch.empty((*x.shape[:-2], h + top + bottom, w + left + right), dtype=dtype,
                          device=x.device, memory_format=ctx.layout)
        out[..., top : top + h, left : left + w].copy_(x)  # the cast, in the same pass
        _fill_border(out, pad, mode)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        # the gradient of an internal tensor that only the convolution reads: folded in place
        # (a copy first where it is not a plain dense tensor, e.g. expanded)
        if not (grad.is_contiguous() or grad.is_contiguous(memory_format=torch.channels_last)):
            grad = grad.contiguous()
        interior = _fold_border(grad, ctx.pad, ctx.mode)
        # in the same dtype this is the interior view (row gaps, x's layout): a dense copy for
        # the layers before measured 1.2% slower in a converted ResNet-18's fp32 step
        return interior.to(ctx.dtype, memory_format=ctx.layout), None, None, None


def _padded_copy(x: Tensor, pad: tuple[int, int, int, int], mode: str,
                 dtype: torch.dtype) -> Tensor:
    """``pad2d(x, pad, mode).to(dtype)``, through :class:`_PaddedCopy` where it applies."""
    left, right, top, bottom = pad
    h, w = x.shape[-2], x.shape[-1]
    fits = max(left, right) < w and max(top, bottom) < h
    if (is_traced() or not fits
            or not (torch.is_grad_enabled() and x.requires_grad)):
        return pad2d(x, pad, mode).to(dtype)
    return _PaddedCopy.apply(x, pad, mode, dtype)


def _blur(
    x: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: str,
    layout: torch.memory_format | None = None,
    pad: tuple[int, int, int, int] | None = None,
) -> Tensor:
    """Depthwise filtering of padded ``x`` with ``weight``, evaluated only at the strided outputs.

    Args:
        x: ``(N, C, H, W)``.
        weight: ``(C, 1, f, f)`` or ``(1, 1, f, f)`` (then shared by every channel).
        stride: ``(sh, sw)``.
        padding: one of ``PAD_MODES``.
        layout: memory format of the result; default: that of ``x``.
        pad: ``(left, right, top, bottom)``; default 'same': ``(f - 1) // 2`` before and
            ``f // 2`` after, so that the result has ``ceil(H / sh)`` rows.

    Returns:
        ``(N, C, (H + top + bottom - f) // sh + 1, (W + left + right - f) // sw + 1)``.
    """
    size = weight.shape[-1]
    layout = memory_format(x) if layout is None else layout
    if pad is None:
        before, after = (size - 1) // 2, size // 2
        pad = (before, after, before, after)
    if size == 1:  # the identity filter: plain subsampling
        x = pad2d(x, pad, padding)
        return x[..., :: stride[0], :: stride[1]].clone(memory_format=layout)
    fallback = _float32_fallback(x) if stride != (1, 1) else None  # see _float32_fallback
    return _filter(x, weight, stride, padding, layout, pad, fallback)


def _filter(
    x: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: str,
    layout: torch.memory_format,
    pad: tuple[int, int, int, int],
    fallback: torch.dtype | None,
) -> Tensor:
    """The convolution of :func:`_blur` (``f > 1``); with ``fallback``, in float32 with autocast
    off, the result cast to ``fallback``."""
    channels, size = x.shape[1], weight.shape[-1]
    if weight.shape[0] != channels:  # a shared filter, or a follower's other channel count
        weight = weight[:1].expand(channels, 1, size, size)
    left, right, top, bottom = pad
    dtype = x.dtype if fallback is None else torch.float32
    conv_padding = (0, 0)
    if _low_forward_applies(x, pad, fallback):
        y = _LowForwardBlur.apply(x, weight, stride, pad, padding, layout)
        return y.contiguous(memory_format=layout)
    if padding == "zero" and left == right and top == bottom:
        conv_padding, padded = (top, left), x.to(dtype)  # the convolution pads: no padded copy
    elif fallback is None and _border_strips_apply(x, weight, stride, padding, pad, layout):
        return _filter_by_strips(x, weight.to(dtype), stride, padding, pad)
    else:
        padded = _padded_copy(x, pad, padding, dtype)
    if fallback is None:
        y = F.conv2d(padded, weight.to(dtype), None, stride, conv_padding, 1, channels)
        return y.contiguous(memory_format=layout)  # small maps may pad by indexing
    with torch.autocast("cpu", enabled=False):  # else autocast casts back to bf16/fp16
        y = F.conv2d(padded, weight.float(), None, stride, conv_padding, 1, channels)
    return y.to(fallback).contiguous(memory_format=layout)


def _low_forward_applies(x: Tensor, pad: tuple[int, int, int, int],
                         fallback: torch.dtype | None) -> bool:
    """Whether :class:`_LowForwardBlur` runs the fallback: a bf16 input whose result is bf16,
    eager, with padding that torch's pad takes (smaller than the map)."""
    left, right, top, bottom = pad
    return (fallback == torch.bfloat16 and x.dtype == torch.bfloat16
            and max(left, right) < x.shape[-1] and max(top, bottom) < x.shape[-2]
            and not is_traced())


class _LowForwardBlur(torch.autograd.Function):
    """The CPU fallback of a bf16 blur with the forward in bf16: the padded copy and the
    convolution in bf16 (equal bit for bit to float32 then rounded: the filter's taps are
    exact and oneDNN accumulates in float32; tests), the backward in float32 (the slow bf16
    strided depthwise backward avoided, see :func:`_float32_fallback`), folded and cast once.
    Forward+backward 0.58-0.83x the time of padding and filtering in float32 (CPU, one thread,
    (16, 64, 56, 56) and (128, 32, 32, 32), reflect and zero padding, with and without
    autocast, contiguous and channels_last)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, stride: tuple[int, int],
                pad: tuple[int, int, int, int], mode: str,
                layout: torch.memory_format) -> Tensor:
        left, right, top, bottom = pad
        with torch.autocast("cpu", enabled=False):  # CPU autocast pads in float32
            if mode == "zero" and left == right and top == bottom:
                padded, conv_padding, fold = x, (top, left), None
            else:
                torch_mode = "constant" if mode == "zero" else mode
                padded = F.pad(x, pad, mode=torch_mode).contiguous(memory_format=layout)
                conv_padding, fold = (0, 0), pad
            y = F.conv2d(padded, weight.to(x.dtype), None, stride, conv_padding, 1, x.shape[1])
        ctx.save_for_backward(weight)
        ctx.args = (stride, conv_padding, fold, mode, layout, padded.shape, x.dtype)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None, None, None]:
        (weight,) = ctx.saved_tensors
        stride, conv_padding, fold, mode, layout, padded_shape, dtype = ctx.args
        # only the shape and memory format of this are read, not its values
        padded = torch.empty(padded_shape, dtype=torch.float32, device=grad.device,
                             memory_format=layout)
        with torch.autocast("cpu", enabled=False):
            grad = torch.ops.aten.convolution_backward(
                grad.float(), padded, weight.float(), None, stride, conv_padding, (1, 1), False,
                (0, 0), padded_shape[1], (True, False, False))[0]
        if fold is not None:
            if not (grad.is_contiguous() or grad.is_contiguous(memory_format=torch.channels_last)):
                grad = grad.contiguous(memory_format=layout)
            grad = _fold_border(grad, fold, mode)
        return grad.to(dtype, memory_format=layout), None, None, None, None, None


def _border_outputs(size: int, stride: int, before: int, filter_size: int) -> tuple[int, int]:
    """``(t, b)``: the first ``t`` and the last ``b`` outputs of one axis read padding, the
    outputs between them only the input."""
    out = (size + 2 * before - filter_size) // stride + 1
    first_bottom = (size - filter_size + before) // stride + 1
    return -(-before // stride), out - min(first_bottom, out)


def _border_strips_apply(x: Tensor, weight: Tensor, stride: tuple[int, int], mode: str,
                         pad: tuple[int, int, int, int], layout: torch.memory_format) -> bool:
    """Whether :func:`_filter_by_strips` computes this filtering: inference (no gradient) on
    CPU, channels_last (where it pays: 0.5-0.6x the time of a padded copy and a convolution; in
    contiguous format it measured no faster), the same padding on both sides of each axis,
    and border outputs that do not meet."""
    left, right, top, bottom = pad
    if (x.device.type != "cpu"  # measured (and checked bit-equal) with oneDNN only
            or layout != torch.channels_last or left != right or top != bottom
            or mode not in ("reflect", "replicate")  # a strip's own edge is what they copy
            or is_traced()
            or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))):
        return False
    f = weight.shape[-1]
    for size, s, before in ((x.shape[-2], stride[0], top), (x.shape[-1], stride[1], left)):
        first, last = _border_outputs(size, s, before, f)
        out = (size + 2 * before - f) // s + 1
        top_end = (first - 1) * s - before + f  # rows the first strip reads
        bottom_start = (out - last) * s - before  # first row the last strip reads
        if (size < f or first + last >= out  # torch's pad: pad < the strip's size
                or (first and (top_end > size or before >= top_end))
                or (last and (bottom_start < 0 or before >= size - bottom_start))):
            return False
    return True


def _filter_by_strips(x: Tensor, weight: Tensor, stride: tuple[int, int], mode: str,
                      pad: tuple[int, int, int, int]) -> Tensor:
    """The depthwise filtering of ``x`` padded by ``pad`` in ``mode``, without a padded copy
    of ``x``: one convolution with zero padding (its own ``padding=``) gives every output that
    reads no padding; the few border rows and columns that do are computed again from thin
    padded strips of ``x`` and written over. Each output is the same sum of the same products
    as in the padded convolution, so the result is equal bit for bit (tests, against timm)."""
    left, _, top, _ = pad
    channels, f = x.shape[1], weight.shape[-1]
    sh, sw = stride
    out = F.conv2d(x, weight, None, stride, (top, left), 1, channels)
    h, w = x.shape[-2], x.shape[-1]
    first, last = _border_outputs(h, sh, top, f)
    if first:  # top rows: input rows [0, (first - 1) * sh - top + f)
        strip = pad2d(x[..., : (first - 1) * sh - top + f, :], (left, left, top, 0), mode)
        out[..., :first, :] = F.conv2d(strip, weight, None, stride, 0, 1, channels)
    if last:
        start = (out.shape[-2] - last) * sh - top
        strip = pad2d(x[..., start:, :], (left, left, 0, top), mode)
        out[..., out.shape[-2] - last :, :] = F.conv2d(strip, weight, None, stride, 0, 1,
                                                       channels)
    first, last = _border_outputs(w, sw, left, f)
    if first:
        strip = pad2d(x[..., : (first - 1) * sw - left + f], (left, 0, top, top), mode)
        out[..., :first] = F.conv2d(strip, weight, None, stride, 0, 1, channels)
    if last:
        start = (out.shape[-1] - last) * sw - left
        strip = pad2d(x[..., start:], (0, left, top, top), mode)
        out[..., out.shape[-1] - last :] = F.conv2d(strip, weight, None, stride, 0, 1,
                                                    channels)
    return out


def _valid_max(x: Tensor, kernel: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
    """Stride-1 max pool over the windows that lie inside the map (torch's ``padding=0``).

    ``m[..., r, c] = max(x[..., r : r + kh, c : c + kw])``; a kernel larger than the map is cut
    to the map (one window over it all). Without a gradient to compute, a running maximum of
    shifted slices is several times faster on CPU than torch's stride-1 max pool (and exactly
    equal); with one, the pool's indexed backward is much faster than that of elementwise
    maxima.

    Returns:
        ``m`` of shape ``(N, C, H - kh' + 1, W - kw' + 1)`` and the kernel ``(kh', kw')`` used,
        ``kh' = min(kh, H)``, ``kw' = min(kw, W)``.
    """
    kernel = (min(kernel[0], x.shape[-2]), min(kernel[1], x.shape[-1]))
    if kernel == (1, 1):
        return x, kernel
    if not (x.requires_grad and torch.is_grad_enabled()):
        return _running_max(_running_max(x, kernel[0], 2), kernel[1], 3), kernel
    return F.max_pool2d(x, kernel, 1), kernel


def _running_max(x: Tensor, kernel: int, dim: int) -> Tensor:
    """Max over the windows ``[o, o + k)`` of ``dim`` that lie inside the map."""
    if kernel == 1:
        return x
    size = x.shape[dim] - kernel + 1
    out = x.narrow(dim, 0, size)
    for offset in range(1, kernel):
        out = torch.maximum(out, x.narrow(dim, offset, size))
    return out


class _PooledBlur(torch.autograd.Function):
    """Maxblur's training path on CPU for the common geometry (every ResNet/VGG stage: ``k = 2``,
    ``f = 3``, even sizes): the blur's padded map is torch's stride-1 max pool *with* padding
    ``p`` (``p`` before and after, the border windows then overwritten in ``mode``), so no padded
    copy is made in the forward and no interior copy of the gradient in the backward (the
    border's gradient is folded into the interior and zeroed: the border windows add exact
    zeros). The blur runs in ``x``'s dtype (bf16 included: measured equal, bit for bit, to
    float32 then rounded, the filter's taps being exact); its backward runs in ``grad_dtype``
    (float32 for the CPU fallback, see :func:`_float32_fallback`), through the max pool's
    backward, before one cast to ``x``'s dtype. Values and gradients equal those of the
    general path exactly (tests)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, stride: tuple[int, int], kernel: tuple[int, int],
                pad: tuple[int, int], mode: str, grad_dtype: torch.dtype) -> Tensor:
        work = x.contiguous(memory_format=torch.channels_last)  # 6x faster pool (see _maxblur)
        padded, indices = torch.ops.aten.max_pool2d_with_indices(work, kernel, (1, 1), pad)
        border = (pad[1], pad[1], pad[0], pad[0])
        _fill_border(padded, border, mode)
        channels = x.shape[1]
        with torch.autocast("cpu", enabled=False):
            y = F.conv2d(padded, weight.to(padded.dtype), None, stride, 0, 1, channels)
        ctx.save_for_backward(indices, weight)
        ctx.args = (stride, kernel, pad, border, mode, grad_dtype)
        ctx.shapes = (x.shape, padded.shape, x.dtype, memory_format(x))
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None, None, None, None]:
        indices, weight = ctx.saved_tensors
        stride, kernel, pad, border, mode, dtype = ctx.args
        x_shape, padded_shape, x_dtype, layout = ctx.shapes
        channels = x_shape[1]
        # only the shapes and memory formats of these are read, not their values
        padded = torch.empty(padded_shape, dtype=dtype, device=grad.device,
                             memory_format=torch.channels_last)
        work = torch.empty(x_shape, dtype=dtype, device=grad.device,
                           memory_format=torch.channels_last)
        grad_padded = torch.ops.aten.convolution_backward(
            grad.to(dtype), padded, weight.to(dtype), None, stride, (0, 0), (1, 1), False,
            (0, 0), channels, (True, False, False))[0]
        if not (grad_padded.is_contiguous()
                or grad_padded.is_contiguous(memory_format=torch.channels_last)):
            grad_padded = grad_padded.contiguous(memory_format=torch.channels_last)
        _fold_border(grad_padded, border, mode)
        top, left = pad
        for dim, size in ((-2, top), (-1, left)):  # the border windows' outputs were replaced
            if size:
                grad_padded.narrow(dim, 0, size).zero_()
                grad_padded.narrow(dim, grad_padded.shape[dim] - size, size).zero_()
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(
            grad_padded, work, kernel, (1, 1), pad, (1, 1), False, indices)
        return grad_x.to(x_dtype, memory_format=layout), None, None, None, None, None, None


def _pooled_blur_pad(
    x: Tensor, stride: tuple[int, int], kernel: tuple[int, int], filter_size: int
) -> tuple[int, int] | None:
    """The pool padding ``(ph, pw)`` under which :class:`_PooledBlur` computes maxblur, or
    ``None`` where it does not apply (the blur's padding of ``M`` must be ``p`` before and after
    on each axis, ``p <= k // 2`` as torch's pool allows, and smaller than ``M``)."""
    before = (filter_size - 1) // 2
    pads = []
    for size, s, k in ((x.shape[-2], stride[0], kernel[0]), (x.shape[-1], stride[1], kernel[1])):
        length = size - k + 1
        after = (math.ceil(size / s) - 1) * s + filter_size - length - before
        if not (k <= size and after == before <= k // 2 and before < length):
            return None
        pads.append(before)
    return pads[0], pads[1]


def _maxblur(
    x: Tensor, weight: Tensor, stride: tuple[int, int], kernel: tuple[int, int], padding: str
) -> Tensor:
    """MaxBlurPool under the size contract; the padding is explained in the module docstring.

    With a gradient to compute on CPU, the max pool runs channels_last (torch's CPU stride-1
    max pool was measured 6x faster so than in contiguous format, forward). Where the padding
    of ``M`` is ``p <= k // 2`` on both sides (``k = 2``, ``f = 3``, even sizes: every ResNet
    stage) and the input is float32/float64/bf16, :class:`_PooledBlur` computes it in one
    function (the pool pads, the blur forward in the input's dtype, its backward in float32
    under the fallback): fwd+bwd 0.80-0.91x the time of the general path with reflect padding
    (bf16 autocast + channels_last at ResNet-20's shapes and (16, 64, 56, 56); 0.90-0.92x in
    float32), 0.97x with zero padding under the fallback; zero padding in float32 stays with
    the convolution's own ``padding=`` (the pooled path measured 1.05-1.09x there). Elsewhere,
    where the blur filters in float32 anyway, the pool runs in float32 (faster than bf16; the
    maxima are the same values).
    """
    layout, f = memory_format(x), weight.shape[-1]
    fallback = _float32_fallback(x) if stride != (1, 1) else None
    work = x
    if (f > 1 and not is_traced() and x.device.type == "cpu" and x.shape[1] > 1
            and x.requires_grad and torch.is_grad_enabled()):
        pad = _pooled_blur_pad(x, stride, kernel, f)
        # zero padding without the fallback stays the convolution's own padding= (this path
        # measured 1.05-1.09x its time there); under the fallback this path is the faster
        if (pad is not None and x.dtype in (torch.float32, torch.float64, torch.bfloat16)
                and (padding != "zero" or fallback is not None)):
            channels = x.shape[1]
            if weight.shape[0] != channels:
                weight = weight[:1].expand(channels, 1, f, f)
            grad_dtype = x.dtype if fallback is None else torch.float32
            y = _PooledBlur.apply(x, weight, stride, kernel, pad, padding, grad_dtype)
            return y.to(fallback or x.dtype).contiguous(memory_format=layout)
        dtype = x.dtype if fallback is None else torch.float32
        work = relayout(x, torch.channels_last).to(dtype)  # the gradient back in x's layout
    maxed, (kh, kw) = _valid_max(work, kernel)
    before = (f - 1) // 2
    if torch.compiler.is_exporting():  # sizes are symbolic: pad by amounts that fit every size
        after_h, after_w = f // 2 + kh - 1, f // 2 + kw - 1
    else:  # exactly what the last output reads, so that zero padding can be the conv's own
        h, w = maxed.shape[-2], maxed.shape[-1]
        after_h = (math.ceil(x.shape[-2] / stride[0]) - 1) * stride[0] + f - h - before
        after_w = (math.ceil(x.shape[-1] / stride[1]) - 1) * stride[1] + f - w - before
        if after_h < 0 or after_w < 0:  # rows that no output reads
            maxed = maxed[..., : h + min(after_h, 0), : w + min(after_w, 0)]
            after_h, after_w = max(after_h, 0), max(after_w, 0)
    pad = (before, after_w, before, after_h)
    if f == 1:
        return _blur(maxed, weight, stride, padding, layout, pad)
    return _filter(maxed, weight, stride, padding, layout, pad, fallback)


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

    The max pool keeps the windows inside the map (``H - k + 1`` rows), as Zhang's and kornia's
    MaxBlurPool do; the blur pads that map so that the size contract holds. Equal to the
    references on their rows (see the module docstring for the exact border).

    Args:
        x: ``(N, C, H, W)`` floating tensor.
        stride: int or ``(sh, sw)``, each >= 1.
        kernel_size: int or ``(kh, kw)`` >= 1; ``None`` means the stride.
        filter_size: binomial filter size ``f >= 1``.
        padding: the blur's padding mode (``reflect``, as Zhang; ``zero`` as kornia).

    Returns:
        ``(N, C, ceil(H / sh), ceil(W / sw))``.

    Example:
        >>> maxblur_downsample(torch.randn(1, 2, 7, 6)).shape
        torch.Size([1, 2, 4, 3])
        >>> maxblur_downsample(torch.arange(16.).view(1, 1, 4, 4), padding="zero")
        tensor([[[[3.7500, 4.5000],
                  [6.7500, 7.5000]]]])
    """
    s, weight, mode = _functional_args(x, stride, filter_size, padding, "maxblur")
    k = _kernel(kernel_size, s, "maxblur")
    return _maxblur(x, weight, s, k, mode)


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
        return _maxblur(x, self.filter, self.stride, self.kernel_size, self.padding)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}"
