"""Polyphase selectors: adaptive polyphase sampling (APS) and learnable polyphase sampling (LPS).

With stride ``(sh, sw)`` the input (padded to a multiple of the stride) splits into ``sh * sw``
polyphase components ``x[..., i::sh, j::sw]``, numbered ``k = i * sw + j`` as in
:mod:`~shiftpool.downsample.geometry`. A circular shift of the input permutes the components
(and rolls each by at most one pixel), so picking a component by a rule that does not depend on
where the image sits gives exact invariance to circular shifts:

* ``aps`` (Chaman & Dokmanić, CVPR 2021) keeps, per sample, the component of largest norm.
* ``lps`` (Rojas-Gomez et al., NeurIPS 2022) scores each component with a small circular CNN
  and keeps the best; in training it mixes the components with Gumbel-softmax weights.

In a residual block the shortcut must move with the main path: :meth:`PhaseSelector.follower`
returns a module that downsamples another tensor with the component the selector chose last.

Ties are broken towards the lowest component index. Scores are reduced in float64 so that the
same values summed in another order (a shifted input) give the same winner unless two
components tie to within float64 rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shiftpool.core.checks import check_positive_int
from shiftpool.core.errors import InputError
from shiftpool.downsample.base import Downsample
from shiftpool.downsample.blur import _blur, _check_filter_size, binomial_filter
from shiftpool.downsample.geometry import (
    GradientSlot,
    check_pad_mode,
    is_traced,
    memory_format,
    output_size,
    pad_to_multiple,
    phase_grid,
    polyphase_components,
    select_component,
)
from shiftpool.downsample.registry import register_downsample
from shiftpool.downsample.tips import _mix_components, mix_components

__all__ = ["APS", "LPS", "NORMS", "PhaseFollower", "PhaseSelector", "set_lps_temperature"]

Size2 = int | tuple[int, int]

NORMS: tuple[str, ...] = ("l2", "l1", "linf")


def _pad_to_stride(x: Tensor, stride: tuple[int, int], mode: str) -> Tensor:
    """:func:`~shiftpool.downsample.geometry.pad_to_multiple`, also right in traced graphs.

    Eagerly, a size that is already a multiple of the stride is not copied. A traced graph
    (``torch.compile``, ``torch.export``) must serve every size, so there the padding is
    always applied, by amounts that may be zero, written so that the padded size is visibly
    ``ceil(H / sh) * sh`` (a symbolic multiple of the stride).
    """
    h, w = x.shape[-2], x.shape[-1]
    out_h, out_w = output_size((h, w), stride)
    bottom, right = out_h * stride[0] - h, out_w * stride[1] - w
    if not is_traced() or bottom >= h or right >= w:
        return pad_to_multiple(x, stride, mode)
    if mode == "zero":
        return F.pad(x, (0, right, 0, bottom))
    return F.pad(x, (0, right, 0, bottom), mode=mode)


def take_components(x: Tensor, choice: Tensor, stride: tuple[int, int]) -> Tensor:
    """Per-sample component of ``x``: an index, or a weighted mix of all components.

    Args:
        x: ``(N, C, H, W)`` with ``H``, ``W`` multiples of the stride.
        choice: ``(N,)`` integer component indices, or ``(N, sh * sw)`` floating weights.
        stride: ``(sh, sw)``.

    Returns:
        ``(N, C, H / sh, W / sw)``.

    Example:
        >>> x = torch.arange(16.).view(1, 1, 4, 4)
        >>> take_components(x, torch.tensor([1]), (2, 2))[0, 0]
        tensor([[ 1.,  3.],
                [ 9., 11.]])
    """
    if not choice.is_floating_point():
        return select_component(x, choice, stride)
    return mix_components(x, _per_channel(choice, x), stride)


def _per_channel(weights: Tensor, x: Tensor) -> Tensor:
    """Per-sample component weights ``(N, K)`` as ``x``'s dtype, for every channel:
    ``(N, C, K)`` (an expanded view)."""
    return weights.to(x.dtype)[:, None, :].expand(-1, x.shape[1], -1)


class PhaseSelector(Downsample):
    """Base of the operators that keep one polyphase component per sample.

    Subclasses implement :meth:`scores`; they may override :meth:`prepare` (e.g. to low-pass
    first) and :meth:`choose` (e.g. to mix components in training).

    Args:
        stride: int or ``(sh, sw)``.
        channels: channel count, or ``None`` for any.
        padding: how to pad ``H``, ``W`` up to multiples of the stride (one of
            ``PAD_MODES``, default ``circular``). Exact shift invariance needs sizes that are
            multiples of the stride: a circular shift of a padded map is not a padded shift.
    """

    def __init__(
        self, stride: Size2 = 2, channels: int | None = None, padding: str = "circular"
    ) -> None:
        super().__init__(stride=stride, channels=channels)
        self.padding = check_pad_mode(padding, self.name)
        self._has_followers = False
        self._choice: Tensor | None = None
        self._choice_shape: tuple[int, int, int] | None = None

    def prepare(self, x: Tensor) -> Tensor:
        """The tensor whose components are selected: ``x`` padded to multiples of the stride."""
        return _pad_to_stride(x, self.stride, self.padding)

    def scores(self, prepared: Tensor) -> Tensor:
        """``(N, sh * sw)`` score of each component of ``prepared`` (higher is better)."""
        raise NotImplementedError

    def choose(self, prepared: Tensor) -> Tensor:
        """The forward pass's choice: ``(N,)`` indices (default: best score, lowest on ties)."""
        return self.scores(prepared).argmax(dim=1)

    def select(self, x: Tensor) -> Tensor:
        """Index of the best-scoring component of each sample (what eval mode keeps).

        Args:
            x: ``(N, C, H, W)``.

        Returns:
            ``(N,)`` int64 in ``[0, sh * sw)``, indexing the components of the padded input.
        """
        self.check_input(x)
        with torch.no_grad():
            return self.scores(self.prepare(x)).argmax(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        choice, out = self._choose_and_take(self.prepare(x))
        if self._has_followers:
            self._choice = choice
            self._choice_shape = (x.shape[0], x.shape[2], x.shape[3])
        return out.contiguous(memory_format=memory_format(x))  # padding may lose channels_last

    def _choose_and_take(self, prepared: Tensor) -> tuple[Tensor, Tensor]:
        """The forward pass's choice and the downsampled map it gives."""
        choice = self.choose(prepared)
        return choice, take_components(prepared, choice, self.stride)

    def follower(self) -> PhaseFollower:
        """A module that downsamples another tensor with this selector's latest choice.

        Use it on a residual shortcut so that both branches keep the same component. From the
        first call on, the selector remembers its choice after every forward pass.

        Example:
            >>> aps = APS(stride=2)
            >>> shortcut = aps.follower()
            >>> x = torch.randn(2, 4, 8, 8)
            >>> main = aps(x)
            >>> torch.equal(shortcut(x), main)
            True
        """
        self._has_followers = True
        return PhaseFollower(self)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, padding={self.padding!r}"


class PhaseFollower(Downsample):
    """Downsample with the component a :class:`PhaseSelector` chose in its latest forward pass.

    Holds no parameters and does not register the selector as a submodule (the selector is
    owned by the model elsewhere; ``state_dict`` and ``deepcopy`` see it once). The input must
    have the batch size and spatial size of the selector's latest input; channels may differ.
    It applies the selector's own preparation (padding, and APS's pre-filter) before selecting.
    ``nn.DataParallel`` replicas would still point at the original selector: use one process
    per device (``DistributedDataParallel``) instead.

    Shape:
        ``(N, C', H, W) -> (N, C', ceil(H / sh), ceil(W / sw))``.
    """

    name = "phase_follower"

    def __init__(self, selector: PhaseSelector) -> None:
        super().__init__(stride=selector.stride, channels=None)
        object.__setattr__(self, "_selector", selector)  # not a submodule, on purpose

    @property
    def selector(self) -> PhaseSelector:
        """The selector this module follows."""
        return self._selector

    def forward(self, y: Tensor) -> Tensor:
        self.check_input(y)
        selector = self._selector
        choice = selector._choice
        if choice is None:
            raise RuntimeError(
                f"shiftpool.{self.name}: the {selector.name} selector it follows has not run "
                "a forward pass yet; call the selector first"
            )
        expected = selector._choice_shape
        shape = (y.shape[0], y.shape[2], y.shape[3])
        if not (torch.jit.is_scripting() or torch.compiler.is_compiling()) and shape != expected:
            raise InputError(
                f"shiftpool.{self.name}: input of batch and spatial size (N, H, W) = {shape} "
                f"differs from the {selector.name} selector's latest input {expected}"
            )
        out = take_components(selector.prepare(y), choice, self.stride)
        return out.contiguous(memory_format=memory_format(y))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, selector={self._selector.name}"


def _norm_scores(prepared: Tensor, stride: tuple[int, int], norm: str) -> Tensor:
    """``(N, sh * sw)`` float64 norm of each component (l2: the sum of squares, same order).

    Each pixel's channels are reduced first, in at least float32 (an fp16 square overflows
    above 256): the same pixel gives the same value wherever a shift puts it. The per-phase sums
    over pixels, whose order a shift does change, accumulate in float64.
    """
    x = prepared.detach()
    per_pixel = _pixel_norms(x, norm)
    per_phase = phase_grid(per_pixel.unsqueeze(1), stride)  # (N, 1, Ho, sh, Wo, sw)
    if norm == "linf":
        return per_phase.amax(dim=(1, 2, 4)).double().flatten(1)
    return per_phase.sum(dim=(1, 2, 4), dtype=torch.float64).flatten(1)


def _pixel_norms(x: Tensor, norm: str) -> Tensor:
    """``(N, H, W)``: each pixel's channels reduced in at least float32 (l2: sum of squares).

    A half-precision input is widened a few samples at a time (about 256k values): the widened
    copy stays in cache instead of being a full-size tensor written and read back (0.75x the
    time for a (32, 64, 64, 64) bf16 map, same values). A traced graph takes it whole (its
    batch size may be symbolic).
    """
    wide = torch.promote_types(x.dtype, torch.float32)
    parts = []
    whole = x.dtype == wide or is_traced()
    for part in [x] if whole else x.split(max(1, (1 << 18) // max(1, x[0].numel()))):
        part = part.to(wide)
        if norm == "linf":  # a max is exact in any order
            parts.append(part.abs().amax(dim=1))
        elif norm == "l1":
            parts.append(part.abs().sum(dim=1))
        else:
            parts.append(torch.linalg.vecdot(part, part, dim=1))  # faster than square + sum
    return parts[0] if len(parts) == 1 else torch.cat(parts)


@register_downsample
class APS(PhaseSelector):
    """Adaptive polyphase sampling: keep, per sample, the component of largest norm.

    ``aps`` followed by global average pooling is exactly invariant to circular shifts of an
    input whose size is a multiple of the stride (as long as the largest norm is unique).

    Args:
        channels: channel count, or ``None`` for any (no parameters).
        stride: int or ``(sh, sw)``.
        norm: ``l2`` (default), ``l1`` or ``linf``; ties go to the lowest component index.
        filter_size: binomial low-pass of this size (stride 1, ``padding`` mode) before
            selecting, as in APS with anti-aliasing; 1 (default) means none.
        padding: ``circular`` (default) pads to multiples of the stride (and the low-pass)
            without breaking shift invariance; also ``reflect``, ``replicate``, ``zero``.

    Shape:
        ``(N, C, H, W) -> (N, C, ceil(H / sh), ceil(W / sw))``.

    Example:
        >>> aps = APS(stride=2)
        >>> x = torch.randn(2, 3, 8, 8)
        >>> pool = lambda t: aps(t).mean((2, 3))
        >>> torch.allclose(pool(x), pool(x.roll((1, 3), (2, 3))))
        True
    """

    name = "aps"
    filter: Tensor | None

    def __init__(
        self,
        channels: int | None = None,
        stride: Size2 = 2,
        norm: str = "l2",
        filter_size: int = 1,
        padding: str = "circular",
    ) -> None:
        super().__init__(stride=stride, channels=channels, padding=padding)
        if norm not in NORMS:
            raise InputError(
                f"shiftpool.{self.name}: unknown norm {norm!r}; allowed: {', '.join(NORMS)}"
            )
        self.norm = norm
        self.filter_size = _check_filter_size(filter_size, self.name)
        f = self.filter_size
        weight = None
        if f > 1:
            weight = binomial_filter(f).view(1, 1, f, f).repeat(channels or 1, 1, 1, 1)
        self.register_buffer("filter", weight, persistent=False)

    def prepare(self, x: Tensor) -> Tensor:
        if self.filter is not None:
            x = _blur(x, self.filter, (1, 1), self.padding)
        return _pad_to_stride(x, self.stride, self.padding)

    def scores(self, prepared: Tensor) -> Tensor:
        return _norm_scores(prepared, self.stride, self.norm)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, norm={self.norm!r}, filter_size={self.filter_size}"



def _fill_circular_phases(x: Tensor, stride: tuple[int, int], pad: int, out: Tensor) -> None:
    """Write the components of ``x``, each circularly padded by ``pad``, into ``out``.

    ``out`` is a ``(N, sh, sw, C, H' + 2 pad, W' + 2 pad)`` view; one strided copy of ``x``,
    then the wrapped rows and columns copied from what is already there.
    """
    source = phase_grid(x, stride).permute(0, 3, 5, 1, 2, 4)  # (N, sh, sw, C, H', W')
    h, w = source.shape[-2], source.shape[-1]
    out[..., pad : pad + h, pad : pad + w].copy_(source)
    out[..., :pad, pad : pad + w].copy_(out[..., h : h + pad, pad : pad + w])
    out[..., h + pad :, pad : pad + w].copy_(out[..., pad : 2 * pad, pad : pad + w])
    out[..., :pad].copy_(out[..., w : w + pad])  # whole columns: the corners too
    out[..., w + pad :].copy_(out[..., pad : 2 * pad])


def _phase_view(stacked: Tensor, n: int, stride: tuple[int, int]) -> Tensor:
    """``(N * sh * sw, C, h, w)`` (any memory format) as a ``(N, sh, sw, C, h, w)`` view."""
    return stacked.unflatten(0, (n, stride[0], stride[1]))


class _CircularPhases(torch.autograd.Function):
    """The components of ``x``, stacked in the batch and circularly padded, in one copy.

    Forward: ``(N, C, H, W) -> (N * sh * sw, C, H/sh + 2p, W/sw + 2p)``, channels_last (the
    layout torch's CPU convolution is fastest in); component ``k = i * sw + j`` of sample ``n``
    at ``n * sh * sw + k``. Backward: the padded borders folded back onto the rows and
    columns they copy, then one strided copy into ``x``'s layout. Autograd's own backward of a
    polyphase copy and a circular ``F.pad`` (slices, zero fills, copies) was measured 3x slower.
    """

    @staticmethod
    def forward(ctx, x: Tensor, stride: tuple[int, int], pad: int,
                slot: GradientSlot | None) -> Tensor:
        ctx.stride, ctx.pad, ctx.layout = stride, pad, memory_format(x)
        ctx.shape, ctx.slot = tuple(x.shape), slot
        if slot is not None:
            slot.arm()
        return _stack_padded(x, stride, pad)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        n, c, h, w = ctx.shape
        p = ctx.pad
        grad = _phase_view(grad, n, ctx.stride)
        left = None if ctx.slot is None else ctx.slot.take()  # the mixing's, to add to
        if left is None:
            grad_x = torch.empty((n, c, h, w), dtype=grad.dtype, device=grad.device,
                                 memory_format=ctx.layout)
        else:
            grad_x = left.to(grad.dtype)
        target = phase_grid(grad_x, ctx.stride).permute(0, 3, 5, 1, 2, 4)  # (N, sh, sw, C, ...)
        hp, wp = target.shape[-2], target.shape[-1]
        interior = grad[..., p : p + hp, p : p + wp]
        if left is None:
            target.copy_(interior)
        else:
            target.add_(interior)
        # each padded strip (and corner) adds to the rows/columns it copied
        spans = ((slice(0, p), slice(hp - p, hp)), (slice(p, p + hp), slice(0, hp)),
                 (slice(hp + p, hp + 2 * p), slice(0, p)))
        columns = ((slice(0, p), slice(wp - p, wp)), (slice(p, p + wp), slice(0, wp)),
                   (slice(wp + p, wp + 2 * p), slice(0, p)))
        for rows_from, rows_to in spans:
            for cols_from, cols_to in columns:
                if rows_from.start != p or cols_from.start != p:
                    target[..., rows_to, cols_to] += grad[..., rows_from, cols_from]
        return grad_x, None, None, None


def _circular_phases(x: Tensor, stride: tuple[int, int], pad: int,
                     slot: GradientSlot | None = None) -> Tensor:
    """See :class:`_CircularPhases`; plain operations where a graph is traced. With autograd,
    ``slot`` (if given) is armed: its backward adds its gradient to the one left there."""
    if is_traced():
        components = polyphase_components(x, stride).flatten(0, 1)
        return F.pad(components, (pad, pad, pad, pad), mode="circular")
    if torch.is_grad_enabled() and x.requires_grad:
        return _CircularPhases.apply(x, stride, pad, slot)
    return _stack_padded(x, stride, pad)


def _stack_padded(x: Tensor, stride: tuple[int, int], pad: int) -> Tensor:
    """The forward of :class:`_CircularPhases`."""
    n, c, h, w = x.shape
    sh, sw = stride
    stacked = torch.empty((n * sh * sw, c, h // sh + 2 * pad, w // sw + 2 * pad),
                          dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    _fill_circular_phases(x, stride, pad, _phase_view(stacked, n, stride))
    return stacked


class _ReluMeans(torch.autograd.Function):
    """``relu(z)`` (in place) and its mean over space, summed in float64: ``(M, C)``.

    Returns ``(psi, means)``; the backward writes the input gradient once, in ``z``'s layout
    (autograd's own, through an expanded gradient and the ReLU mask, was measured 3x slower
    for channels_last maps).
    """

    @staticmethod
    def forward(ctx, z: Tensor) -> tuple[Tensor, Tensor]:
        psi = torch.relu_(z)
        ctx.mark_dirty(z)
        ctx.save_for_backward(psi)
        ctx.set_materialize_grads(False)
        return psi, _space_means_float64(psi)

    @staticmethod
    def backward(ctx, grad_psi: Tensor | None, grad_means: Tensor | None) -> Tensor | None:
        (psi,) = ctx.saved_tensors
        if grad_means is None:
            return None if grad_psi is None else grad_psi * (psi > 0)
        spread = (grad_means / (psi.shape[2] * psi.shape[3])).to(psi.dtype)[:, :, None, None]
        spread = spread.contiguous(memory_format=memory_format(psi)).expand_as(psi)
        if grad_psi is not None:
            spread = grad_psi + spread
        return torch.ops.aten.threshold_backward(spread, psi, 0)


def _space_means_float64(x: Tensor) -> Tensor:
    """``x.mean((2, 3))`` accumulated in float64, ``(M, C, h, w) -> (M, C)``.

    Sums of the same values in another order (a shifted input) then agree unless the float64
    rounding differs. Summed in chunks of about 512k elements: a whole float64 copy of a large
    map would be freshly mapped memory (a page fault per 4 KiB) on every call.
    """
    chunk = max(1, (1 << 19) // max(1, x[0].numel()))
    sums = [part.sum(dim=(2, 3), dtype=torch.float64) for part in x.split(chunk)]
    return (sums[0] if len(sums) == 1 else torch.cat(sums)) / (x.shape[2] * x.shape[3])


def _relu_means(z: Tensor) -> Tensor:
    """Mean over space of ``relu(z)``, ``(M, C, h, w) -> (M, C)`` float64; ``z`` is reused."""
    if is_traced():
        return torch.relu(z).mean(dim=(2, 3), dtype=torch.float64)
    if not (torch.is_grad_enabled() and z.requires_grad):
        return _space_means_float64(torch.relu_(z))
    return _ReluMeans.apply(z)[1]


@register_downsample
class LPS(PhaseSelector):
    """Learnable polyphase sampling: a small circular CNN scores each component.

    Scoring net, shared by all components (they are stacked in the batch): 3x3 conv
    ``C -> hidden`` (circular padding) -> ReLU -> 3x3 conv ``hidden -> hidden`` (circular) ->
    mean over channels and space = one logit per component. It is evaluated in an exact,
    cheaper form (:meth:`scores`): the second convolution, linear and followed by a mean over
    a circularly padded map, folds into one weight per hidden channel, and the padded
    components are built in one copy with hand-written backward passes. Measured on CPU
    (one thread, fp32, ``(128, 32, 32, 32)``, forward+backward in training) the layer takes
    about a third of the time of the net run as written (0.31-0.36x), and a ResNet-20
    training step with ``lps`` went from 1.87x to about 1.3x that of max pooling. In training
    the scoring net and the mixing both read the input: the mixing's backward leaves its input
    gradient for the stacked copy's backward to add to in place
    (:class:`~shiftpool.downsample.geometry.GradientSlot`), where autograd would add two
    full-size gradients (converted ResNet-18 step, bf16: 0.985x [0.981, 0.997]).

    * eval: keep the component with the largest logit (lowest index on ties); followed by
      global average pooling this is exactly invariant to circular shifts.
    * training: Gumbel-softmax weights ``softmax((logits + g) / temperature)``, ``g`` i.i.d.
      Gumbel(0, 1), mix the components (the soft relaxation the LPS paper trains with, so the
      scoring net gets a gradient). ``hard=True`` instead keeps the sampled component in the
      forward pass with the soft weights' gradient (straight-through).

    ``temperature`` is a buffer (default 1) that a training loop can anneal, see
    :func:`set_lps_temperature`.

    Padding. The official code (``PolyphaseInvariantDown2D`` with ``LPS``) zero-pads odd sizes
    at the bottom/right to multiples of the stride; ``lps`` pads circularly by default
    (``padding="circular"``), the same choice as for ``aps``: a circular shift of a circularly
    padded map permutes its components, so the layer stays exactly invariant to circular shifts
    of any size, while zero padding is exact only on sizes divisible by the stride. On such
    sizes nothing is padded and the two agree. ``padding="zero"`` reproduces the official code
    on every size. The scoring net's own 3x3 convolutions pad circularly, as the official
    ``LPSLogitLayersV2`` with its default ``logits_pad="circular"``; the component order is the
    same (``k = i * sw + j``, that of ``pixel_unshuffle``), and :meth:`load_reference_state_dict`
    copies an official scoring net's weights.

    Args:
        channels: input channels (required: the scoring net has parameters).
        stride: int or ``(sh, sw)``.
        hidden: width of the scoring net; ``None`` means ``channels``.
        padding: mode for padding ``H``, ``W`` up to multiples of the stride.
        temperature: initial Gumbel-softmax temperature, > 0.
        hard: straight-through hard sampling in training instead of the soft mixture.

    Shape:
        ``(N, C, H, W) -> (N, C, ceil(H / sh), ceil(W / sw))``.

    Example:
        >>> lps = LPS(channels=4, stride=2).eval()
        >>> x = torch.randn(2, 4, 8, 8)
        >>> pool = lambda t: lps(t).mean((2, 3))
        >>> torch.allclose(pool(x), pool(x.roll((1, 3), (2, 3))))
        True
    """

    name = "lps"
    temperature: Tensor

    def __init__(
        self,
        channels: int | None = None,
        stride: Size2 = 2,
        hidden: int | None = None,
        padding: str = "circular",
        temperature: float = 1.0,
        hard: bool = False,
    ) -> None:
        super().__init__(stride=stride, channels=channels, padding=padding)
        if channels is None:
            raise InputError(
                f"shiftpool.{self.name}: channels is required (the scoring net has parameters)"
            )
        hidden = channels if hidden is None else hidden
        self.hidden = check_positive_int(hidden, f"shiftpool.{self.name}: hidden")
        self.hard = bool(hard)
        self.logits = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1, padding_mode="circular"),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, padding_mode="circular"),
        )
        self.register_buffer("temperature", torch.tensor(_check_temperature(temperature)))

    def scores(self, prepared: Tensor) -> Tensor:
        """``(N, sh * sw)`` logits; float64 for a float64 input, else float32.

        Computed exactly but cheaper than running the scoring net as written (see the class
        docstring): the components are stacked and circularly padded in one copy, and the
        second convolution is folded into its mean. With circular padding every input pixel
        meets every tap once, so the mean over channels and space of ``conv2(r)`` is
        ``sum_c v[c] * mean(r[c]) + mean(b2)`` with ``v[c] = mean_o sum_taps W2[o, c]``.
        """
        return self._scores(prepared, None)

    def _scores(self, prepared: Tensor, slot: GradientSlot | None) -> Tensor:
        """:meth:`scores`; the stacked components' backward adds to ``slot``'s gradient."""
        n = prepared.shape[0]
        first, second = self.logits[0], self.logits[2]
        size = (prepared.shape[2] // self.stride[0], prepared.shape[3] // self.stride[1])
        if min(size) >= 3 and size[0] * size[1] > _GATHER_PIXELS:
            stacked = _circular_phases(prepared, self.stride, 1, slot)
            features = F.conv2d(stacked, first.weight, first.bias)
        else:
            features = _small_circular_conv(polyphase_components(prepared, self.stride)
                                            .flatten(0, 1), first.weight, first.bias)
        means = _relu_means(features)  # (N * K, hidden)
        folded = second.weight.sum(dim=(2, 3)).mean(dim=0)
        logits = means @ folded.double() + second.bias.double().mean()
        return logits.view(n, -1).to(torch.promote_types(prepared.dtype, torch.float32))

    def load_reference_state_dict(self, state: Mapping[str, Tensor], prefix: str = "") -> None:
        """Copy the weights of an official LPS scoring net (``LPSLogitLayersV2``).

        Its ``conv1`` and ``conv2`` (weights and biases) become ``logits[0]`` and ``logits[2]``.

        Args:
            state: a ``state_dict()`` holding the scoring net's keys.
            prefix: their prefix; for an official ``PolyphaseInvariantDown2D`` layer's own
                ``state_dict()`` it is ``"component_selection.get_logits."``.

        Example:
            >>> lps = LPS(channels=2, hidden=3)
            >>> official = {"conv1.weight": torch.zeros(3, 2, 3, 3), "conv1.bias": torch.ones(3),
            ...             "conv2.weight": torch.zeros(3, 3, 3, 3), "conv2.bias": torch.ones(3)}
            >>> lps.load_reference_state_dict(official)
            >>> lps.logits[0].bias
            Parameter containing:
            tensor([1., 1., 1.], requires_grad=True)
        """
        ours = {"conv1": self.logits[0], "conv2": self.logits[2]}
        for name, conv in ours.items():
            for key, target in (("weight", conv.weight), ("bias", conv.bias)):
                found = state.get(f"{prefix}{name}.{key}")
                if found is None or found.shape != target.shape:
                    got = "missing" if found is None else f"shape {tuple(found.shape)}"
                    raise InputError(f"shiftpool.lps: reference weight {prefix}{name}.{key!s} "
                                     f"must have shape {tuple(target.shape)}; got {got}")
        with torch.no_grad():
            for name, conv in ours.items():
                conv.weight.copy_(state[f"{prefix}{name}.weight"])
                conv.bias.copy_(state[f"{prefix}{name}.bias"])

    def choose(self, prepared: Tensor) -> Tensor:
        return self._choose(prepared, None)

    def _choose_and_take(self, prepared: Tensor) -> tuple[Tensor, Tensor]:
        # in training, the mixing's input gradient is left for the stacked components'
        # backward to add to (GradientSlot): one full-size gradient and one pass fewer than
        # autograd's sum of the two (the scoring net and the mixing both read the input)
        if not self.training or is_traced():
            return super()._choose_and_take(prepared)
        slot = GradientSlot()
        choice = self._choose(prepared, slot)
        return choice, _mix_components(prepared, _per_channel(choice, prepared), self.stride,
                                       slot)

    def _choose(self, prepared: Tensor, slot: GradientSlot | None) -> Tensor:
        if not self.training:
            with torch.no_grad():
                return self.scores(prepared).argmax(dim=1)
        logits = self._scores(prepared, slot)
        gumbel = -torch.empty_like(logits).exponential_().log()
        soft = ((logits + gumbel) / self.temperature.to(logits.dtype)).softmax(dim=1)
        if not self.hard:
            return soft
        hard = F.one_hot(soft.argmax(dim=1), soft.shape[1]).to(soft.dtype)
        return hard - soft.detach() + soft

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, hidden={self.hidden}, hard={self.hard}"


def _folded_taps(weight: Tensor, size: tuple[int, int]) -> tuple[Tensor, tuple[int, ...]]:
    """A 3x3 filter for circular convolution of maps smaller than 3 along a side, folded.

    On a circle of 2 pixels the offsets -1 and +1 reach the same pixel, on a circle of 1 all
    three do: their taps add up, and the convolution needs 2 (or 1) taps instead of 3 along
    that side, with circular padding of ``(0, 1)`` (or none) instead of ``(1, 1)``. The same
    sums in another order: equal up to rounding (tested), and still exactly equivariant to
    circular shifts. Returns the folded filter and the ``F.pad`` amounts.
    """
    pad: list[int] = []
    for dim, length in ((3, size[1]), (2, size[0])):  # F.pad order: width first
        first, middle, last = weight.unbind(dim)
        if length == 2:
            weight = torch.stack((middle, first + last), dim=dim)
        elif length == 1:
            weight = (first + middle + last).unsqueeze(dim)
        pad += {1: [0, 0], 2: [0, 1]}.get(length, [1, 1])
    return weight, tuple(pad)


#: Component maps of at most this many pixels are scored through one matrix product.
_GATHER_PIXELS = 16


def _tap_offsets(length: int) -> tuple[int, ...]:
    """Offsets of the (folded, :func:`_folded_taps`) taps along a side of ``length`` pixels."""
    return {1: (0,), 2: (0, 1)}.get(length, (-1, 0, 1))


def _small_circular_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv2d(x, weight, bias, padding=1, padding_mode="circular")`` for small maps: of at
    most :data:`_GATHER_PIXELS` pixels, or with a side shorter than 3.

    Sides shorter than 3 fold the filter (:func:`_folded_taps`): 4/9 of the multiply-adds on
    2x2 maps, 1/9 on 1x1. Maps of at most 16 pixels go through one matrix product over their
    circular neighbourhoods (one gather of im2col rows, channels innermost), which oneDNN's
    convolution runs slowly at these sizes: fwd+bwd measured 0.34x its time in bf16 and 0.62x
    in float32 at (128, 512, 2, 2), 0.71x and 0.80x at (128, 256, 4, 4) (in a converted
    ResNet-18's step the 4x4 case measured within 1% of the padded-copy convolution); at
    (128, 128, 8, 8) the convolution was 1.4-1.5x faster, so larger maps stay convolutions.
    """
    h, w = x.shape[2], x.shape[3]
    folded, pad = _folded_taps(weight, (h, w))
    if h * w > _GATHER_PIXELS:
        return F.conv2d(F.pad(x, pad, mode="circular") if any(pad) else x, folded, bias)
    m, c = x.shape[0], x.shape[1]
    # output (i, j) meets pixel ((i + a) % h, (j + b) % w) through tap (a, b)
    pixel = torch.arange(h * w, device=x.device)
    i, j = pixel // w, pixel % w
    gather = torch.stack([((i + a) % h) * w + (j + b) % w
                          for a in _tap_offsets(h) for b in _tap_offsets(w)], dim=1)
    columns = x.permute(0, 2, 3, 1).reshape(m, h * w, c)[:, gather].reshape(m * h * w, -1)
    matrix = folded.permute(0, 2, 3, 1).reshape(folded.shape[0], -1)  # (hidden, taps * C)
    out = F.linear(columns, matrix, bias)
    # a tensor of its own, not a view: the ReLU after it works in place
    return out.view(m, h, w, -1).permute(0, 3, 1, 2).clone(memory_format=torch.channels_last)


def _check_temperature(tau: Any) -> float:
    finite_positive = isinstance(tau, (int, float)) and 0 < float(tau) < float("inf")
    if isinstance(tau, bool) or not finite_positive:
        raise InputError(f"shiftpool.lps: temperature must be a finite number > 0, got {tau!r}")
    return float(tau)


def set_lps_temperature(model: nn.Module, tau: float) -> int:
    """Set the Gumbel-softmax temperature of every LPS layer in ``model``.

    Args:
        model: any module.
        tau: the new temperature, a finite number > 0.

    Returns:
        The number of LPS layers updated.

    Example:
        >>> model = nn.Sequential(LPS(channels=3), nn.Conv2d(3, 3, 1), LPS(channels=3))
        >>> set_lps_temperature(model, 0.5)
        2
    """
    value = _check_temperature(tau)
    layers = [m for m in model.modules() if isinstance(m, LPS)]
    for layer in layers:
        layer.temperature.fill_(value)
    return len(layers)
