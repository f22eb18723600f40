"""Upsamplers paired with downsamplers, for encoder–decoder (dense prediction) networks.

Size contract: an upsampler with stride ``(sh, sw)`` maps ``(N, C, h, w)`` to
``(N, C, sh * h, sw * w)``, cropped to ``size`` when one is given (the size of the map that the
paired downsampler received: ``ceil(H / sh) = h`` must hold). Downsampling by ``s`` and then
upsampling by ``s`` therefore returns the original size, odd sizes included, and upsampling by
``s`` and then downsampling by ``s`` returns the low-resolution size.

Polyphase upsampling (LPS paper's "LPU"; SPEC §7): :class:`PhaseUpsample` places the
low-resolution map back at the phase its paired downsampler selected (zeros at the other
phases) and optionally interpolates with a binomial filter of gain ``sh * sw``
(``filter_size=3`` at stride 2 is linear interpolation). Pairs:

* ``aps`` / ``lps`` (eval): the component index chosen per sample, read through the selector's
  follower mechanism (the same one residual shortcuts use); placement is one-hot.
* ``lps`` (training, soft Gumbel-softmax mixing): the map is placed at every phase, weighted by
  the sampled mixing weights, as the official ``lps_upsampleV2`` does in ``mode="train"``.
* ``tips``: the transpose of its mixing: phase ``k`` of channel ``c`` gets ``tau[n, c, k] * y``,
  with ``tau`` the mixing weights of the layer's latest input (recorded by a forward hook that
  evaluates :meth:`~shiftpool.downsample.tips.TIPS.mixing_weights`, i.e. the weight branch runs
  twice; ``y`` must have the downsampler's channel count).

With circular padding and sizes divisible by the total stride an aps/lps encoder–decoder is
exactly equivariant to circular shifts by any amount: a shift permutes the polyphase
components, the selector follows, and placing the selected component back at its phase gives
the shifted mask of the input.

Non-polyphase operators use their natural upsampling: :class:`InterpolateUpsample` (bilinear
by default, or nearest) or :class:`TransposedUpsample` (a learned ``s x s`` transposed
convolution). :func:`create_upsample` picks the pair of a downsampler.

Example:
    >>> from shiftpool.downsample import APS
    >>> down = APS(stride=2)
    >>> up = create_upsample(down)
    >>> x = torch.randn(2, 3, 8, 8)
    >>> restored = up(down(x))
    >>> restored.shape, (restored == x).float().mean().item()  # one phase in four kept
    (torch.Size([2, 3, 8, 8]), 0.25)
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shiftpool.core.errors import InputError
from shiftpool.downsample.base import check_input
from shiftpool.downsample.blur import binomial_filter
from shiftpool.downsample.geometry import check_pad_mode, pad2d, pair
from shiftpool.downsample.polyphase import PhaseSelector
from shiftpool.downsample.tips import TIPS

__all__ = [
    "UPSAMPLE_METHODS",
    "InterpolateUpsample",
    "PhaseUpsample",
    "TransposedUpsample",
    "Upsample",
    "create_upsample",
    "is_polyphase",
]

#: Methods :func:`create_upsample` accepts.
UPSAMPLE_METHODS: tuple[str, ...] = ("auto", "phase", "bilinear", "nearest", "transposed")

Size2 = int | tuple[int, int]


def is_polyphase(down: nn.Module | None) -> bool:
    """Whether ``down`` selects or mixes polyphase components (aps, lps, tips).

    Example:
        >>> from shiftpool.downsample import APS, MaxDownsample
        >>> is_polyphase(APS()), is_polyphase(MaxDownsample())
        (True, False)
    """
    return isinstance(down, (PhaseSelector, TIPS))


class Upsample(nn.Module):
    """Base of shiftpool's upsamplers: ``(N, C, h, w) -> (N, C, sh * h, sw * w)``, then cropped.

    Args:
        stride: int or ``(sh, sw)``.
    """

    name: ClassVar[str] = "upsample"

    def __init__(self, stride: Size2 = 2) -> None:
        super().__init__()
        self.stride: tuple[int, int] = pair(stride, "stride", self.name)

    def default_size(self, y: Tensor) -> tuple[int, int] | None:
        """The size to crop to when none is given (``None``: the full ``(sh h, sw w)``)."""
        return None

    def check_size(self, y: Tensor, size: tuple[int, int] | None) -> tuple[int, int]:
        """The output size for ``y`` and the requested ``size`` (checked: ``ceil(H/sh) = h``)."""
        h, w = y.shape[-2], y.shape[-1]
        sh, sw = self.stride
        if size is None:
            size = self.default_size(y)
        if size is None:
            return h * sh, w * sw
        if torch.compiler.is_compiling():  # int() would specialise a symbolic size
            return size[0], size[1]
        out_h, out_w = int(size[0]), int(size[1])
        if -(-out_h // sh) != h or -(-out_w // sw) != w:
            raise InputError(
                f"shiftpool.{self.name}: size {(out_h, out_w)} does not downsample to the input's "
                f"{(h, w)} at stride {self.stride} (need ceil(H / sh) = h, ceil(W / sw) = w)"
            )
        return out_h, out_w

    def check_input(self, y: Tensor) -> None:
        """Raise a clear error unless ``y`` is a floating ``(N, C, h, w)`` tensor."""
        if not (torch.jit.is_scripting() or torch.compiler.is_compiling()):
            check_input(y, self.name)

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


def _crop(x: Tensor, size: tuple[int, int], at_start: bool = False) -> Tensor:
    """Keep ``size`` of ``x``'s last two dimensions: the first rows/columns, or the last ones."""
    h, w = x.shape[-2], x.shape[-1]
    if not torch.compiler.is_compiling() and (h, w) == tuple(size):
        return x  # eager: no view; a traced graph slices always (no guard on the sizes)
    if at_start:
        return x[..., h - size[0]:, w - size[1]:]
    return x[..., : size[0], : size[1]]


class PhaseUpsample(Upsample):
    """Polyphase upsampling paired with an ``aps``, ``lps`` or ``tips`` downsampler.

    Places ``y`` at the phase(s) the paired downsampler used in its latest forward pass, zeros
    elsewhere; then (``filter_size > 1``) interpolates with a binomial filter of gain
    ``sh * sw`` in ``padding`` mode; then crops to ``size`` (default: the size of the
    downsampler's latest input).

    The paired downsampler is not a submodule (the model owns it elsewhere; ``state_dict`` and
    ``deepcopy`` see it once). Call it before this module, on a batch of the same size.

    Args:
        down: the paired :class:`~shiftpool.downsample.APS`, ``LPS`` or ``TIPS`` module.
        filter_size: odd binomial filter size after placement; 1 (default) none, as the
            official LPS unpooling without anti-aliasing; 3 at stride 2 is linear interpolation.
        padding: padding mode of that filter (``circular`` by default, needed for exact
            equivariance to circular shifts).

    Shape:
        ``(N, C, h, w) -> (N, C, H, W)`` with ``H = size[0] <= sh * h`` (likewise ``W``).

    Example:
        >>> from shiftpool.downsample import LPS
        >>> down = LPS(channels=4).eval()
        >>> up = PhaseUpsample(down)
        >>> x = torch.randn(2, 4, 7, 9)
        >>> up(down(x)).shape
        torch.Size([2, 4, 7, 9])
    """

    name = "phase_upsample"

    def __init__(self, down: nn.Module, filter_size: int = 1, padding: str = "circular") -> None:
        if not is_polyphase(down):
            raise InputError(
                f"shiftpool.{self.name}: pairs with an aps, lps or tips downsampler, got "
                f"{type(down).__name__}; use create_upsample(down) for the natural pair"
            )
        super().__init__(stride=down.stride)
        if not isinstance(filter_size, int) or filter_size < 1 or filter_size % 2 == 0:
            raise InputError(
                f"shiftpool.{self.name}: filter_size must be an odd int >= 1, got {filter_size!r}"
            )
        self.filter_size = filter_size
        self.padding = check_pad_mode(padding, self.name)
        sh, sw = self.stride
        kernel = binomial_filter(filter_size).view(1, 1, filter_size, filter_size) * (sh * sw)
        self.register_buffer("kernel", kernel, persistent=False)
        object.__setattr__(self, "_down", down)  # not a submodule, on purpose
        self._weights: Tensor | None = None
        self._size: tuple[int, int] | None = None
        if isinstance(down, PhaseSelector):
            down.follower()  # from now on the selector remembers its choice
            self._at_start = False
        else:
            down.register_forward_hook(self._record_tips)
            self._at_start = down.pad_at == "start"

    @property
    def down(self) -> nn.Module:
        """The paired downsampler."""
        return self._down

    def _record_tips(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
        x = args[0]
        self._weights = module.mixing_weights(x)
        self._size = (x.shape[-2], x.shape[-1])

    def phase_weights(self) -> Tensor:
        """Weights of the latest forward pass: ``(N, 1 or C, sh * sw)``, one-hot for a choice."""
        down = self._down
        k = self.stride[0] * self.stride[1]
        if isinstance(down, PhaseSelector):
            choice = down._choice
            if choice is None:
                raise RuntimeError(self._not_run())
            if choice.is_floating_point():
                return choice[:, None, :]
            return F.one_hot(choice, k)[:, None, :]
        if self._weights is None:
            raise RuntimeError(self._not_run())
        return self._weights

    def _not_run(self) -> str:
        return (f"shiftpool.{self.name}: the paired {self._down.name} downsampler has not run a "
                "forward pass yet; call it first")

    def default_size(self, y: Tensor) -> tuple[int, int] | None:
        down = self._down
        if isinstance(down, PhaseSelector):
            shape = down._choice_shape
            return None if shape is None else (shape[1], shape[2])
        return self._size

    def forward(self, y: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Place ``y (N, C, h, w)`` at the recorded phases; ``size``: the output ``(H, W)``."""
        self.check_input(y)
        weights = self.phase_weights()
        n, c, h, w = y.shape
        sh, sw = self.stride
        checking = not (torch.jit.is_scripting() or torch.compiler.is_compiling())
        if checking and (weights.shape[0] != n or weights.shape[1] not in (1, c)):
                raise InputError(
                    f"shiftpool.{self.name}: input of shape {tuple(y.shape)} does not match the "
                    f"paired {self._down.name} downsampler's latest pass (batch "
                    f"{weights.shape[0]}, channels {weights.shape[1]} or any)"
                )
        out_size = self.check_size(y, size)
        grid = weights.to(y.dtype).view(n, weights.shape[1], 1, sh, 1, sw)
        up = (y.view(n, c, h, 1, w, 1) * grid).reshape(n, c, h * sh, w * sw)
        if self.filter_size > 1:
            p = self.filter_size // 2
            kernel = self.kernel.to(y.dtype).expand(c, 1, -1, -1)
            up = F.conv2d(pad2d(up, (p, p, p, p), self.padding), kernel, groups=c)
        return _crop(up, out_size, self._at_start)

    def extra_repr(self) -> str:
        return (f"stride={self.stride}, down={self._down.name}, filter_size={self.filter_size}, "
                f"padding={self.padding!r}")


class InterpolateUpsample(Upsample):
    """Upsampling by interpolation (``F.interpolate`` with ``scale_factor = stride``), cropped.

    Args:
        stride: int or ``(sh, sw)``.
        mode: ``bilinear`` (default, ``align_corners=False``) or ``nearest``.

    Shape:
        ``(N, C, h, w) -> (N, C, H, W)``, ``(H, W) = size`` or ``(sh * h, sw * w)``.

    Example:
        >>> InterpolateUpsample(2)(torch.ones(1, 1, 3, 3), size=(5, 6)).shape
        torch.Size([1, 1, 5, 6])
    """

    name = "interpolate_upsample"

    def __init__(self, stride: Size2 = 2, mode: str = "bilinear") -> None:
        super().__init__(stride=stride)
        if mode not in ("bilinear", "nearest"):
            raise InputError(f"shiftpool.{self.name}: mode must be bilinear or nearest, "
                             f"got {mode!r}")
        self.mode = mode

    def forward(self, y: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Interpolate ``y (N, C, h, w)`` by the stride; ``size``: the output ``(H, W)``."""
        self.check_input(y)
        out_size = self.check_size(y, size)
        h, w = y.shape[-2], y.shape[-1]
        full = (h * self.stride[0], w * self.stride[1])
        if self.mode == "bilinear":
            up = F.interpolate(y, size=full, mode="bilinear", align_corners=False)
        else:
            up = F.interpolate(y, size=full, mode="nearest")
        return _crop(up, out_size)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, mode={self.mode!r}"


class TransposedUpsample(Upsample):
    """A learned ``sh x sw`` transposed convolution with stride ``(sh, sw)``, cropped.

    Initialised to nearest-neighbour upsampling (each channel copied to its ``sh x sw`` block).

    Args:
        channels: input (and output) channels.
        stride: int or ``(sh, sw)``.

    Shape:
        ``(N, C, h, w) -> (N, C, H, W)``, ``(H, W) = size`` or ``(sh * h, sw * w)``.

    Example:
        >>> up = TransposedUpsample(2, stride=2)
        >>> up(torch.ones(1, 2, 2, 2)).sum().item()
        32.0
    """

    name = "transposed_upsample"

    def __init__(self, channels: int, stride: Size2 = 2) -> None:
        super().__init__(stride=stride)
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
            raise InputError(f"shiftpool.{self.name}: channels must be an int >= 1, "
                             f"got {channels!r}")
        self.conv = nn.ConvTranspose2d(channels, channels, self.stride, stride=self.stride)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[torch.arange(channels), torch.arange(channels)] = 1.0
            self.conv.bias.zero_()

    def forward(self, y: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Upsample ``y (N, C, h, w)``; ``size``: the output ``(H, W)``."""
        self.check_input(y)
        return _crop(self.conv(y), self.check_size(y, size))


def create_upsample(
    down: nn.Module | None = None,
    method: str = "auto",
    channels: int | None = None,
    stride: Size2 | None = None,
    **options: Any,
) -> Upsample:
    """The upsampler paired with ``down``.

    Args:
        down: the paired downsampler (any module with a ``stride``), or ``None``.
        method: ``auto`` (phase for aps/lps/tips, else bilinear), ``phase``, ``bilinear``,
            ``nearest`` or ``transposed`` (needs ``channels``).
        channels: channel count (for ``transposed``).
        stride: the stride; default that of ``down`` (2 without one).
        options: :class:`PhaseUpsample` options (``filter_size``, ``padding``).

    Example:
        >>> from shiftpool.downsample import create_downsample
        >>> type(create_upsample(create_downsample("max"))).__name__
        'InterpolateUpsample'
    """
    if method not in UPSAMPLE_METHODS:
        raise InputError(f"shiftpool.upsample: unknown method {method!r}; allowed: "
                         f"{', '.join(UPSAMPLE_METHODS)}")
    if stride is None:
        stride = getattr(down, "stride", 2)
    if method == "auto":
        method = "phase" if is_polyphase(down) else "bilinear"
    if method != "phase" and options:
        raise InputError(f"shiftpool.upsample: options {sorted(options)} apply to the phase "
                         f"method only, not {method!r}")
    if method == "phase":
        if down is None:
            raise InputError("shiftpool.upsample: method 'phase' needs the paired downsampler")
        if pair(stride, "stride", "upsample") != tuple(down.stride):
            raise InputError(f"shiftpool.upsample: stride {stride!r} differs from the paired "
                             f"downsampler's {tuple(down.stride)}")
        return PhaseUpsample(down, **options)
    if method == "transposed":
        if channels is None:
            raise InputError("shiftpool.upsample: method 'transposed' needs channels")
        return TransposedUpsample(channels, stride)
    return InterpolateUpsample(stride, mode=method)
