"""S3Pool: pooling with stochastic spatial sampling (Zhai et al., CVPR 2017).

Pooling in two steps:

1. A stride-1 max pool with an ``sh x sw`` window, the input padded at the bottom and right by
   ``s - 1`` with its edge values (replicate), so the map keeps its ``H x W`` size. The window
   at ``(r, c)`` covers rows ``r .. r + sh - 1`` and columns ``c .. c + sw - 1``, clipped to the
   map (replicated edge values never change a maximum).
2. Downsampling to ``H' = ceil(H / sh)`` rows and ``W' = ceil(W / sw)`` columns.

   *Training*: the rows are split into strips of ``g`` rows, ``[t g, (t + 1) g)``; the last
   strip holds what remains (``H - (S - 1) g`` rows, ``S = ceil(H / g)``). Strip ``[a, b)``
   gets the share ``ceil(b / sh) - ceil(a / sh)``: the number of rows that fixed-phase
   subsampling (rows ``0, sh, 2 sh, ...``) would take from it. The shares are at least 1 when
   ``g >= sh``, at most the strip's length, and add up to ``ceil(H / sh)`` for every ``H`` and
   ``g``; with ``g`` a multiple of ``sh`` every full strip gets ``g / sh`` rows. From each strip
   its share of rows is drawn uniformly without replacement; the rows are sorted. Columns are
   drawn the same way, independently. ``g = s`` (the default) jitters each output row inside
   its own ``s``-row block; ``g >= H`` samples the rows anywhere.

   *Evaluation* (``eval_mode``): ``avg`` (default) average-pools the step-1 map with kernel
   and stride ``s`` (a window cut by the border averages its valid part only, which is the
   exact expectation of the training output for ``g = s``); ``max`` max-pools it the same way;
   ``sample`` stays stochastic, averaging ``eval_samples`` draws.

Training and evaluation give the same ``(N, C, ceil(H/sh), ceil(W/sw))`` shape for every size.

Draws: rows then columns (:func:`sample_positions`), from the ``generator`` when one is given,
else from torch's global RNG on the input's device; one draw for the batch (``per_sample=False``,
as the reference code) or one per sample, drawn together. With ``eval_samples = K`` the K passes
draw in turn.

Implementation: in training only the sampled windows of the step-1 map are computed (gathers
of the sampled rows, then columns, with a running maximum), with a backward like max pooling's
(one scatter of the gradient to each window's arg-max). Evaluation builds the step-1 map from
shifted maxima. ``torch.compile``, ONNX export (``avg``/``max``) and TorchScript (``avg``/``max``
evaluation only: the sampling code is Python-only) are supported.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftpool.core.checks import check_positive_int
from shiftpool.core.errors import InputError
from shiftpool.downsample.base import Downsample, check_input
from shiftpool.downsample.geometry import is_traced, memory_format, pair
from shiftpool.downsample.registry import register_downsample

__all__ = [
    "EVAL_MODES",
    "S3Pool",
    "s3pool",
    "sample_positions",
    "stride1_max",
    "strip_shares",
]

EVAL_MODES: tuple[str, ...] = ("avg", "max", "sample")
_OP = "s3pool"


def check_grid_size(
    grid_size: int | tuple[int, int] | None, stride: tuple[int, int]
) -> tuple[int, int]:
    """``grid_size`` as a pair, ``stride`` when ``None``; each must be ``>= `` the stride.

    A strip shorter than the stride would get no output row at all from some strips: it does
    not fit the stride, and is an error.

    Example:
        >>> check_grid_size(None, (2, 2))
        (2, 2)
    """
    if grid_size is None:
        return stride
    grid = pair(grid_size, "grid_size", _OP)
    if grid[0] < stride[0] or grid[1] < stride[1]:
        raise InputError(
            f"shiftpool.{_OP}: grid_size must be >= the stride in each dimension (every strip "
            f"must hold at least one output row); got grid_size={grid_size!r} for "
            f"stride={stride}"
        )
    return grid


def check_eval_options(eval_mode: str, eval_samples: int) -> None:
    """Raise a ``ValueError`` unless ``eval_mode``/``eval_samples`` are a valid combination."""
    if eval_mode not in EVAL_MODES:
        raise InputError(
            f"shiftpool.{_OP}: unknown eval_mode {eval_mode!r}; allowed: {', '.join(EVAL_MODES)}"
        )
    check_positive_int(eval_samples, f"shiftpool.{_OP}: eval_samples")
    if eval_samples > 1 and eval_mode != "sample":
        raise InputError(
            f"shiftpool.{_OP}: eval_samples={eval_samples} averages stochastic passes and needs "
            f"eval_mode='sample', got eval_mode={eval_mode!r}"
        )


def strip_shares(size: int, stride: int, grid: int) -> list[int]:
    """How many output positions each strip of ``grid`` positions gets (see module docstring).

    Strip ``t`` covers ``[t g, min((t + 1) g, size))`` and gets
    ``ceil(end / stride) - ceil(start / stride)``; the shares add up to ``ceil(size / stride)``.

    Example:
        >>> strip_shares(7, 2, 2)
        [1, 1, 1, 1]
        >>> strip_shares(10, 2, 3)
        [2, 1, 2, 0]
    """
    starts = range(0, size, grid)
    return [math.ceil(min(a + grid, size) / stride) - math.ceil(a / stride) for a in starts]


def sample_positions(
    size: int,
    stride: int,
    grid: int,
    draws: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw the sorted positions that S3Pool keeps along one axis, ``draws`` times at once.

    Args:
        size: length of the axis (H or W).
        stride: the stride along it.
        grid: strip length ``g`` (values above ``size`` act as ``size``).
        draws: independent draws (rows of the result).
        generator: optional ``torch.Generator``; the draw happens on its device.
        device: where the result goes (default: the generator's device, else CPU).

    Returns:
        ``(draws, ceil(size / stride))`` int64, each row sorted, with exactly
        ``strip_shares(size, stride, grid)[t]`` positions from strip ``t``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> sample_positions(8, 2, 2, generator=g).shape
        torch.Size([1, 4])
    """
    grid = min(grid, size)
    shares = strip_shares(size, stride, grid)
    strips = len(shares)
    draw_device = generator.device if generator is not None else torch.device(device or "cpu")
    keys = torch.rand(draws, strips, grid, generator=generator, device=draw_device)
    offsets = torch.arange(strips * grid, device=draw_device).view(strips, grid)
    keys = keys.masked_fill(offsets >= size, math.inf)  # the last strip may be shorter
    order = keys.argsort(dim=-1)  # a random permutation of each strip's slots
    # the first `share` slots of every strip, flattened: (strip, slot) pairs, H' of them
    strip_of = torch.tensor([t for t, k in enumerate(shares) for _ in range(k)], device=draw_device)
    slot_of = torch.tensor([j for k in shares for j in range(k)], device=draw_device)
    positions = order[:, strip_of, slot_of] + strip_of * grid
    positions = positions.sort(dim=-1).values
    return positions if device is None else positions.to(device)


def stride1_max(x: Tensor, stride: tuple[int, int]) -> Tensor:
    """Step 1 of S3Pool: ``sh x sw`` max pool at stride 1 over the edge-padded input.

    Computed separably, rows then columns, as a running maximum with the map moved back by
    ``1 .. s - 1`` positions (the last positions keep their clipped windows): about 2-4x faster
    than a stride-1 ``max_pool2d`` on CPU, memory format kept, and exportable.

    Args:
        x: ``(N, C, H, W)``.

    Returns:
        ``(N, C, H, W)``; position ``(r, c)`` holds the maximum of
        ``x[..., r:r+sh, c:c+sw]`` (clipped at the border).

    Example:
        >>> stride1_max(torch.tensor([[[[1., 3., 2.]]]]), (1, 2))
        tensor([[[[3., 3., 2.]]]])
    """
    out = x
    for dim, span in ((2, stride[0]), (3, stride[1])):
        base, size = out, out.shape[dim]
        for step in range(1, min(span, size)):
            kept = size - step
            ahead = torch.maximum(out.narrow(dim, 0, kept), base.narrow(dim, step, kept))
            out = torch.cat([ahead, out.narrow(dim, kept, step)], dim)
    return out


def _gather(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """Select positions ``index`` ``(B, n)`` (B = 1 or N) along ``dim`` of 4-D ``x``."""
    if index.shape[0] == 1 and dim < 3:
        return x.index_select(dim, index[0])  # whole rows: the fastest copy
    shape = [1, 1, 1, 1]
    shape[0], shape[dim] = index.shape
    size = list(x.shape)
    size[dim] = index.shape[1]
    return x.gather(dim, index.view(shape).expand(size))


def _track(chosen: Tensor | None, better: Tensor, step: int) -> Tensor:
    """Step of the running maximum: steps come in increasing order, so the latest step that
    improved it is the largest ``step * better`` seen."""
    improved = better.to(torch.uint8)
    if chosen is None:  # step 1; step 0 is the start
        return improved
    return torch.maximum(chosen, improved.mul_(step))


def _in_memory_order(x: Tensor) -> tuple[Tensor, int]:
    """``x`` as a view in its memory order, ``(N, C, H, W)`` or ``(N, H, W, C)`` for
    channels_last, and the dim of H in it: gathers then copy contiguous runs."""
    if memory_format(x) == torch.channels_last:
        return x.permute(0, 2, 3, 1), 1
    return x, 2


def _from_memory_order(x: Tensor, row_dim: int) -> Tensor:
    return x.permute(0, 3, 1, 2) if row_dim == 1 else x


def _window_max(
    x: Tensor, dim: int, starts: Tensor, stride: int, with_index: bool
) -> tuple[Tensor, Tensor | None]:
    """Maximum along ``dim`` over the windows ``[start, start + stride)`` at ``starts``.

    Returns the maxima and, with ``with_index``, the step of each within its window (``uint8``;
    ``None`` for stride 1 or without ``with_index``). The steps chosen never point past the
    border: a clamped candidate repeats the edge value, which an earlier step already offered,
    and only a strictly larger value moves the choice.
    """
    last = x.shape[dim] - 1
    best = _gather(x, dim, starts)
    chosen = None
    for step in range(1, stride):
        candidate = _gather(x, dim, (starts + step).clamp(max=last))
        if with_index:
            chosen = _track(chosen, candidate > best, step)
        best = torch.maximum(best, candidate)
    return best, chosen


def _sampled_max(
    x: Tensor, rows: Tensor, cols: Tensor, stride: tuple[int, int], row_dim: int, with_index: bool
) -> tuple[Tensor, Tensor | None]:
    """The step-1 map at the sampled rows and columns, without computing the whole map.

    Separable: the maximum over the ``sh`` rows of each sampled window first (``sh`` gathers
    of ``H'`` rows), then over the ``sw`` columns. With ``with_index`` it also tracks where each
    maximum came from, for the backward pass.

    Args:
        x: 4-D, rows along ``row_dim`` and columns along ``row_dim + 1``.
        rows: ``(B, H')`` window starts, ``cols`` ``(B, W')``; ``B`` 1 (whole batch) or N.

    Returns:
        ``x`` reduced to ``H' x W'`` and, with ``with_index``, the flat index ``r * W + c``
        of each output's source (int64, broadcastable to the output; else ``None``).
    """
    col_dim = row_dim + 1
    w = x.shape[col_dim]
    by_rows, row_step = _window_max(x, row_dim, rows, stride[0], with_index)
    best, col_step = _window_max(by_rows, col_dim, cols, stride[1], with_index)
    if not with_index:
        return best, None
    shape = [1, 1, 1, 1]
    shape[0], shape[col_dim] = cols.shape
    col = cols.view(shape) if col_step is None else cols.view(shape) + col_step
    shape[col_dim], shape[row_dim] = 1, rows.shape[1]
    row = rows.view(shape)
    if row_step is not None:  # the row step recorded at the chosen column
        row = row + row_step.gather(col_dim, col.expand_as(best))
    return best, row * w + col


class _SampledMax(torch.autograd.Function):
    """:func:`_sampled_max` with a max-pool-like backward: one scatter of the output gradient
    to the recorded sources (autograd through the gathers would zero-fill the full input once
    per gather)."""

    @staticmethod
    def forward(ctx, x: Tensor, rows: Tensor, cols: Tensor, stride: tuple[int, int]) -> Tensor:
        ordered, row_dim = _in_memory_order(x)
        out, source = _sampled_max(ordered, rows, cols, stride, row_dim, with_index=True)
        ctx.save_for_backward(source.expand_as(out))
        ctx.ordered_shape = ordered.shape
        ctx.row_dim = row_dim
        return _from_memory_order(out, row_dim)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (source,) = ctx.saved_tensors
        row_dim = ctx.row_dim
        shape = list(ctx.ordered_shape)
        grad = grad.permute(0, 2, 3, 1) if row_dim == 1 else grad
        # (N, C, H*W) or (N, H*W, C): scatter along the flattened spatial dim
        flat = [*shape[:row_dim], -1, *shape[row_dim + 2 :]]
        grad_x = grad.new_zeros([*shape[:row_dim], shape[row_dim] * shape[row_dim + 1],
                                 *shape[row_dim + 2 :]])
        # windows of neighbouring samples may overlap: accumulate
        grad_x.scatter_add_(row_dim, source.reshape(flat), grad.reshape(flat))
        return _from_memory_order(grad_x.view(shape), row_dim), None, None, None


def _pool_at(x: Tensor, rows: Tensor, cols: Tensor, stride: tuple[int, int]) -> Tensor:
    if torch.is_grad_enabled() and x.requires_grad and not is_traced():
        return _SampledMax.apply(x, rows, cols, stride)
    ordered, row_dim = _in_memory_order(x)
    out = _sampled_max(ordered, rows, cols, stride, row_dim, with_index=False)[0]
    return _from_memory_order(out, row_dim)


def _stochastic(
    x: Tensor,
    stride: tuple[int, int],
    grid: tuple[int, int],
    per_sample: bool,
    samples: int,
    generator: torch.Generator | None,
) -> Tensor:
    n, _, h, w = x.shape
    draws = n if per_sample else 1
    out = None
    for _ in range(samples):  # eval_samples passes (1 in training)
        rows = sample_positions(h, stride[0], grid[0], draws, generator, x.device)
        cols = sample_positions(w, stride[1], grid[1], draws, generator, x.device)
        one = _pool_at(x, rows, cols, stride)
        out = one if out is None else out + one
    return out if samples == 1 else out / samples


def _expected(x: Tensor, stride: tuple[int, int], eval_mode: str) -> Tensor:
    if eval_mode == "max":
        # a max of maxima: one (2s - 1)-window max pool at stride s over the edge-padded input
        sh, sw = stride
        padded = F.pad(x, (0, 2 * sw - 2, 0, 2 * sh - 2), mode="replicate")
        return F.max_pool2d(padded, (2 * sh - 1, 2 * sw - 1), stride)
    return F.avg_pool2d(stride1_max(x, stride), stride, stride, ceil_mode=True)


def s3pool(
    x: Tensor,
    stride: int | tuple[int, int] = 2,
    grid_size: int | tuple[int, int] | None = None,
    training: bool = True,
    generator: torch.Generator | None = None,
    per_sample: bool = False,
    eval_mode: str = "avg",
    eval_samples: int = 1,
) -> Tensor:
    """S3Pool as a function (see the module docstring for the exact definition).

    Args:
        x: ``(N, C, H, W)``, floating point.
        stride: int or ``(sh, sw)``.
        grid_size: strip length ``g`` (int or pair), each ``>=`` the stride; default the stride.
        training: sample (``True``) or use ``eval_mode``.
        generator: optional ``torch.Generator`` for the draws.
        per_sample: one draw per sample (``True``) or one for the batch (``False``, as the
            reference code).
        eval_mode: ``avg``, ``max`` or ``sample``.
        eval_samples: with ``eval_mode="sample"``, the number of draws averaged.

    Returns:
        ``(N, C, ceil(H / sh), ceil(W / sw))``, memory format of ``x``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> s3pool(torch.randn(2, 3, 7, 8), 2, generator=g).shape
        torch.Size([2, 3, 4, 4])
    """
    stride = pair(stride, "stride", _OP)
    grid = check_grid_size(grid_size, stride)
    check_eval_options(eval_mode, eval_samples)
    check_input(x, _OP)
    if not training and eval_mode != "sample":
        out = _expected(x, stride, eval_mode)
    else:
        samples = eval_samples if not training else 1
        out = _stochastic(x, stride, grid, per_sample, samples, generator)
    return out.contiguous(memory_format=memory_format(x))


@register_downsample
class S3Pool(Downsample):
    """S3Pool: stride-1 max pooling, then sampling of rows and columns in training.

    Args:
        channels: optional; checked against the input when given.
        stride: int or ``(sh, sw)``.
        grid_size: strip length ``g`` (int or pair, each ``>=`` the stride); default the stride.
        per_sample: one draw per sample instead of one per batch.
        generator: optional ``torch.Generator`` for the draws (else torch's global RNG).
        eval_mode: ``avg`` (default), ``max`` or ``sample``.
        eval_samples: draws averaged in evaluation with ``eval_mode="sample"`` (default 1).

    Shapes: ``(N, C, H, W) -> (N, C, ceil(H/sh), ceil(W/sw))`` in both modes.

    Example:
        >>> pool = S3Pool(stride=2, grid_size=4)
        >>> pool(torch.randn(2, 3, 9, 9)).shape
        torch.Size([2, 3, 5, 5])
        >>> pool.eval()(torch.randn(2, 3, 9, 9)).shape
        torch.Size([2, 3, 5, 5])
    """

    name = "s3pool"

    def __init__(
        self,
        channels: int | None = None,
        stride: int | tuple[int, int] = 2,
        grid_size: int | tuple[int, int] | None = None,
        per_sample: bool = False,
        generator: torch.Generator | None = None,
        eval_mode: str = "avg",
        eval_samples: int = 1,
    ) -> None:
        super().__init__(stride=stride, channels=channels)
        self.grid_size: tuple[int, int] = check_grid_size(grid_size, self.stride)
        check_eval_options(eval_mode, eval_samples)
        self.per_sample = bool(per_sample)
        self.generator = generator
        self.eval_mode = eval_mode
        self.eval_samples = eval_samples

    def forward(self, x: Tensor) -> Tensor:
        """Pool ``x``: ``(N, C, H, W) -> (N, C, ceil(H/sh), ceil(W/sw))``."""
        self.check_input(x)
        if torch.jit.is_scripting():
            # TorchScript: the deterministic evaluation modes only (no Generator type there)
            if self.training or self.eval_mode == "sample":
                raise RuntimeError("shiftpool.s3pool: scripted S3Pool supports only evaluation "
                                   "with eval_mode 'avg' or 'max'")
            return _expected(x, self.stride, self.eval_mode)
        else:
            return self._forward_python(x)

    @torch.jit.unused
    def _forward_python(self, x: Tensor) -> Tensor:
        return s3pool(x, self.stride, self.grid_size, self.training, self.generator,
                      self.per_sample, self.eval_mode, self.eval_samples)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, grid_size={self.grid_size}, per_sample={self.per_sample}, "
            f"eval_mode={self.eval_mode!r}, eval_samples={self.eval_samples}"
        )
