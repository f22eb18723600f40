"""Translation sensitivity (Kauderer-Abrams; Mouton et al.): cosine similarity of features.

For a layer's features ``f`` (default: the input of the classifier head, i.e. the penultimate
features), the map over offsets ``δ`` of the mean over images of
``cos(f(x), f(T_δ x))`` — 1 where the features do not move, lower where they do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from shiftpool.core.jsonable import finite_or_none
from shiftpool.metrics.layers import classifier_head, find_layer
from shiftpool.metrics.stats import Estimate, MeanMeter


class FeatureHook:
    """Capture a layer's features on every forward pass, flattened to ``(N, D)``.

    Args:
        model: the network.
        layer: a name from ``model.named_modules()`` or a module of ``model``: its *output*
            is captured. ``None``: the *input* of the classifier head
            (:func:`~shiftpool.metrics.layers.classifier_head`).

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> with FeatureHook(net) as hook:
        ...     _ = net(torch.ones(3, 1, 2, 2))
        >>> hook.features.shape
        torch.Size([3, 4])
    """

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None) -> None:
        if layer is None:
            self.name, self.module = classifier_head(model)
            self.where = "input"
        else:
            self.name, self.module = find_layer(model, layer)
            self.where = "output"
        self.features: Tensor | None = None
        self._handle = None

    def __enter__(self) -> FeatureHook:
        if self.where == "input":
            self._handle = self.module.register_forward_pre_hook(self._keep_input)
        else:
            self._handle = self.module.register_forward_hook(self._keep_output)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def take(self) -> Tensor:
        """The features of the latest forward pass (a clear error if the layer did not run)."""
        if self.features is None:
            raise RuntimeError(
                f"shiftpool.metrics.sensitivity: the layer {self.name!r} did not run in the "
                "model's forward pass"
            )
        features, self.features = self.features, None
        return features

    def _keep(self, value: Any) -> None:
        value = value[0] if isinstance(value, (tuple, list)) else value
        self.features = value.detach().flatten(1)

    def _keep_input(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        self._keep(inputs)

    def _keep_output(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self._keep(output)


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Per-row cosine similarity of ``(N, D)`` features, in float32 (0 for a zero vector).

    Example:
        >>> import torch
        >>> cosine_similarity(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
        tensor([0.7071])
    """
    return F.cosine_similarity(a.float(), b.float(), dim=1, eps=1e-12)


@dataclass(frozen=True)
class SensitivityMap:
    """Mean cosine similarity of features over a grid of offsets, with t intervals.

    Attributes:
        layer: the layer's name; ``where``: ``"input"`` or ``"output"`` of it.
        mean, low, high: ``len(dys) × len(dxs)`` nested lists.
    """

    mode: str
    layer: str
    where: str
    dys: list[int]
    dxs: list[int]
    reference: tuple[int, int]
    mean: list[list[float | None]]
    low: list[list[float | None]]
    high: list[list[float | None]]
    n: int

    @property
    def overall(self) -> float:
        """Mean similarity over the grid cells (``nan`` if every cell is undefined)."""
        cells = [v for row in self.mean for v in row if v is not None]
        return sum(cells) / len(cells) if cells else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "layer": self.layer,
            "where": self.where,
            "dys": self.dys,
            "dxs": self.dxs,
            "reference": list(self.reference),
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "overall": finite_or_none(self.overall),
        }


class SensitivityMeter:
    """Accumulates the cosine similarity to the reference features for each grid offset."""

    def __init__(
        self, mode: str, hook: FeatureHook, dys: list[int], dxs: list[int],
        reference: tuple[int, int],
    ) -> None:
        self.mode, self.hook, self.dys, self.dxs, self.reference = mode, hook, dys, dxs, reference
        self._cells = [MeanMeter() for _ in range(len(dys) * len(dxs))]

    def update(self, cell: int, reference: Tensor, shifted: Tensor) -> None:
        """Add one batch for grid cell ``cell`` (row-major index)."""
        self._cells[cell].update(cosine_similarity(reference, shifted))

    def result(self, confidence: float = 0.95) -> SensitivityMap:
        estimates = [m.estimate(confidence) for m in self._cells]
        width = len(self.dxs)

        def grid(field: str) -> list[list[Any]]:
            values = [Estimate.to_dict(e)[field] for e in estimates]
            return [values[i : i + width] for i in range(0, len(values), width)]

        return SensitivityMap(
            self.mode, self.hook.name, self.hook.where, self.dys, self.dxs, self.reference,
            grid("value"), grid("low"), grid("high"), estimates[0].n,
        )
