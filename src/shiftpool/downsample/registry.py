"""The registry of downsampling operators: one name, one class."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, TypeVar

from shiftpool._registry import Registry
from shiftpool.core.errors import InputTypeError
from shiftpool.downsample.base import Downsample

_OPERATORS: Registry[type[Downsample]] = Registry("downsampler")

D = TypeVar("D", bound=type[Downsample])


def register_downsample(cls: D) -> D:
    """Class decorator: make ``cls`` available as ``create_downsample(cls.name, ...)``."""
    return _OPERATORS.add(cls.name, cls)


def list_downsamples() -> list[str]:
    """Names of every registered downsampler, sorted.

    Example:
        >>> "blur" in list_downsamples()
        True
    """
    return _OPERATORS.names()


def downsample_class(name: str) -> type[Downsample]:
    """The class registered under ``name``; a ``ValueError`` lists the valid names otherwise."""
    return _OPERATORS.get(name)


def downsample_options(name: str) -> list[str]:
    """The keyword options the operator ``name`` accepts besides ``channels`` and ``stride``."""
    params = inspect.signature(downsample_class(name).__init__).parameters
    return [p for p in params if p not in ("self", "channels", "stride")]


def check_downsample_options(name: str, options: Iterable[str]) -> list[str]:
    """The options operator ``name`` takes, after checking that it takes every one of ``options``.

    Raises ``ValueError`` for an unknown operator (listing the valid ones) and ``TypeError`` for
    an option it does not take (listing the ones it does).

    Example:
        >>> check_downsample_options("blur", ["filter_size"])
        ['filter_size', 'padding']
    """
    allowed = downsample_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputTypeError(
            f"shiftpool.{name}: unknown option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    return allowed


def create_downsample(
    name: str, channels: int | None = None, stride: int | tuple[int, int] = 2, **options: Any
) -> Downsample:
    """Build the downsampler registered as ``name``.

    Args:
        name: one of :func:`list_downsamples`.
        channels: input channels (required by operators with parameters: ``lps``, ``tips``).
        stride: int or ``(sh, sw)``.
        **options: operator-specific options; an option the operator does not take is an error.

    Example:
        >>> import torch
        >>> pool = create_downsample("blur", channels=16, stride=2, filter_size=3)
        >>> pool(torch.randn(2, 16, 9, 9)).shape
        torch.Size([2, 16, 5, 5])
    """
    check_downsample_options(name, options)
    return downsample_class(name)(channels=channels, stride=stride, **options)

