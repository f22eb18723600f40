"""Where a downsampler goes: the building blocks shared by shiftpool's models and by ``convert``.

A model chooses one operator for all its downsampling points (:class:`DownsampleSpec`) and
places it as the papers do:

* a strided convolution becomes convolution (stride 1) → BN → ReLU → downsampler;
* a strided shortcut becomes downsampler → 1x1 convolution → BN;
* a pooling point (VGG, the small CNN) is the downsampler itself;
* the 3x3/2 max pool of the ImageNet stem becomes a stride-1 max pool → downsampler (as
  Zhang's MaxBlurPool).

``spec.name is None`` builds the plain network: strided convolutions, torch's max pool in the
ImageNet stem, and the ``max`` operator at pooling points.

Residual shortcuts: when the main path's downsampler chooses a polyphase component per sample
(APS, LPS: it has a ``follower()`` method, see ``shiftpool.downsample.polyphase.PhaseSelector``),
the shortcut reuses that choice through a follower, so both branches move by the same amount
under a circular shift (SPEC §3). Other operators get a second downsampler of the same kind on
the shortcut, with parameters of its own where the operator has them (``tips``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from shiftpool.core.checks import check_positive_int
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.downsample import Downsample, check_downsample_options, create_downsample
from shiftpool.downsample.geometry import pad2d

#: The option through which an operator takes its padding mode.
PAD_OPTION = "padding"


def positive_ints(values: Any, what: str) -> list[int]:
    """``values`` as a list of integers ``>= 1`` (channels or blocks per stage); else one clear
    error naming the value (a string such as ``'16 32 64'`` is not a list).

    Example:
        >>> positive_ints((8, 16), "channels")
        [8, 16]
        >>> positive_ints([8, -3], "channels")
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.InputError: channels[1] must be an integer >= 1, got -3
    """
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InputTypeError(
            f"{what} must be a list of integers >= 1, e.g. [16, 32, 64]; got {values!r}"
        )
    if not values:
        raise InputError(f"{what} must name at least one stage, e.g. [16, 32, 64]; got []")
    return [check_positive_int(v, f"{what}[{i}]") for i, v in enumerate(values)]


def padding_mode(circular: bool) -> str:
    """``padding_mode`` argument of :class:`torch.nn.Conv2d`: ``"circular"`` or ``"zeros"``."""
    return "circular" if circular else "zeros"


def operator_options(
    name: str, options: Mapping[str, Any] | None, circular: bool
) -> dict[str, Any]:
    """Checked options for operator ``name``; ``circular`` sets its padding unless given.

    Raises ``ValueError`` for an unknown operator (listing the valid ones) and ``TypeError``
    for an option the operator does not take (listing the ones it does).

    Example:
        >>> operator_options("aps", None, circular=True)
        {'padding': 'circular'}
    """
    options = dict(options or {})
    allowed = check_downsample_options(name, options)
    if circular and PAD_OPTION in allowed:
        options.setdefault(PAD_OPTION, "circular")
    return options


def shares_phase(downsampler: nn.Module) -> bool:
    """Whether ``downsampler`` can hand its per-sample phase choice to a follower (APS, LPS)."""
    return callable(getattr(downsampler, "follower", None))


@dataclass(frozen=True)
class DownsampleSpec:
    """The operator a model uses at every downsampling point, with its options.

    Args:
        name: a registered operator (see :func:`shiftpool.list_downsamples`), or ``None`` for
            the plain network (strided convolutions, torch max pool in the stem).
        options: options of the operator, checked on construction.
        circular: circular padding in convolutions, pools and (unless set in ``options``)
            operators with a ``padding`` option.

    Example:
        >>> spec = DownsampleSpec("blur", {"filter_size": 5})
        >>> spec.build(channels=16, stride=2).name
        'blur'
    """

    name: str | None = "max"
    options: Mapping[str, Any] = field(default_factory=dict)
    circular: bool = False

    def __post_init__(self) -> None:
        if self.name is None:
            if self.options:
                raise InputError(
                    "shiftpool.models: downsample_options were given but downsample=None "
                    "(plain strided network) takes none"
                )
            return
        object.__setattr__(
            self, "options", operator_options(self.name, self.options, self.circular)
        )

    @property
    def plain(self) -> bool:
        """True for the plain network (strided convolutions)."""
        return self.name is None

    def build(self, channels: int, stride: int, **extra: Any) -> nn.Module:
        """A downsampler for ``channels`` channels; ``extra`` adds to (or overrides) the options."""
        name = self.name or "max"
        options = operator_options(name, {**self.options, **extra}, self.circular)
        return create_downsample(name, channels=channels, stride=stride, **options)

    def conv_stride(self, stride: int) -> int:
        """Stride of a convolution at a downsampling point: ``stride`` if plain, else 1."""
        return stride if self.plain else 1

    def after_conv(self, channels: int, stride: int) -> nn.Module | None:
        """The downsampler after conv → BN → ReLU, or ``None`` (stride 1 or plain network)."""
        return None if stride == 1 or self.plain else self.build(channels, stride)

    def before_shortcut(
        self, main: nn.Module | None, channels: int, stride: int
    ) -> nn.Module | None:
        """The downsampler before a 1x1 shortcut projection, or ``None``.

        Reuses ``main``'s per-sample phase through a follower where it can (APS, LPS),
        otherwise builds a downsampler of its own.
        """
        if stride == 1 or self.plain:
            return None
        if main is not None and shares_phase(main):
            return main.follower()
        return self.build(channels, stride)


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    *,
    circular: bool = False,
    groups: int = 1,
    bias: bool = False,
) -> nn.Conv2d:
    """A convolution padded by ``kernel_size // 2``, circularly if ``circular``.

    Example:
        >>> conv2d(3, 8, 3, circular=True).padding_mode
        'circular'
    """
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        groups=groups,
        bias=bias,
        padding_mode=padding_mode(circular),
    )


def projection(
    in_channels: int, out_channels: int, stride: int, spec: DownsampleSpec
) -> nn.Sequential:
    """The shortcut projection: 1x1 convolution (strided only if plain) → BN."""
    return nn.Sequential(
        conv2d(in_channels, out_channels, 1, stride=spec.conv_stride(stride)),
        nn.BatchNorm2d(out_channels),
    )


class Pad2d(nn.Module):
    """Pad H and W by ``padding`` on every side in ``mode``; any size, even beyond the map.

    Args:
        padding: pixels added on each side.
        mode: ``circular``, ``reflect``, ``replicate`` or ``zero``.

    Shape: ``(N, C, H, W)`` → ``(N, C, H + 2p, W + 2p)``.

    Example:
        >>> import torch
        >>> Pad2d(1, "circular")(torch.zeros(1, 2, 1, 1)).shape
        torch.Size([1, 2, 3, 3])
    """

    def __init__(self, padding: int | tuple[int, int], mode: str = "circular") -> None:
        super().__init__()
        self.padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        ph, pw = self.padding
        return pad2d(x, (pw, pw, ph, ph), self.mode)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, mode={self.mode!r}"


def stride_one_pool(pool: nn.MaxPool2d | nn.AvgPool2d, circular: bool = False) -> nn.Module:
    """The stride-1 form of ``pool`` (same kernel, padding, dilation); circular padding if asked.

    Example:
        >>> stride_one_pool(nn.MaxPool2d(3, 2, 1))
        MaxPool2d(kernel_size=3, stride=1, padding=1, dilation=1, ceil_mode=False)
    """
    padding = pool.padding
    if isinstance(pool, nn.MaxPool2d):
        pooled = nn.MaxPool2d(
            pool.kernel_size, 1, 0 if circular else padding, pool.dilation, ceil_mode=pool.ceil_mode
        )
    else:
        pooled = nn.AvgPool2d(
            pool.kernel_size,
            1,
            0 if circular else padding,
            ceil_mode=pool.ceil_mode,
            count_include_pad=pool.count_include_pad,
            divisor_override=pool.divisor_override,
        )
    if not circular or padding in (0, (0, 0)):
        return pooled
    return nn.Sequential(Pad2d(padding, "circular"), pooled)


def circular_pool(pool: nn.MaxPool2d | nn.AvgPool2d) -> nn.Module:
    """``pool`` with its padding made circular (stride kept); ``pool`` itself if unpadded."""
    if pool.padding in (0, (0, 0)):
        return pool
    kind = type(pool)
    options = {"ceil_mode": pool.ceil_mode}
    if kind is nn.MaxPool2d:
        options["dilation"] = pool.dilation
    else:
        options["divisor_override"] = pool.divisor_override
    return nn.Sequential(
        Pad2d(pool.padding, "circular"), kind(pool.kernel_size, pool.stride, 0, **options)
    )


def stem_max_pool(spec: DownsampleSpec, channels: int) -> nn.Module:
    """The ImageNet stem's 3x3 max pool at stride 2.

    Plain: torch's ``MaxPool2d(3, 2, 1)``; otherwise a stride-1 3x3 max pool, then the
    operator at stride 2 (Zhang's placement).
    """
    pool = nn.MaxPool2d(3, 2, 1)
    if spec.plain:
        return circular_pool(pool) if spec.circular else pool
    return nn.Sequential(stride_one_pool(pool, spec.circular), spec.build(channels, 2))


def init_weights(module: nn.Module) -> None:
    """He initialisation of convolutions, unit BN (as torchvision); downsamplers keep their own."""
    for child in module.children():
        if isinstance(child, Downsample):
            continue
        if isinstance(child, nn.Conv2d):
            nn.init.kaiming_normal_(child.weight, mode="fan_out", nonlinearity="relu")
            if child.bias is not None:
                nn.init.zeros_(child.bias)
        elif isinstance(child, nn.BatchNorm2d):
            nn.init.ones_(child.weight)
            nn.init.zeros_(child.bias)
        init_weights(child)
