"""The registry of models: one name, one builder; ``create_model`` builds any of them."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from shiftpool._registry import Registry
from shiftpool.core.checks import check_positive_int
from shiftpool.core.errors import InputTypeError
from shiftpool.models.layers import DownsampleSpec

#: A builder takes ``(spec, num_classes, in_channels)`` and keyword-only model options.
Builder = Callable[..., nn.Module]

_MODELS: Registry[Builder] = Registry("model")


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make the builder available as ``create_model(name, ...)``."""
    return functools.partial(_MODELS.add, name)


def list_models() -> list[str]:
    """Names of every registered model, sorted.

    Example:
        >>> "resnet20" in list_models()
        True
    """
    return _MODELS.names()


def model_builder(name: str) -> Builder:
    """The builder registered as ``name``; a ``ValueError`` lists the valid names otherwise."""
    return _MODELS.get(name)


def model_option_names(name: str) -> list[str]:
    """The keyword options model ``name`` takes besides the arguments every model takes."""
    return keyword_options(model_builder(name))


def keyword_options(builder: Builder) -> list[str]:
    """The keyword-only parameters of ``builder``: the model options it takes."""
    params = inspect.signature(builder).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def build_checked(builder: Builder, name: str, *, downsample: str | None,
                  downsample_options: Mapping[str, Any] | None, num_classes: int,
                  in_channels: int, circular: bool, model_options: Mapping[str, Any]) -> nn.Module:
    """``builder(spec, num_classes, in_channels, **model_options)`` once the options are known
    to the builder and the counts are positive integers (one clear error otherwise); what
    :func:`create_model` and the segmentation models' factory share."""
    allowed = keyword_options(builder)
    unknown = sorted(set(model_options) - set(allowed))
    if unknown:
        raise InputTypeError(
            f"shiftpool.{name}: unknown model option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    check_positive_int(num_classes, f"shiftpool.{name}: num_classes")
    check_positive_int(in_channels, f"shiftpool.{name}: in_channels")
    spec = DownsampleSpec(downsample, downsample_options or {}, circular=bool(circular))
    return builder(spec, num_classes, in_channels, **model_options)


def create_model(
    name: str,
    *,
    downsample: str | None = "max",
    downsample_options: Mapping[str, Any] | None = None,
    num_classes: int = 10,
    in_channels: int = 3,
    circular: bool = False,
    **model_options: Any,
) -> nn.Module:
    """Build model ``name`` with operator ``downsample`` at every downsampling point.

    Args:
        name: one of :func:`list_models`.
        downsample: one of :func:`shiftpool.list_downsamples`, or ``None`` for the plain
            network (strided convolutions, torch's max pool in the ImageNet stem).
        downsample_options: options of the operator (e.g. ``{"filter_size": 5}`` for ``blur``);
            an option it does not take is a ``TypeError``.
        num_classes: outputs of the classifier.
        in_channels: channels of the input images.
        circular: circular padding in convolutions, pools and operators, so that a model with
            ``aps`` (or ``lps`` in eval mode) is exactly invariant to circular shifts of inputs
            whose size each stride divides.
        **model_options: options of the model (e.g. ``width`` for ResNets); see
            :func:`model_option_names`.

    Example:
        >>> import torch
        >>> net = create_model("resnet20", downsample="aps", circular=True)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    return build_checked(model_builder(name), name, downsample=downsample,
                         downsample_options=downsample_options, num_classes=num_classes,
                         in_channels=in_channels, circular=circular, model_options=model_options)
