"""The base class every shiftpool downsampler derives from, with the shared input checks."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from shiftpool.core.checks import check_positive_int
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.downsample.geometry import output_size, pair


def check_input(x: Tensor, op: str, channels: int | None = None) -> None:
    """Raise a clear error unless ``x`` is a non-empty floating ``(N, C, H, W)`` tensor.

    Args:
        x: the input to check.
        op: the operator's name, used in the message.
        channels: the channel count the module was built for, or ``None`` for any.

    Example:
        >>> check_input(torch.zeros(1, 3, 4, 4), "max", channels=3)
    """
    if not isinstance(x, Tensor):
        raise InputTypeError(f"shiftpool.{op}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise InputError(
            f"shiftpool.{op}: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise InputTypeError(
            f"shiftpool.{op}: expected a floating-point input (float16, bfloat16, float32, "
            f"float64), got {x.dtype}"
        )
    if x.numel() == 0:
        raise InputError(
            f"shiftpool.{op}: every dimension of the input must be >= 1, got shape {tuple(x.shape)}"
        )
    if channels is not None and x.shape[1] != channels:
        raise InputError(
            f"shiftpool.{op}: this module was built for {channels} channels, got an input "
            f"with {x.shape[1]} (shape {tuple(x.shape)})"
        )


class Downsample(nn.Module):
    """Base class of shiftpool's downsamplers.

    Every subclass maps ``(N, C, H, W)`` to ``(N, C, ceil(H / sh), ceil(W / sw))`` for any
    ``H, W >= 1``, keeps dtype, device and memory format, and registers under ``name``.

    Args:
        stride: int or ``(sh, sw)``, each >= 1.
        channels: channel count the module is built for; ``None`` accepts any (only
            parameter-free operators allow ``None``).
    """

    name: ClassVar[str] = "downsample"

    def __init__(self, stride: int | tuple[int, int] = 2, channels: int | None = None) -> None:
        super().__init__()
        self.stride: tuple[int, int] = pair(stride, "stride", self.name)
        if channels is not None:
            check_positive_int(channels, f"shiftpool.{self.name}: channels")
        self.channels: int | None = channels

    def check_input(self, x: Tensor) -> None:
        """Raise a clear error if ``x`` breaks the input contract of this module."""
        if torch.jit.is_scripting() or torch.compiler.is_compiling():
            return
        check_input(x, self.name, self.channels)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial output size for an input of ``height`` x ``width``."""
        return output_size((height, width), self.stride)

    def extra_repr(self) -> str:
        channels = "" if self.channels is None else f"channels={self.channels}, "
        return f"{channels}stride={self.stride}"
