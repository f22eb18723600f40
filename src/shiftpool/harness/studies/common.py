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


def study_config(**fields: Any) -> TrainConfig:
    """A study's base :class:`TrainConfig`: :data:`STUDY_DEFAULTS` with ``fields`` applied.

    Example:
        >>> study_config(model="simple_cnn", dataset="cifar10", epochs=2).eval_every
        0
    """
    return TrainConfig(**{**STUDY_DEFAULTS, **fields})


def by_scale(scale: str, choices: Mapping[str, T]) -> T:
    """``choices[scale]`` (the presets define every scale; a KeyError is a bug of the preset)."""
    return choices[scale]


def percent(*values: float) -> tuple[float, ...]:
    """Numbers given in percent (as papers print them) as fractions."""
    return tuple(v / 100 for v in values)
