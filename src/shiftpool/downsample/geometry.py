"""Shared geometry of every downsampler: strides, output sizes, padding and polyphase splits.

Every operator in :mod:`shiftpool.downsample` maps ``(N, C, H, W)`` to
``(N, C, ceil(H / sh), ceil(W / sw))``. The helpers here are the single place where that
contract, the padding modes and the order of polyphase components are defined.

Polyphase order: for stride ``(sh, sw)`` the component with row phase ``i`` and column phase
``j`` is ``x[..., i::sh, j::sw]`` and has flat index ``k = i * sw + j`` (row-major).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftpool.core.checks import is_int
from shiftpool.core.errors import InputError, InputTypeError

PadMode = Literal["circular", "reflect", "replicate", "zero"]
PAD_MODES: tuple[str, ...] = ("circular", "reflect", "replicate", "zero")


def pair(
    value: int | tuple[int, int] | list[int], name: str, op: str, minimum: int = 1
) -> tuple[int, int]:
    """Return ``value`` as a pair of ints, each at least ``minimum``.

    Raises an :class:`~shiftpool.core.errors.InputError` naming the operator ``op`` and the
    argument ``name`` otherwise.

    Example:
        >>> pair(2, "stride", "max")
        (2, 2)
    """
    if is_int(value):
        values = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        values = (int(value[0]), int(value[1]))
    else:
        raise InputTypeError(
            f"shiftpool.{op}: {name} must be an int or a pair of ints, got {value!r}"
        )
    if min(values) < minimum:
        raise InputError(f"shiftpool.{op}: {name} must be >= {minimum}, got {value!r}")
    return values


def check_pad_mode(mode: str, op: str) -> str:
    """Return ``mode`` if it is one of :data:`PAD_MODES`, else raise a ``ValueError``."""
    if mode not in PAD_MODES:
        raise InputError(
            f"shiftpool.{op}: unknown padding mode {mode!r}; allowed: {', '.join(PAD_MODES)}"
        )
    return mode


def output_size(size: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    """Spatial output size of every downsampler: ``(ceil(H / sh), ceil(W / sw))``.

    Example:
        >>> output_size((7, 8), (2, 3))
        (4, 3)
    """
    return (math.ceil(size[0] / stride[0]), math.ceil(size[1] / stride[1]))


def pool_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Padding ``(before, after)`` for ``ceil(size / stride)`` windows of ``kernel`` at ``stride``.

    Windows start at ``o * stride - before``. ``before`` is ``(kernel - 1) // 2`` (as the usual
    ``padding=(k - 1) // 2`` of torch's pools) but never more than ``kernel - stride``, so
    ``kernel <= stride`` pads only after the input, like ``ceil_mode=True``. ``before`` depends on
    kernel and stride only, never on the size: a graph traced at one size is right at every size.

    Example:
        >>> pool_padding(32, 3, 2)
        (1, 0)
        >>> pool_padding(7, 2, 2)
        (0, 1)
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = min((kernel - 1) // 2, max(kernel - stride, 0))  # total >= kernel - stride always
    return before, total - before


def memory_format(x: Tensor) -> torch.memory_format:
    """The memory format an operator's output should have for input ``x``.

    ``torch.channels_last`` when ``x`` is stored channels-last (and not also plainly
    contiguous, as a 1-channel map is), else ``torch.contiguous_format``. Padding and indexing
    can lose channels_last; ``y.contiguous(memory_format=memory_format(x))`` restores it.

    Example:
        >>> memory_format(torch.zeros(1, 3, 4, 4).to(memory_format=torch.channels_last))
        torch.channels_last
    """
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _wrap_index(length: int, before: int, after: int, mode: str, device: torch.device) -> Tensor:
    """Source indices of a 1-D padding of ``length`` elements by ``before``/``after``."""
    idx = torch.arange(-before, length + after, device=device)
    if mode == "circular":
        return idx.remainder(length)
    if mode == "replicate":
        return idx.clamp(0, length - 1)
    # reflect without repeating the edge, periodic with period 2 * (length - 1)
    if length == 1:
        return torch.zeros_like(idx)
    period = 2 * (length - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= length, period - idx, idx)


def _traceable_wrap_index(
    length: int, before: int, after: int, mode: str, device: torch.device
) -> Tensor:
    """:func:`_wrap_index` without a branch on ``length``, for symbolic sizes (export).

    The remainder is written as ``i - floor(i / n) * n``: the ONNX exporter cannot translate
    ``Tensor.remainder`` by a symbolic size.
    """
    idx = torch.arange(-before, length + after, device=device)
    if mode == "replicate":
        return idx.clamp(0, length - 1)
    period = length if mode == "circular" else torch.sym_max(2 * length - 2, 1)
    idx = idx - torch.div(idx, period, rounding_mode="floor") * period
    if mode == "circular":
        return idx
    return torch.where(idx >= length, period - idx, idx)


def _traceable_pad2d(x: Tensor, pad: tuple[int, int, int, int], mode: str, value: float) -> Tensor:
    """:func:`pad2d` as one graph for every input size, for ``torch.export`` / ONNX export.

    :func:`pad2d` branches on the sizes (no padding needed, padding smaller than the input):
    exported with dynamic H and W, such a branch would be fixed by the example input, and the
    graph wrong for sizes of another parity.
    """
    if mode == "zero":
        return F.pad(x, pad, mode="constant", value=value)
    left, right, top, bottom = pad
    rows = _traceable_wrap_index(x.shape[-2], top, bottom, mode, x.device)
    cols = _traceable_wrap_index(x.shape[-1], left, right, mode, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def pad2d(x: Tensor, pad: tuple[int, int, int, int], mode: str, value: float = 0.0) -> Tensor:
    """Pad the last two dims of ``x`` by ``(left, right, top, bottom)`` in ``mode``.

    Unlike :func:`torch.nn.functional.pad`, every mode accepts padding larger than the input
    (a 1-pixel map padded by 3 in ``reflect`` or ``circular`` mode is valid here): small inputs
    are part of the size contract. ``value`` is used by ``zero`` mode (e.g. ``-inf`` for max pools).

    Args:
        x: ``(..., H, W)``.
        pad: ``(left, right, top, bottom)``, each >= 0.
        mode: one of :data:`PAD_MODES`.

    Returns:
        ``(..., H + top + bottom, W + left + right)``.

    Example:
        >>> pad2d(torch.arange(3.).view(1, 1, 1, 3), (0, 2, 0, 0), "circular")
        tensor([[[[0., 1., 2., 0., 1.]]]])
    """
    # nested: TorchScript skips the body of this `if` only, and cannot compile is_exporting()
    if not torch.jit.is_scripting():  # noqa: SIM102
        if torch.compiler.is_exporting():
            return _traceable_pad2d(x, pad, mode, value)
    left, right, top, bottom = pad
    if left == right == top == bottom == 0:
        return x
    if mode == "zero":
        return F.pad(x, pad, mode="constant", value=value)
    h, w = x.shape[-2], x.shape[-1]
    fits = max(left, right) < w and max(top, bottom) < h
    if fits and mode in ("reflect", "replicate", "circular"):
        return F.pad(x, pad, mode=mode)
    rows = _wrap_index(h, top, bottom, mode, x.device)
    cols = _wrap_index(w, left, right, mode, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def pad_to_multiple(x: Tensor, stride: tuple[int, int], mode: str, value: float = 0.0) -> Tensor:
    """Pad ``x`` at the bottom and right so that H and W are multiples of ``stride``.

    Args:
        x: ``(N, C, H, W)``.

    Returns:
        ``(N, C, ceil(H/sh)*sh, ceil(W/sw)*sw)``; ``x`` itself when nothing is needed.

    Example:
        >>> pad_to_multiple(torch.ones(1, 1, 3, 4), (2, 2), "replicate").shape
        torch.Size([1, 1, 4, 4])
    """
    h, w = x.shape[-2], x.shape[-1]
    ph = (-h) % stride[0]
    pw = (-w) % stride[1]
    return pad2d(x, (0, pw, 0, ph), mode, value)


def phase_grid(x: Tensor, stride: tuple[int, int]) -> Tensor:
    """View ``x`` as its polyphase grid: the one place where components are split off.

    Args:
        x: ``(N, C, H, W)`` with H, W multiples of the stride (see :func:`pad_to_multiple`).

    Returns:
        ``(N, C, H/sh, sh, W/sw, sw)``, a view (no copy, any memory format); component
        ``(i, j)``, flat index ``k = i * sw + j``, is ``grid[:, :, :, i, :, j]``.

    Example:
        >>> grid = phase_grid(torch.arange(16.).view(1, 1, 4, 4), (2, 2))
        >>> grid[0, 0, :, 0, :, 1]
        tensor([[ 1.,  3.],
                [ 9., 11.]])
    """
    n, c, h, w = x.shape
    sh, sw = stride
    return x.view(n, c, h // sh, sh, w // sw, sw)


def component_views(x: Tensor, stride: tuple[int, int]) -> list[Tensor]:
    """The ``sh * sw`` components ``x[..., i::sh, j::sw]`` as views, in the order ``k``.

    Args:
        x: ``(N, C, H, W)`` with H, W multiples of the stride.

    Returns:
        ``sh * sw`` views ``(N, C, H/sh, W/sw)`` of ``x`` (writing to one writes to ``x``).

    Example:
        >>> views = component_views(torch.arange(16.).view(1, 1, 4, 4), (2, 2))
        >>> views[3][0, 0]
        tensor([[ 5.,  7.],
                [13., 15.]])
    """
    grid = phase_grid(x, stride)
    views: list[Tensor] = []
    for i in range(stride[0]):
        for j in range(stride[1]):
            views.append(grid[:, :, :, i, :, j])
    return views


def polyphase_components(x: Tensor, stride: tuple[int, int]) -> Tensor:
    """Split ``x`` into its ``sh * sw`` polyphase components, stacked (a copy).

    Args:
        x: ``(N, C, H, W)`` with H, W multiples of the stride (see :func:`pad_to_multiple`).

    Returns:
        ``(N, sh*sw, C, H/sh, W/sw)``; component ``k = i * sw + j`` is ``x[..., i::sh, j::sw]``.

    Example:
        >>> p = polyphase_components(torch.arange(16.).view(1, 1, 4, 4), (2, 2))
        >>> p[0, 1, 0]
        tensor([[ 1.,  3.],
                [ 9., 11.]])
    """
    n, c, h, w = x.shape
    sh, sw = stride
    grid = phase_grid(x, stride).permute(0, 3, 5, 1, 2, 4)
    return grid.reshape(n, sh * sw, c, h // sh, w // sw)


def is_traced() -> bool:
    """Whether ``torch.compile`` or ``torch.export`` is tracing: hand-written autograd functions
    and eager shortcuts then give way to plain operations that a graph can hold."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def zeros_in_layout(shape: tuple[int, ...], like: Tensor,
                    layout: torch.memory_format) -> Tensor:
    """Zeros of ``shape`` with ``like``'s dtype and device in memory format ``layout``: the
    start of a hand-written backward that scatters a gradient into part of its input
    (``torch.zeros`` takes no memory format, and autograd's own scatters are contiguous).

    Example:
        >>> zeros_in_layout((1, 3, 2, 2), torch.ones(1), torch.channels_last).stride()
        (12, 1, 6, 3)
    """
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=layout).zero_()


class GradientSlot:
    """An input's gradient left by one hand-written backward for another, in the same pass.

    Two autograd functions read the same tensor ``x``, and the *consumer*'s output feeds the
    *producer*'s inputs, so autograd runs the producer's backward first. The consumer arms the
    slot in its forward; the producer, seeing it armed, puts its gradient of ``x`` here and
    returns none for ``x``; the consumer's backward takes it and adds its own in place. That
    is one full-size gradient and one pass fewer than two gradients that autograd adds.

    A gradient is handed over only within one backward pass (autograd's graph task): one
    left by a pass that did not need the consumer (e.g. ``torch.autograd.grad`` for a
    parameter alone) is never taken by a later pass.

    Example:
        >>> slot = GradientSlot()
        >>> slot.arm()
        >>> slot.put(torch.ones(2))  # outside a backward pass: the same pass (-1) for both
        >>> slot.take()
        tensor([1., 1.])
        >>> slot.take() is None
        True
    """

    def __init__(self) -> None:
        self.armed = False
        self._left: tuple[int, Tensor] | None = None

    def arm(self) -> None:
        """Declare that a consumer's backward will take what is put here (its forward ran).

        A torch without autograd's graph task id leaves the slot unarmed (autograd adds)."""
        self.armed = _graph_task_id is not None

    def put(self, gradient: Tensor) -> None:
        """Leave ``gradient`` for the consumer's backward of the current pass."""
        assert _graph_task_id is not None, "put into a slot that was never armed"
        self._left = (_graph_task_id(), gradient)

    def take(self) -> Tensor | None:
        """The gradient left in the current backward pass, if any (and forget it)."""
        left, self._left = self._left, None
        if left is None or _graph_task_id is None or left[0] != _graph_task_id():
            return None
        return left[1]


#: The id of the backward pass autograd is running (-1 outside one); private to torch, so
#: looked up once (present since torch 2.1, where activation checkpointing uses it).
_graph_task_id: Callable[[], int] | None = getattr(torch._C, "_current_graph_task_id", None)


class _Relayout(torch.autograd.Function):
    """``x`` in another memory format, its gradient handed back in ``x``'s own."""

    @staticmethod
    def forward(ctx, x: Tensor, layout: torch.memory_format) -> Tensor:
        ctx.layout = memory_format(x)
        return x.contiguous(memory_format=layout)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad.contiguous(memory_format=ctx.layout), None


def relayout(x: Tensor, layout: torch.memory_format) -> Tensor:
    """``x.contiguous(memory_format=layout)`` whose gradient comes back in ``x``'s layout.

    Autograd passes the gradient of ``.contiguous()`` through unchanged, so an operator that
    works in channels_last inside would hand a contiguous network a channels_last gradient,
    and the layers before it would run their backward on mixed layouts (a ReLU's backward
    measured 5x slower). No copy where ``x`` already has ``layout``.

    Example:
        >>> x = torch.randn(1, 3, 4, 4, requires_grad=True)
        >>> y = relayout(x, torch.channels_last)
        >>> y.is_contiguous(memory_format=torch.channels_last)
        True
        >>> torch.autograd.grad(y.sum(), x)[0].is_contiguous()
        True
    """
    if x.is_contiguous(memory_format=layout):
        return x
    # nested: TorchScript skips the body of this `if` only, and cannot compile is_traced()
    if not torch.jit.is_scripting():  # noqa: SIM102
        if not is_traced() and torch.is_grad_enabled() and x.requires_grad:
            return _Relayout.apply(x, layout)
    return x.contiguous(memory_format=layout)


def _gather_component(x: Tensor, index: Tensor, stride: tuple[int, int]) -> Tensor:
    samples = torch.arange(x.shape[0], device=x.device)
    sw = stride[1]
    return phase_grid(x, stride)[samples, :, :, index // sw, :, index % sw]


class _SelectComponent(torch.autograd.Function):
    """:func:`select_component` with a backward that returns the input gradient in the
    input's memory format. Autograd's own (an index put into a contiguous zero tensor) hands a
    channels_last network a contiguous gradient, and the layers before it then run their
    backward on mixed layouts: a ReLU's backward measured 5x slower in a converted ResNet-18
    (bf16, channels_last), and APS with a ReLU before it 3x slower, forward and backward."""

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, stride: tuple[int, int]) -> Tensor:
        ctx.save_for_backward(index)
        ctx.stride, ctx.shape, ctx.layout = stride, tuple(x.shape), memory_format(x)
        return _gather_component(x, index, stride)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (index,) = ctx.saved_tensors
        grad_x = zeros_in_layout(ctx.shape, grad, ctx.layout)
        samples = torch.arange(ctx.shape[0], device=grad.device)
        sw = ctx.stride[1]
        phase_grid(grad_x, ctx.stride)[samples, :, :, index // sw, :, index % sw] = grad
        return grad_x, None, None


def select_component(x: Tensor, index: Tensor, stride: tuple[int, int]) -> Tensor:
    """Component ``index[n]`` of each sample ``n`` of ``x`` (one gather, no stacked copy).

    Args:
        x: ``(N, C, H, W)`` with H, W multiples of the stride.
        index: ``(N,)`` integer tensor with values in ``[0, sh * sw)``.
        stride: ``(sh, sw)``.

    Returns:
        ``(N, C, H/sh, W/sw)``; the gradient flows to the chosen pixels only, in ``x``'s
        memory format.

    Example:
        >>> select_component(torch.arange(16.).view(1, 1, 4, 4), torch.tensor([3]), (2, 2))[0, 0]
        tensor([[ 5.,  7.],
                [13., 15.]])
    """
    # nested: TorchScript skips the body of this `if` only, and cannot compile is_traced()
    if not torch.jit.is_scripting():  # noqa: SIM102
        if not is_traced() and torch.is_grad_enabled() and x.requires_grad:
            return _SelectComponent.apply(x, index, stride)
    return _gather_component(x, index, stride)
