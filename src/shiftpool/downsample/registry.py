"""The registry of downsampling operators: one name, one class."""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from shiftpool.downsample.base import Downsample

_REGISTRY: dict[str, type[Downsample]] = {}

D = TypeVar("D", bound=type[Downsample])


def register_downsample(cls: D) -> D:
    """Class decorator: make ``cls`` available as ``create_downsample(cls.name, ...)``."""
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"shiftpool: a downsampler named {name!r} is already registered")
    _REGISTRY[name] = cls
    return cls


def list_downsamples() -> list[str]:
    """Names of every registered downsampler, sorted.

    Example:
        >>> "blur" in list_downsamples()
        True
    """
    return sorted(_REGISTRY)


def downsample_class(name: str) -> type[Downsample]:
    """The class registered under ``name``; a ``ValueError`` lists the valid names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"shiftpool: unknown downsampler {name!r}; available: {', '.join(list_downsamples())}"
        ) from None


def downsample_options(name: str) -> list[str]:
    """The keyword options the operator ``name`` accepts besides ``channels`` and ``stride``."""
    params = inspect.signature(downsample_class(name).__init__).parameters
    return [p for p in params if p not in ("self", "channels", "stride")]


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
        >>> pool = create_downsample("blur", channels=16, stride=2, filter_size=3)
        >>> pool(torch.randn(2, 16, 9, 9)).shape
        torch.Size([2, 16, 5, 5])
    """
    cls = downsample_class(name)
    allowed = downsample_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"shiftpool.{name}: unknown option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    return cls(channels=channels, stride=stride, **options)

