"""The registry of models: one name, one builder and its task; ``create_model`` builds any of them.

A model's task says what it outputs: ``classification`` models map ``(N, C, H, W)`` to class
logits ``(N, num_classes)``, ``segmentation`` models to per-pixel logits
``(N, num_classes, H, W)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from shiftpool._registry import Registry
from shiftpool.core.checks import check_choice, check_positive_int
from shiftpool.core.errors import InputTypeError
from shiftpool.models.layers import DownsampleSpec

#: A builder takes ``(spec, num_classes, in_channels)`` and keyword-only model options.
Builder = Callable[..., nn.Module]

#: What a model predicts: one label per image, or one label per pixel.
TASKS: tuple[str, ...] = ("classification", "segmentation")

_MODELS: Registry[Builder] = Registry("model")
_TASKS: dict[str, str] = {}


def register_model(name: str, task: str = "classification") -> Callable[[Builder], Builder]:
    """Decorator: make the builder available as ``create_model(name, ...)``, for ``task``."""
    check_choice(task, f"shiftpool.models: task of {name!r}", TASKS)

    def add(builder: Builder) -> Builder:
        _MODELS.add(name, builder)
        _TASKS[name] = task
        return builder

    return add


def list_models(task: str | None = None) -> list[str]:
    """Names of the registered models of ``task`` (every task when None), sorted.

    Example:
        >>> "resnet20" in list_models(), "unet" in list_models("segmentation")
        (True, True)
        >>> "unet" in list_models("classification")
        False
    """
    if task is None:
        return _MODELS.names()
    check_choice(task, "shiftpool.models: task", TASKS)
    return [name for name in _MODELS.names() if _TASKS[name] == task]


def model_task(name: str) -> str:
    """The task of model ``name``: ``classification`` or ``segmentation``.

    Example:
        >>> model_task("resnet20"), model_task("unet")
        ('classification', 'segmentation')
    """
    _MODELS.get(name)  # an unknown name lists the valid ones
    return _TASKS[name]


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
    to the builder and the counts are positive integers (one clear error otherwise)."""
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
        name: one of :func:`list_models` (classification and segmentation models alike; see
            :func:`model_task`).
        downsample: one of :func:`shiftpool.list_downsamples`, or ``None`` for the plain
            network (strided convolutions, torch's max pool in the ImageNet stem).
        downsample_options: options of the operator (e.g. ``{"filter_size": 5}`` for ``blur``);
            an option it does not take is a ``TypeError``.
        num_classes: outputs of the classifier (per pixel for a segmentation model).
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
        >>> unet = create_model("unet", num_classes=3, channels=(4, 8))
        >>> unet(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """
    return build_checked(model_builder(name), name, downsample=downsample,
                         downsample_options=downsample_options, num_classes=num_classes,
                         in_channels=in_channels, circular=circular, model_options=model_options)
