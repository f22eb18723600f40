"""Pieces the presets share: the base training settings of a study and per-scale choices."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from shiftpool.train.config import TrainConfig

T = TypeVar("T")

#: Settings every study run shares unless its preset changes them: no progress bars or
#: TensorBoard, no per-epoch test pass (each run is evaluated once, at the end).
STUDY_DEFAULTS: dict[str, Any] = {
    "progress": False,
    "tensorboard": False,
    "eval_every": 0,
    "amp": "off",
    "device": "auto",
}

#: The standard CIFAR augmentation: random crops of the 4-pixel zero-padded image and flips.
CIFAR_AUGMENT: dict[str, Any] = {"crop_padding": 4, "flip": True}


def study_config(scale_settings: Mapping[str, Any] | None = None, **fields: Any) -> TrainConfig:
    """A study's base :class:`TrainConfig`: :data:`STUDY_DEFAULTS`, then ``fields`` (the
    preset's), then ``scale_settings`` (a scale's own, e.g. another model at paper scale).

    Example:
        >>> config = study_config({"model": "resnet18_cifar"}, model="simple_cnn", epochs=2)
        >>> config.model, config.epochs, config.eval_every
        ('resnet18_cifar', 2, 0)
    """
    return TrainConfig(**{**STUDY_DEFAULTS, **fields, **(scale_settings or {})})


def by_scale(scale: str, choices: Mapping[str, T]) -> T:
    """``choices[scale]`` (the presets define every scale; a KeyError is a bug of the preset)."""
    return choices[scale]


def percent(*values: float) -> tuple[float, ...]:
    """Numbers given in percent (as papers print them) as fractions."""
    return tuple(v / 100 for v in values)
