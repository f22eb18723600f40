"""TIPS: translation invariant polyphase sampling (Saha & Gokhale, WACV 2025).

A learned, per-sample and per-channel convex combination of the ``sh * sw`` polyphase
components of the input:

1. ``x~`` = the input padded at the bottom and right (``pad_at="end"``, default) or at the top
   and left (``pad_at="start"``, as the reference code) to multiples of the stride (``padding``
   mode, circular by default: a circular shift of the input then permutes the components, the
   argument of SPEC section 3).
2. ``psi = ReLU(depthwise 3x3 conv(x~))`` (no bias, zero padding 1), shape of ``x~``.
3. ``a[n, c, i, j]`` = mean of ``psi`` over the ``(i, j)``-th of the ``sh x sw`` equal regions
   of the map (adaptive average pooling), times a learned per-channel scale (a depthwise 1x1
   conv without bias).
4. ``tau[n, c, :] = softmax(a[n, c].flatten())``: ``sh * sw`` weights summing to 1.
5. ``out = sum_t tau[:, :, t] * P[pair(t)]`` over the polyphase components
   ``P[i, j] = x~[..., i::sh, j::sw]``.

Pairing (``pairing``): with the default ``"natural"``, pooled region ``(i, j)`` weights component
``(i, j)`` (``t = i * sw + j`` both). The reference code stacks the components column-major,
``(0, 0), (1, 0), (0, 1), (1, 1)``, against the row-major regions, so region ``(i, j)`` weights
component ``(j, i)``: ``pairing="reference"`` does that (for any stride: region ``t`` weights
component ``(t % sh, t // sh)``). The two are *not* equivalent up to a permutation of the learned
weights: the 3x3 filter and the scale are shared by all regions, and no choice of them turns the
region means of ``psi`` into their transpose (issue 10 reports a least-squares fit of one
layer to the other leaving a residual of 3.7e-3, against 1.5e-7 for a layer of the same
pairing; ``tests/downsample/test_references.py`` checks that the two differ). To run a model
trained with the official code, build ``TIPS(C, padding="reflect", pad_at="start",
pairing="reference")`` (the reference's defaults, :data:`REFERENCE_OPTIONS`) and copy its weights
with :meth:`TIPS.load_reference_state_dict`; the outputs then equal the reference's.

The computation is the same in training and evaluation. Parameters: ``9 C`` (the 3x3 filter)
plus ``C`` (the scale), ``10 C`` in all for any stride.

Regularisers (reference code; the paper's exact formulas are not confirmed, this is our reading).
A TIPS layer in training mode keeps the tensors of its latest forward call; the losses are
computed from them only when asked for, so a model trained without them pays nothing:

* ``L_FM = mean over samples and channels of (1 - ||tau[n, c, :]||_2)``; it penalises uniform
  mixing (0 for a one-hot ``tau``, ``1 - 1/sqrt(sh*sw)`` for a uniform one).
* ``L_undo = MSE(psi, roll(x~, (dy, dx)))`` with ``dy, dx`` drawn uniformly and independently
  from ``{-m, ..., m}``, ``m = undo_max_shift`` (one draw per layer and call, torch's RNG or the
  layer's ``generator``); the shifted target is detached.

:func:`tips_losses` averages both over a model's TIPS layers and :class:`TipsObjective` forms
``L_FM + (1 - alpha) * CE + alpha * L_undo``, ``L_undo`` only from ``undo_start_epoch``.

What a layer keeps: ``(x~, psi, tau)`` of its latest training-mode call (references to tensors
autograd holds for the backward anyway), replaced by the next call, released by ``eval()`` and
left out of copies and pickles. ``layer.fm_loss()`` and ``layer.undo_loss()`` compute the two
terms from them (on the eager autograd path ``L_undo``'s gradient goes to the layer's parameters
and input through the layer's own backward, not through the kept ``psi``). A layer called twice
in one step keeps the second call. TorchScript-compiled
TIPS computes the same output but records nothing.

Speed: eager code runs the layer in channels_last internally (the depthwise convolution and the
products are 20-40% faster on CPU). With autograd, the layer is one function with one backward
for its output, ``psi`` and ``tau`` together (``_TipsTraining``: the convolution and ReLU fused
on CPU, softmax and scale gradients by hand, the ReLU mask met once by the region means' and
``L_undo``'s gradients, the mixing's input gradient added in place into the convolution's), and
``L_undo`` is computed from shifted slices without a rolled copy; its gradient reaches the
layer's backward through a token output (``_UndoLoss``), where it joins the region means' in
one product instead of being written out as a full-size gradient of ``psi``. Measured (CPU, one
thread, (128, 32, 32, 32), fwd+bwd with both regularisers): 96 -> 45 ms in bf16 autocast +
channels_last, 96 -> 63 ms in float32; the token route took a further 1.6-1.9% off a training
step of a converted ResNet-18 (bf16 and float32, interleaved A/B). ``torch.compile``,
``torch.export``/ONNX and TorchScript trace the plain operations instead. Both are tested equal
(float64, 1e-10).

Example:
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), TIPS(channels=8)).train()
    >>> out = model(torch.randn(2, 3, 16, 16))
    >>> losses = tips_losses(model)  # {"fm": ..., "undo": ...}
    >>> out.shape, sorted(losses)
    (torch.Size([2, 8, 8, 8]), ['fm', 'undo'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shiftpool.core.checks import check_int, check_range
from shiftpool.core.errors import InputError
from shiftpool.downsample.base import Downsample
from shiftpool.downsample.geometry import (
    GradientSlot,
    check_pad_mode,
    component_views,
    is_traced,
    memory_format,
    pad2d,
    pad_to_multiple,
    relayout,
)
from shiftpool.downsample.registry import register_downsample

__all__ = [
    "PAD_AT",
    "PAIRINGS",
    "REFERENCE_OPTIONS",
    "TIPS",
    "TipsObjective",
    "has_tips",
    "tips_losses",
]

PAIRINGS: tuple[str, ...] = ("natural", "reference")
PAD_AT: tuple[str, ...] = ("end", "start")
#: The options under which a TIPS layer computes what the official code computes.
REFERENCE_OPTIONS: dict[str, str] = {"padding": "reflect", "pad_at": "start",
                                     "pairing": "reference"}


def reference_order(tau: Tensor, stride: tuple[int, int]) -> Tensor:
    """Weights of the reference pairing in component order: ``(N, C, sh * sw)`` → same shape.

    Region ``t`` (row-major) of the reference weights component ``(t % sh, t // sh)``; the
    result's entry ``k = i * sw + j`` is the weight of component ``(i, j)``.

    Example:
        >>> reference_order(torch.tensor([[[0., 1., 2., 3.]]]), (2, 2))
        tensor([[[0., 2., 1., 3.]]])
    """
    n, c = tau.shape[0], tau.shape[1]
    sh, sw = stride
    return tau.reshape(n, c, sw, sh).transpose(2, 3).reshape(n, c, sh * sw)


def region_softmax(logits: Tensor, dtype: torch.dtype) -> Tensor:
    """``softmax`` over the ``sh * sw`` regions of ``logits (N, C, sh, sw)`` in ``dtype``:
    ``(N, C, sh * sw)``, a view with channels innermost (the layout the mixing products want).

    Computed with the regions as the outer axis: ATen's softmax over a last axis of 4 entries
    measured 13x the time at (32, 512, 4) on CPU.

    Example:
        >>> region_softmax(torch.zeros(1, 2, 2, 2), torch.float32)
        tensor([[[0.2500, 0.2500, 0.2500, 0.2500],
                 [0.2500, 0.2500, 0.2500, 0.2500]]])
    """
    n, c = logits.shape[0], logits.shape[1]
    regions_outer = logits.permute(0, 2, 3, 1).reshape(n, -1, c)
    return torch.softmax(regions_outer, dim=1, dtype=dtype).transpose(1, 2)


def pad_input(x: Tensor, stride: tuple[int, int], mode: str, at_start: bool) -> Tensor:
    """``x`` padded to multiples of the stride, at the bottom/right or (``at_start``) top/left.

    Example:
        >>> pad_input(torch.arange(3.).view(1, 1, 1, 3), (1, 2), "reflect", True)
        tensor([[[[1., 0., 1., 2.]]]])
    """
    if not at_start:
        return pad_to_multiple(x, stride, mode)
    bottom, right = (-x.shape[-2]) % stride[0], (-x.shape[-1]) % stride[1]
    return pad2d(x, (right, 0, bottom, 0), mode)


def _mix(x: Tensor, weights: Tensor, stride: tuple[int, int], inplace: bool = False) -> Tensor:
    """``sum_k weights[:, :, k] * P[k]``; ``inplace`` accumulates into the first product (eager
    code without autograd through it: 0.85x the time in bf16)."""
    components = component_views(x, stride)
    out = components[0] * weights[:, :, 0, None, None]
    for k in range(1, len(components)):
        if inplace:
            out.addcmul_(components[k], weights[:, :, k, None, None])
        else:
            out = out.addcmul(components[k], weights[:, :, k, None, None])
    return out


class _MixComponents(torch.autograd.Function):
    """:func:`mix_components` with a backward that writes the input gradient once, in the
    input's memory format (autograd's own backward of the strided views is several times
    slower and returns channels_last gradients as contiguous ones)."""

    @staticmethod
    def forward(ctx, x: Tensor, weights: Tensor, stride: tuple[int, int],
                slot: GradientSlot | None) -> Tensor:
        ctx.save_for_backward(x, weights)
        ctx.stride = stride
        ctx.slot = slot if slot is not None and slot.armed else None
        return _mix(x, weights, stride)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, weights = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.empty_like(x)
            for k, part in enumerate(component_views(grad_x, ctx.stride)):
                torch.mul(grad, weights[:, :, k, None, None], out=part)
            if ctx.slot is not None:  # the slot's consumer adds its own gradient of x to it
                ctx.slot.put(grad_x)
                grad_x = None
        if ctx.needs_input_grad[1]:
            components = component_views(x, ctx.stride)
            grad_w = torch.stack([(p * grad).sum(dim=(2, 3)) for p in components], dim=-1)
        return grad_x, grad_w, None, None


def mix_components(x: Tensor, weights: Tensor, stride: tuple[int, int]) -> Tensor:
    """``sum_k weights[:, :, k] * P[k]`` over the polyphase components ``P`` of ``x``.

    A short loop over the ``sh * sw`` strided views of ``x`` (no copies); with autograd in
    eager mode its backward is hand-written, because autograd's backward of strided views
    writes the full-size input gradient once per component. A one-shot broadcast product over
    a ``(N, C, H', sh, W', sw)`` view measured 2-4x slower on CPU, forward and backward.

    Args:
        x: ``(N, C, H, W)`` with H, W multiples of the stride.
        weights: ``(N, C, sh * sw)``, ``k = i * sw + j`` weights ``x[..., i::sh, j::sw]``
            (the order of :func:`shiftpool.downsample.geometry.polyphase_components`).

    Returns:
        ``(N, C, H / sh, W / sw)``.

    Example:
        >>> x = torch.arange(16.).view(1, 1, 4, 4)
        >>> mix_components(x, torch.tensor([[[0., 1., 0., 0.]]]), (2, 2))[0, 0]
        tensor([[ 1.,  3.],
                [ 9., 11.]])
    """
    # nested: TorchScript skips the body of this `if` only
    if not torch.jit.is_scripting():  # noqa: SIM102
        if not is_traced():
            return _mix_components(x, weights, stride, None)
    return _mix(x, weights, stride)


def _mix_components(x: Tensor, weights: Tensor, stride: tuple[int, int],
                    slot: GradientSlot | None) -> Tensor:
    """Eager :func:`mix_components`; with an armed ``slot`` (whose consumer also reads
    ``x``), the backward leaves ``x``'s gradient there instead of returning it."""
    if memory_format(x) == torch.channels_last:
        # channels innermost in the weights too, as in x: the products vectorise over channels
        weights = weights.transpose(1, 2).contiguous().transpose(1, 2)
    if torch.is_grad_enabled() and (x.requires_grad or weights.requires_grad):
        return _MixComponents.apply(x, weights, stride, slot)
    return _mix(x, weights, stride)


def region_means(x: Tensor, stride: tuple[int, int]) -> Tensor:
    """Means of ``x`` over a ``sh x sw`` grid of equal regions (adaptive average pooling).

    Args:
        x: ``(N, C, H, W)`` with H, W multiples of the stride.

    Returns:
        ``(N, C, sh, sw)``.

    Example:
        >>> region_means(torch.arange(16.).view(1, 1, 4, 4), (2, 2))[0, 0]
        tensor([[ 2.5000,  4.5000],
                [10.5000, 12.5000]])
    """
    n, c, h, w = x.shape
    sh, sw = stride
    return x.reshape(n, c, sh, h // sh, sw, w // sw).mean(dim=(3, 5))


class _ReluRegionMeans(torch.autograd.Function):
    """``psi = relu(x)`` (in place) and ``region_means(psi)`` with one fused backward pass.

    Autograd's own backward (average pooling, then the ReLU mask) writes the full-size gradient
    twice and is slow for channels_last inputs; here it is written once, in x's memory format.
    """

    @staticmethod
    def forward(ctx, x: Tensor, stride: tuple[int, int]) -> tuple[Tensor, Tensor]:
        psi = torch.relu_(x)
        ctx.mark_dirty(x)
        ctx.save_for_backward(psi)
        ctx.stride = stride
        ctx.set_materialize_grads(False)
        h, w = psi.shape[-2:]
        return psi, F.avg_pool2d(psi, (h // stride[0], w // stride[1]))

    @staticmethod
    def backward(
        ctx, grad_psi: Tensor | None, grad_means: Tensor | None
    ) -> tuple[Tensor | None, None]:
        (psi,) = ctx.saved_tensors
        n, c, h, w = psi.shape
        sh, sw = ctx.stride
        blocks = (n, c, sh, h // sh, sw, w // sw)
        if grad_psi is None and grad_means is None:
            return None, None
        grad = 0.0 if grad_psi is None else grad_psi.reshape(blocks)
        if grad_means is not None:
            # laid out like psi, so that the broadcast product vectorises
            spread = grad_means / ((h // sh) * (w // sw))
            spread = spread.contiguous(memory_format=memory_format(psi))
            grad = grad + spread.view(n, c, sh, 1, sw, 1)
        grad_x = torch.empty_like(psi)
        torch.mul(grad, psi.view(blocks) > 0, out=grad_x.view(blocks))
        return grad_x, None


def relu_region_means(x: Tensor, stride: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """``psi = relu(x)`` and its :func:`region_means`; ``x`` may be overwritten by ``psi``.

    Args:
        x: ``(N, C, H, W)`` with H, W multiples of the stride; a temporary (it may be reused).

    Returns:
        ``psi (N, C, H, W)`` and ``means (N, C, sh, sw)``.
    """
    if torch.jit.is_scripting():
        psi = F.relu(x)
        return psi, region_means(psi, stride)
    if is_traced():
        psi = F.relu(x)
        return psi, region_means(psi, stride)
    if torch.is_grad_enabled() and x.requires_grad:
        return _ReluRegionMeans.apply(x, stride)
    psi = torch.relu_(x)
    return psi, F.avg_pool2d(psi, (psi.shape[-2] // stride[0], psi.shape[-1] // stride[1]))


def _channels_inner(t: Tensor) -> Tensor:
    """``t (N, C, a, b)`` with the same values, laid out with channels innermost (as
    channels_last activations), so that products with them vectorise over channels."""
    return t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)


def _conv_relu(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``relu(conv2d(x, weight, padding=1, groups=C))`` in the dtype autocast would give it,
    with the convolution's inputs in that dtype: ``(x', weight', psi)``.

    On CPU with oneDNN, one fused convolution + ReLU (bit-equal to the two, measured 0.5x the
    time of a convolution then an in-place ReLU in bf16 at (128, 32, 32, 32)); elsewhere the
    two operations.
    """
    dtype = x.dtype
    if torch.is_autocast_enabled(x.device.type) and x.dtype != torch.float64:
        dtype = torch.get_autocast_dtype(x.device.type)
    conv_x, conv_w = x.to(dtype), weight.to(dtype)
    if (x.device.type == "cpu" and dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available() and _FUSED_CONV is not None):
        psi = _FUSED_CONV.default(conv_x, conv_w, None, [1, 1], [1, 1], [1, 1], x.shape[1],
                                  "relu", [None], "")
        return conv_x, conv_w, psi
    with torch.autocast(x.device.type, enabled=False):
        psi = torch.relu_(F.conv2d(conv_x, conv_w, padding=1, groups=x.shape[1]))
    return conv_x, conv_w, psi


_FUSED_CONV = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)


class _TipsTraining(torch.autograd.Function):
    """The eager forward of :class:`TIPS` with autograd, as one function with one backward.

    Inputs ``x`` (padded, channels_last), the filter and the scale; outputs the mixed map,
    ``psi`` and ``tau`` (both differentiable: the regularisers read them). The backward takes
    the three gradients at once: the mixing weights' gradient and ``L_FM``'s go through the
    softmax and the scale by hand (tiny tensors); the region means' gradient and ``L_undo``'s
    meet ``psi``'s ReLU mask in one pass per band of regions (the means' gradient repeated
    along the band's width, channels innermost, so that the broadcast is over rows only: 0.6x
    the time of one pass per region, and a broadcast over the (N, C, sh, 1, sw, 1) view
    measured 10x slower); the
    convolution's filter gradient is torch's backward, its input gradient a convolution with
    the flipped filter (stride 1: 0.5x the time of torch's backward in bf16; torch computing
    both at once measured 1.4x two separate calls); the mixing's input gradient is added in
    place into the convolution's (no second full-size gradient for autograd to add).
    Numerically the same computation as the plain operations up to rounding (tests: float64,
    1e-10).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, scale: Tensor, stride: tuple[int, int],
                reference: bool, undo: _UndoRecord) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        ctx.set_materialize_grads(False)
        conv_x, conv_w, psi = _conv_relu(x, weight)
        h, w = psi.shape[-2:]
        means = F.avg_pool2d(psi, (h // stride[0], w // stride[1]))
        logits = means * scale.view(-1, 1, 1)
        # softmax in at least float32: half-precision weights would not sum to one
        tau = region_softmax(logits, torch.promote_types(x.dtype, torch.float32))
        paired = reference_order(tau, stride).contiguous() if reference else tau
        # channels innermost, as in x: the products vectorise over channels
        mix_weights = paired.to(x.dtype).transpose(1, 2).contiguous().transpose(1, 2)
        out = _mix(x, mix_weights, stride, inplace=True)
        ctx.save_for_backward(x, conv_x, conv_w, psi, means, scale, tau, mix_weights)
        ctx.stride, ctx.reference, ctx.undo = stride, reference, undo
        ctx.dtypes = (weight.dtype, logits.dtype)
        token = torch.zeros(1, dtype=torch.promote_types(psi.dtype, torch.float32),
                            device=x.device)  # carries L_undo's gradient: see _UndoLoss
        return out, psi, paired, token

    @staticmethod
    def backward(ctx, grad_out: Tensor | None, grad_psi: Tensor | None,
                 grad_tau: Tensor | None, grad_token: Tensor | None) -> tuple[Tensor | None, ...]:
        x, conv_x, conv_w, psi, means, scale, tau, mix_weights = ctx.saved_tensors
        stride, (weight_dtype, logits_dtype) = ctx.stride, ctx.dtypes
        n, c, h, w = x.shape
        sh, sw = stride
        rh, rw = h // sh, w // sw
        with torch.autocast(x.device.type, enabled=False):
            if grad_out is not None:  # the mixing weights' gradient, in the order of tau
                mixed = torch.stack([(part * grad_out).sum(dim=(2, 3))
                                     for part in component_views(x, stride)], dim=1)
                mixed = mixed.transpose(1, 2)  # components innermost in shape, as tau
                mixed = mixed.to(tau.dtype)
                grad_tau = mixed if grad_tau is None else grad_tau + mixed
            spread = grad_scale = None
            if grad_tau is not None:
                if ctx.reference:  # component order back to region order
                    grad_tau = grad_tau.reshape(n, c, sh, sw).transpose(2, 3).reshape(n, c, -1)
                grad_logits = tau * (grad_tau - (grad_tau * tau).sum(dim=-1, keepdim=True))
                grad_logits = grad_logits.to(logits_dtype).view(n, c, sh, sw)
                if ctx.needs_input_grad[2]:
                    grad_scale = (grad_logits * means).sum(dim=(0, 2, 3)).to(scale.dtype)
                grad_means = (grad_logits * scale.view(-1, 1, 1)).to(means.dtype)
                # each region's mean gradient repeated along its row of the map, channels
                # innermost: (N, C, sh, W), a broadcast over rows only (long inner loops)
                spread = _channels_inner((grad_means / (rh * rw)).repeat_interleave(rw, dim=3))
            # L_undo's terms, handed over by its backward (see _UndoLoss)
            undo = [(diff, grad * (2.0 / diff.numel())) for diff, grad in ctx.undo.take()]
            grad_features = None
            if spread is not None or grad_psi is not None or undo:
                grad_features = _feature_gradient(psi, stride, spread, grad_psi, undo)
            grad_x = grad_weight = None
            if grad_features is not None:
                conv = (grad_features, conv_x, conv_w, None, (1, 1), (1, 1), (1, 1), False,
                        (0, 0), c)
                if ctx.needs_input_grad[1]:
                    grad_weight = torch.ops.aten.convolution_backward(
                        *conv, (False, True, False))[1].to(weight_dtype)
                if ctx.needs_input_grad[0]:  # stride 1: a convolution with the flipped
                    # filter (0.5x the time of torch's convolution backward in bf16, measured)
                    grad_x = F.conv2d(grad_features, conv_w.flip(-1, -2), None, 1, 1, 1,
                                      c).to(x.dtype)
            if ctx.needs_input_grad[0] and grad_out is not None:
                if grad_x is None:
                    grad_x = torch.zeros_like(x)
                for k, part in enumerate(component_views(grad_x, stride)):
                    part.addcmul_(grad_out, mix_weights[:, :, k, None, None])
        return grad_x, grad_weight, grad_scale, None, None, None


def _shifted_difference(psi: Tensor, x: Tensor, dy: int, dx: int) -> Tensor:
    """``psi - roll(x, (dy, dx), dims=(2, 3))`` written piece by piece from shifted slices (no
    rolled copy), in the promoted dtype and ``psi``'s memory format."""
    h, w = psi.shape[-2:]
    diff = torch.empty_like(psi, dtype=torch.promote_types(psi.dtype, x.dtype))
    for rows_out, rows_in in _roll_pieces(dy, h):
        for cols_out, cols_in in _roll_pieces(dx, w):
            torch.sub(psi[..., rows_out, cols_out], x[..., rows_in, cols_in],
                      out=diff[..., rows_out, cols_out])
    return diff


def _mean_square(diff: Tensor) -> Tensor:
    """``mean(diff^2)`` as one norm (float32 accumulation for half precision), rounded to
    ``diff``'s dtype as :func:`torch.nn.functional.mse_loss` rounds its result."""
    return torch.linalg.vector_norm(diff).square() / diff.numel()


class _UndoRecord:
    """The ``L_undo`` gradients waiting for the backward of a TIPS layer's training forward.

    Shared by that forward's :class:`_TipsTraining` node and the :class:`_UndoLoss` nodes of
    the losses computed from it: each of those hands its difference ``psi - roll(x)`` and
    its loss's gradient over in its backward (which autograd runs before the TIPS node's,
    whose token output it consumes), and the TIPS node's backward takes them.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[Tensor, Tensor]] = []

    def take(self) -> list[tuple[Tensor, Tensor]]:
        """The waiting ``(difference, gradient)`` pairs, removed from the record."""
        taken, self.pending = self.pending, []
        return taken


class _UndoLoss(torch.autograd.Function):
    """``L_undo = mean(diff^2)`` of one shift, whose gradient reaches the TIPS node that made
    ``psi`` through that node's token output: the backward hands ``(diff, grad)`` to the
    node's :class:`_UndoRecord` and returns a zero gradient for the token. The node's
    backward then forms ``psi``'s gradient from the region means' and ``L_undo``'s terms in
    one product per band (:func:`_feature_gradient`) instead of writing ``2 / size * grad *
    diff`` as a full-size tensor for autograd to add (measured: one full-size pass less per
    layer). ``psi`` itself (kept for the regularisers) carries no ``L_undo`` gradient: ask for
    the layer's parameters' or its input's gradients instead."""

    @staticmethod
    def forward(ctx, token: Tensor, diff: Tensor, record: _UndoRecord) -> Tensor:
        ctx.save_for_backward(diff)
        ctx.record, ctx.token = record, (token.shape, token.dtype, token.device)
        return _mean_square(diff)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (diff,) = ctx.saved_tensors
        ctx.record.pending.append((diff, grad))
        shape, dtype, device = ctx.token
        return torch.zeros(shape, dtype=dtype, device=device), None, None


def _feature_gradient(psi: Tensor, stride: tuple[int, int], spread: Tensor | None,
                      grad_psi: Tensor | None, undo: list[tuple[Tensor, Tensor]]) -> Tensor:
    """The convolution output's gradient: ``psi``'s ReLU mask times the sum of ``psi``'s
    gradients, from the region means (``spread``, ``(N, C, sh, W)`` channels innermost), from
    a caller (``grad_psi``) and from each ``L_undo`` term ``(diff, coef)`` (``coef * diff``,
    ``coef`` a 0-dim tensor: no device synchronisation).

    One pass per band of regions (the means' gradient broadcast over rows only; a broadcast
    over the ``(N, C, sh, 1, sw, 1)`` view measured 10x slower) forms the sum, and one more
    applies the mask (into another tensor: in place measured 1.8x the time).
    """
    rh = psi.shape[2] // stride[0]
    grad_features = torch.empty_like(psi)
    for i in range(stride[0]):
        band = slice(i * rh, (i + 1) * rh)
        means = None if spread is None else spread[..., i : i + 1, :]
        caller = None if grad_psi is None else grad_psi[..., band, :]
        if undo:
            (first, coef), rest = undo[0], undo[1:]
            if means is None:
                grad = first[..., band, :] * coef
            else:
                grad = torch.addcmul(means, first[..., band, :], coef)
            for diff, coef in rest:
                grad.addcmul_(diff[..., band, :], coef)
            if caller is not None:
                grad.add_(caller)
        elif means is not None and caller is not None:
            grad = caller + means
        else:
            grad = caller if means is None else means.expand_as(psi[..., band, :])
        torch.ops.aten.threshold_backward.grad_input(grad, psi[..., band, :], 0,
                                                     grad_input=grad_features[..., band, :])
    return grad_features


def _roll_pieces(shift: int, size: int) -> list[tuple[slice, slice]]:
    """``(output, input)`` slices of one axis of ``roll(t, shift)``: ``out[o] = t[o - shift]``."""
    shift %= size
    if shift == 0:
        return [(slice(0, size), slice(0, size))]
    return [(slice(shift, size), slice(0, size - shift)),
            (slice(0, shift), slice(size - shift, size))]


class _Recorded(NamedTuple):
    """What a TIPS layer keeps of its latest training forward: the padded input, ``psi`` and
    ``tau``, and, from the eager autograd path, the token output and the record through which
    ``L_undo``'s gradient reaches that forward's backward (``None`` elsewhere)."""

    x: Tensor
    psi: Tensor
    tau: Tensor
    token: Tensor | None
    undo: _UndoRecord | None


@register_downsample
class TIPS(Downsample):
    """Translation invariant polyphase sampling: learned mixing of the polyphase components.

    Args:
        channels: input channels (required).
        stride: int or ``(sh, sw)``.
        padding: how the input is padded to multiples of the stride: ``circular`` (default),
            ``reflect`` (the reference's), ``replicate`` or ``zero``.
        pad_at: ``"end"`` (default: bottom and right) or ``"start"`` (top and left, as the
            reference code pads odd sizes).
        pairing: ``"natural"`` (default: region ``(i, j)`` weights component ``(i, j)``) or
            ``"reference"`` (region ``(i, j)`` weights component ``(j, i)``, as the official
            code); see the module docstring.
        undo_max_shift: largest shift ``m >= 0`` of the ``L_undo`` target (default 1: the
            3x3 filter can express a shift of one pixel, not more).
        generator: optional ``torch.Generator`` for the ``L_undo`` shift.

    Shapes: ``(N, C, H, W) -> (N, C, ceil(H/sh), ceil(W/sw))``.

    Initialisation: the 3x3 filter as :class:`torch.nn.Conv2d` does (Kaiming-uniform with
    ``a = sqrt(5)``, bound ``1/3``), the scale to 1, so that the first logits are the plain
    region means of ``psi`` and the mixing starts close to uniform (average pooling).

    Example:
        >>> pool = TIPS(channels=8, stride=2)
        >>> pool(torch.randn(4, 8, 31, 32)).shape
        torch.Size([4, 8, 16, 16])
        >>> sum(p.numel() for p in pool.parameters())
        80
    """

    name = "tips"

    def __init__(
        self,
        channels: int | None = None,
        stride: int | tuple[int, int] = 2,
        padding: str = "circular",
        undo_max_shift: int = 1,
        generator: torch.Generator | None = None,
        pad_at: str = "end",
        pairing: str = "natural",
    ) -> None:
        super().__init__(stride=stride, channels=channels)
        if channels is None:
            raise InputError("shiftpool.tips: channels is required (TIPS has per-channel weights)")
        self.padding = check_pad_mode(padding, self.name)
        for option, value, allowed in (("pad_at", pad_at, PAD_AT), ("pairing", pairing, PAIRINGS)):
            if value not in allowed:
                raise InputError(f"shiftpool.tips: unknown {option} {value!r}; allowed: "
                                 f"{', '.join(allowed)}")
        self.pad_at, self.pairing = pad_at, pairing
        self.undo_max_shift = check_int(undo_max_shift, "shiftpool.tips: undo_max_shift", minimum=0)
        self.generator = generator
        self.weight = nn.Parameter(torch.empty(channels, 1, 3, 3))
        self.scale = nn.Parameter(torch.empty(channels))
        self._saved: _Recorded | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as documented in the class docstring."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.ones_(self.scale)

    def _psi_and_weights(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``psi (N, C, H~, W~)`` and the mixing weights ``tau (N, C, sh*sw)`` of padded ``x``."""
        features = F.conv2d(x, self.weight, padding=1, groups=x.shape[1])
        psi, means = relu_region_means(features, self.stride)
        logits = means * self.scale.view(-1, 1, 1)
        # softmax in at least float32: half-precision weights would not sum to one
        tau = region_softmax(logits, torch.promote_types(x.dtype, torch.float32))
        if self.pairing == "reference":
            tau = reference_order(tau, self.stride)
        return psi, tau

    def forward(self, x: Tensor) -> Tensor:
        """Mix the polyphase components of ``x``: ``(N, C, H, W) -> (N, C, H', W')``."""
        self.check_input(x)
        if torch.jit.is_scripting():
            x = pad_input(x, self.stride, self.padding, self.pad_at == "start")
            return mix_components(x, self._psi_and_weights(x)[1].to(x.dtype), self.stride)
        else:
            return self._forward_python(x)

    @torch.jit.unused
    def _forward_python(self, x: Tensor) -> Tensor:
        out_format = memory_format(x)
        x = pad_input(x, self.stride, self.padding, self.pad_at == "start")
        if not is_traced():
            # eager: channels_last throughout, 20-40% faster on CPU (depthwise conv, products);
            # the input's gradient goes back in the input's layout
            x = relayout(x, torch.channels_last)
        token = undo = None
        if not is_traced() and torch.is_grad_enabled() and (
                x.requires_grad or self.weight.requires_grad or self.scale.requires_grad):
            undo = _UndoRecord()
            out, psi, tau, token = _TipsTraining.apply(x, self.weight, self.scale, self.stride,
                                                       self.pairing == "reference", undo)
        else:
            psi, tau = self._psi_and_weights(x)
            out = mix_components(x, tau.to(x.dtype), self.stride)
        if self.training:
            # references to tensors autograd keeps for the backward anyway: no extra memory
            self._saved = _Recorded(x, psi, tau, token, undo)
        return out.contiguous(memory_format=out_format)

    def mixing_weights(self, x: Tensor) -> Tensor:
        """The mixing weights ``tau`` for input ``x``: ``(N, C, sh * sw)``, rows summing to 1.

        ``k = i * sw + j`` weights component ``x[..., i::sh, j::sw]`` (of the padded input), under
        either pairing. For analysis (e.g. the maximum-sampling bias); works in both modes and
        records nothing.

        Example:
            >>> TIPS(channels=2).mixing_weights(torch.randn(1, 2, 4, 4)).shape
            torch.Size([1, 2, 4])
        """
        self.check_input(x)
        x = pad_input(x, self.stride, self.padding, self.pad_at == "start")
        return self._psi_and_weights(x)[1]

    def load_reference_state_dict(self, state: Mapping[str, Tensor], prefix: str = "") -> None:
        """Copy the weights of an official TIPS layer (sourajitcs/tips) into this one.

        Its ``conv1.weight`` ``(C, 1, 3, 3)`` becomes ``weight`` and ``conv2.weight``
        ``(C, 1, 1, 1)`` becomes ``scale``. Build the layer with :data:`REFERENCE_OPTIONS` for
        the reference's outputs.

        Args:
            state: the official layer's ``state_dict()`` (or a model's, with ``prefix``).
            prefix: the layer's key prefix in ``state``, e.g. ``"layer2.0.pool."``.

        Example:
            >>> layer = TIPS(channels=2, **REFERENCE_OPTIONS)
            >>> layer.load_reference_state_dict({"conv1.weight": torch.ones(2, 1, 3, 3),
            ...                                  "conv2.weight": torch.full((2, 1, 1, 1), 2.)})
            >>> layer.scale
            Parameter containing:
            tensor([2., 2.], requires_grad=True)
        """
        shapes = {"conv1.weight": self.weight.shape, "conv2.weight": (self.scale.numel(), 1, 1, 1)}
        for key, shape in shapes.items():
            found = state.get(prefix + key)
            if found is None or tuple(found.shape) != tuple(shape):
                got = "missing" if found is None else f"shape {tuple(found.shape)}"
                raise InputError(f"shiftpool.tips: reference weight {prefix + key!r} must have "
                                 f"shape {tuple(shape)}; got {got}")
        with torch.no_grad():
            self.weight.copy_(state[prefix + "conv1.weight"])
            self.scale.copy_(state[prefix + "conv2.weight"].reshape(-1))

    def __getstate__(self) -> dict:
        # copies and pickles leave out the last forward's tensors (deepcopy rejects non-leaves)
        return {**super().__getstate__(), "_saved": None}

    def train(self, mode: bool = True) -> TIPS:
        if not mode:
            self._saved = None  # no stale training tensors kept in evaluation
        return super().train(mode)

    @property
    def has_regularizers(self) -> bool:
        """Whether a training-mode forward has run since the last switch to evaluation."""
        return self._saved is not None

    def _saved_tensors(self) -> _Recorded:
        if self._saved is None:
            raise RuntimeError(
                "shiftpool.tips: no regularisers recorded; call the layer in training mode first"
            )
        return self._saved

    def fm_loss(self) -> Tensor:
        """``L_FM`` of the latest training forward: mean over (N, C) of ``1 - ||tau||_2``."""
        tau = self._saved_tensors().tau
        # square, sum, root: the norm kernel over tau's strided last axis (channels innermost)
        # measured 8x the time at (32, 512, 4)
        return (1.0 - tau.square().sum(dim=-1).sqrt()).mean()

    def undo_loss(self) -> Tensor:
        """``L_undo`` of the latest training forward: ``MSE(psi, roll(x~, (dy, dx)))``.

        One shift ``(dy, dx)`` is drawn per call, uniformly from ``{-m..m}^2``; the target is
        detached. The value is rounded to ``psi``'s dtype (bf16 under autocast) before it is
        returned in at least float32, as :func:`torch.nn.functional.mse_loss` rounds it.
        """
        saved = self._saved_tensors()
        x, psi = saved.x.detach(), saved.psi
        m = self.undo_max_shift
        device = self.generator.device if self.generator is not None else torch.device("cpu")
        dy, dx = torch.randint(-m, m + 1, (2,), generator=self.generator, device=device).tolist()
        if is_traced():
            loss = F.mse_loss(psi, torch.roll(x, shifts=(dy, dx), dims=(2, 3)))
        elif saved.token is not None and torch.is_grad_enabled() and saved.token.requires_grad:
            # the gradient through this layer's own backward (see _UndoLoss)
            diff = _shifted_difference(psi.detach(), x, dy, dx)
            loss = _UndoLoss.apply(saved.token, diff, saved.undo)
        else:  # no graph to record (psi only needs a gradient from the eager path above)
            loss = _mean_square(_shifted_difference(psi.detach(), x, dy, dx))
        return loss.to(torch.promote_types(loss.dtype, torch.float32))

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, padding={self.padding!r}, pad_at={self.pad_at!r}, "
            f"pairing={self.pairing!r}, undo_max_shift={self.undo_max_shift}"
        )


def has_tips(model: nn.Module) -> bool:
    """Whether ``model`` (or any submodule) is a :class:`TIPS` layer.

    Example:
        >>> has_tips(nn.Sequential(nn.Conv2d(3, 8, 3), TIPS(channels=8)))
        True
    """
    return any(isinstance(m, TIPS) for m in model.modules())


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def tips_losses(model: nn.Module, undo: bool = True) -> dict[str, Tensor]:
    """TIPS regularisers of ``model``'s latest training forward, averaged over its TIPS layers.

    Args:
        model: any module; its TIPS layers that ran in training mode count.
        undo: compute ``L_undo`` (one random shift per layer); ``False`` skips the work and
            returns zero for it.

    Returns:
        ``{"fm": L_FM, "undo": L_undo}``, scalar tensors; zeros on the model's device when no
        TIPS layer has run in training mode.

    Example:
        >>> model = nn.Sequential(TIPS(channels=3), TIPS(channels=3)).train()
        >>> _ = model(torch.randn(2, 3, 8, 8))
        >>> sorted(tips_losses(model))
        ['fm', 'undo']
    """
    layers = [m for m in model.modules() if isinstance(m, TIPS) and m.has_regularizers]
    if not layers:
        zero = torch.zeros((), device=_model_device(model))
        return {"fm": zero, "undo": zero.clone()}
    fm = torch.stack([layer.fm_loss() for layer in layers]).mean()
    if undo:
        undo_loss = torch.stack([layer.undo_loss() for layer in layers]).mean()
    else:
        undo_loss = torch.zeros((), device=fm.device)
    return {"fm": fm, "undo": undo_loss}


class TipsObjective:
    """The TIPS training objective ``fm_weight * L_FM + (1 - alpha) * CE + alpha * L_undo``.

    ``L_undo`` counts (and is computed) only from epoch ``undo_start_epoch`` on (the paper's
    ``t_epsilon``). Call it after the model's training-mode forward pass.

    Args:
        alpha: weight in ``[0, 1]`` of ``L_undo`` against the cross-entropy (default 0.35).
        undo_start_epoch: first epoch (counted as the caller counts) with ``L_undo``.
        fm_weight: weight of ``L_FM``, finite and ``>= 0`` (default 1, the paper's objective;
            0 is the paper's ablation without ``L_FM``, which is still computed and kept in
            ``last_terms`` for the log).

    Example:
        >>> model = nn.Sequential(TIPS(channels=3), nn.Flatten(), nn.LazyLinear(10)).train()
        >>> logits = model(torch.randn(4, 3, 8, 8))
        >>> ce = F.cross_entropy(logits, torch.tensor([0, 1, 2, 3]))
        >>> loss = TipsObjective(alpha=0.35)(ce, model, epoch=0)
        >>> loss.backward()
    """

    def __init__(
        self, alpha: float = 0.35, undo_start_epoch: int = 0, fm_weight: float = 1.0
    ) -> None:
        self.alpha = check_range(alpha, "shiftpool.tips: alpha", 0, 1)
        self.undo_start_epoch = check_int(
            undo_start_epoch, "shiftpool.tips: undo_start_epoch", minimum=0
        )
        self.fm_weight = check_range(fm_weight, "shiftpool.tips: fm_weight", 0, None)
        self.last_terms: dict[str, Tensor] = {}

    def __call__(self, ce_loss: Tensor, model: nn.Module, epoch: int) -> Tensor:
        """The total loss; ``last_terms`` keeps its parts (``ce``, ``fm``, ``undo``), detached."""
        losses = tips_losses(model, undo=epoch >= self.undo_start_epoch)
        fm = losses["fm"] if self.fm_weight == 1.0 else self.fm_weight * losses["fm"]
        total = fm + (1.0 - self.alpha) * ce_loss + self.alpha * losses["undo"]
        # detached tensors, not floats: no device synchronisation per step
        self.last_terms = {"ce": ce_loss.detach(), **{k: v.detach() for k, v in losses.items()}}
        return total

    def __repr__(self) -> str:
        return (
            f"TipsObjective(alpha={self.alpha}, undo_start_epoch={self.undo_start_epoch}, "
            f"fm_weight={self.fm_weight})"
        )
