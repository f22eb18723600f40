"""Predictions under shifts: accuracy, consistency, fidelity, offset maps, worst-case accuracy.

With ``ŷ`` the predicted class and ``T_δ`` a shift (:mod:`shiftpool.metrics.shifts`):

- **consistency** = ``P[ŷ(T_δ1 x) = ŷ(T_δ2 x)]``, ``δ1, δ2`` independent per image;
- **fidelity** (our reading of TIPS's "shift fidelity") =
  ``P[ŷ(x) = ŷ(T_δ1 x) = ŷ(T_δ2 x) = y]``;
- **offset map**: accuracy and agreement with ``ŷ(x)`` for every ``δ`` of a grid (2-D);
- **worst-case accuracy**: the fraction of images classified correctly under every ``δ`` of
  the grid;
- **diagonal curve** (Zhang's figure): accuracy and agreement with ``ŷ(x)`` for each diagonal
  shift ``δ = (d, d)``: one forward pass per ``d``, not one per cell of the 2-D grid.

A prediction from logits holding a NaN is *invalid*: it is never correct and never agrees with
anything (not even another invalid one); the number of such rows is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.metrics.stats import Estimate, ProportionMeter


@dataclass(frozen=True)
class Predictions:
    """Predicted classes of a batch and whether each came from NaN-free logits.

    Attributes:
        classes: ``(N,)`` int64, the argmax of the logits.
        valid: ``(N,)`` bool, ``False`` where the logits row holds a NaN.
    """

    classes: Tensor
    valid: Tensor

    @classmethod
    def from_logits(cls, logits: Tensor, n: int) -> Predictions:
        """Predictions of ``(N, classes)`` logits; a clear error for any other output.

        Example:
            >>> p = Predictions.from_logits(torch.tensor([[0.1, 2.0], [float("nan"), 0.0]]), 2)
            >>> p.classes.tolist(), p.valid.tolist()
            ([1, 0], [True, False])
        """
        check_logits(logits, n)
        valid = ~torch.isnan(logits).any(dim=1)
        classes = torch.where(valid[:, None], logits, torch.zeros_like(logits)).argmax(dim=1)
        return cls(classes, valid)

    def agree(self, *others: Predictions) -> Tensor:
        """``(N,)`` bool: all predictions are valid and name the same class."""
        hits = self.valid.clone()
        for other in others:
            hits &= other.valid & (other.classes == self.classes)
        return hits

    def correct(self, labels: Tensor) -> Tensor:
        """``(N,)`` bool: valid and equal to ``labels``."""
        return self.valid & (self.classes == labels)

    @property
    def invalid_count(self) -> Tensor:
        return (~self.valid).sum()


def check_logits(logits: Any, n: int) -> None:
    """Raise unless ``logits`` is a floating ``(n, classes)`` tensor with ``classes >= 1``."""
    if not isinstance(logits, Tensor):
        raise InputTypeError(
            "shiftpool.metrics: the model must return a logits tensor (N, classes), "
            f"got {type(logits).__name__}"
        )
    if logits.dim() != 2 or logits.shape[0] != n or logits.shape[1] < 1:
        raise InputError(
            f"shiftpool.metrics: the model must return logits of shape ({n}, classes) for a "
            f"batch of {n} images, got {tuple(logits.shape)}"
        )
    if not logits.is_floating_point():
        raise InputTypeError(
            f"shiftpool.metrics: logits must be floating point, got {logits.dtype}"
        )


def check_labels(labels: Any, n: int, num_classes: int) -> None:
    """Raise unless ``labels`` is an integer ``(n,)`` tensor with values in ``[0, num_classes)``."""
    integer = isinstance(labels, Tensor) and not (
        labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool
    )
    if not integer:
        kind = labels.dtype if isinstance(labels, Tensor) else type(labels).__name__
        raise InputTypeError(
            f"shiftpool.metrics: labels must be an integer tensor (N,), got {kind}"
        )
    if labels.shape != (n,):
        raise InputError(
            f"shiftpool.metrics: labels must have shape ({n},) to match the images, "
            f"got {tuple(labels.shape)}"
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise InputError(
            f"shiftpool.metrics: labels must lie in [0, {num_classes}) for a model with "
            f"{num_classes} outputs, got values in [{low}, {high}]"
        )


def offset_grid(
    max_shift: tuple[int, int], step: tuple[int, int], crop: bool = False
) -> tuple[list[int], list[int]]:
    """Offsets ``(dys, dxs)`` of the 2-D grid: ``-m..m`` with step (always holding 0), or
    ``0..m-1`` for crop windows.

    Example:
        >>> offset_grid((2, 1), (1, 1))
        ([-2, -1, 0, 1, 2], [-1, 0, 1])
    """
    axes = []
    for m, s in zip(max_shift, step, strict=True):
        axes.append(list(range(0, m, s)) if crop else list(range(-(m // s) * s, m + 1, s)))
    return axes[0], axes[1]


@dataclass(frozen=True)
class OffsetMap:
    """Accuracy and agreement with the unshifted prediction over a grid of offsets.

    Attributes:
        dys, dxs: the grid's offsets along rows and columns.
        reference: the offset of the unshifted view (``(0, 0)``, or the centre crop's corner).
        accuracy, agreement: ``len(dys) × len(dxs)`` nested lists of fractions.
        n: images per cell.
    """

    mode: str
    dys: list[int]
    dxs: list[int]
    reference: tuple[int, int]
    accuracy: list[list[float]]
    agreement: list[list[float]]
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "dys": self.dys,
            "dxs": self.dxs,
            "reference": list(self.reference),
            "accuracy": self.accuracy,
            "agreement": self.agreement,
            "n": self.n,
        }


class OffsetMapMeter:
    """Counts, per grid cell, correct predictions and agreement with the reference, and the
    images correct in every cell so far (worst case)."""

    def __init__(self, mode: str, dys: list[int], dxs: list[int], reference: tuple[int, int]):
        self.mode, self.dys, self.dxs, self.reference = mode, dys, dxs, reference
        self._correct: Tensor | int = 0
        self._agree: Tensor | int = 0
        self.worst_case = ProportionMeter()
        self.n = 0

    def update(
        self, cells: list[Predictions], reference: Predictions, labels: Tensor
    ) -> None:
        """Add one batch: ``cells`` holds the predictions for each grid offset, row-major."""
        correct = torch.stack([p.correct(labels) for p in cells])
        agree = torch.stack([p.agree(reference) for p in cells])
        shape = (len(self.dys), len(self.dxs))
        self._correct = self._correct + correct.sum(1).view(shape)
        self._agree = self._agree + agree.sum(1).view(shape)
        self.worst_case.update(correct.all(0))
        self.n += labels.numel()

    def result(self) -> OffsetMap:
        return OffsetMap(
            self.mode,
            self.dys,
            self.dxs,
            self.reference,
            (torch.as_tensor(self._correct).double() / self.n).tolist(),
            (torch.as_tensor(self._agree).double() / self.n).tolist(),
            self.n,
        )

    def worst_case_estimate(self, confidence: float = 0.95) -> Estimate:
        return self.worst_case.estimate(confidence)


@dataclass(frozen=True)
class DiagonalCurve:
    """Accuracy and agreement with the unshifted prediction along the diagonal ``δ = (d, d)``.

    Attributes:
        mode: the shift mode.
        shifts: the ``d`` of each point (``crop``: the window corner ``(d, d)``).
        reference: the offset of the unshifted view (``(0, 0)``, or the centre crop's corner).
        accuracy, agreement: one :class:`~shiftpool.metrics.stats.Estimate` (Wilson interval)
            per ``d``.
        n: images per point.
    """

    mode: str
    shifts: list[int]
    reference: tuple[int, int]
    accuracy: list[Estimate]
    agreement: list[Estimate]
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "shifts": list(self.shifts),
            "reference": list(self.reference),
            "accuracy": [e.to_dict() for e in self.accuracy],
            "agreement": [e.to_dict() for e in self.agreement],
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiagonalCurve:
        """Inverse of :meth:`to_dict`."""
        return cls(
            data["mode"], list(data["shifts"]), tuple(data["reference"]),
            [Estimate.from_dict(e) for e in data["accuracy"]],
            [Estimate.from_dict(e) for e in data["agreement"]], data["n"],
        )


class DiagonalMeter:
    """Counts, per diagonal shift, correct predictions and agreement with the reference.

    Example:
        >>> meter = DiagonalMeter("circular", [0, 1], (0, 0))
        >>> p = Predictions.from_logits(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 2)
        >>> q = Predictions.from_logits(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), 2)
        >>> _ = meter.update([p, q], p, torch.tensor([0, 0]))
        >>> [e.value for e in meter.result().accuracy], [e.value for e in meter.result().agreement]
        ([0.5, 1.0], [1.0, 0.5])
    """

    def __init__(self, mode: str, shifts: list[int], reference: tuple[int, int]) -> None:
        self.mode, self.shifts, self.reference = mode, shifts, reference
        self.correct = [ProportionMeter() for _ in shifts]
        self.agree = [ProportionMeter() for _ in shifts]

    def update(
        self, points: list[Predictions], reference: Predictions, labels: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Add one batch (``points``: the predictions at each ``d``); returns the per-image
        ``(correct, agree)``, each ``(N, D)`` bool."""
        correct = torch.stack([p.correct(labels) for p in points], dim=1)
        agree = torch.stack([p.agree(reference) for p in points], dim=1)
        for i in range(len(points)):
            self.correct[i].update(correct[:, i])
            self.agree[i].update(agree[:, i])
        return correct, agree

    def result(self, confidence: float = 0.95) -> DiagonalCurve:
        return DiagonalCurve(
            self.mode, list(self.shifts), self.reference,
            [m.estimate(confidence) for m in self.correct],
            [m.estimate(confidence) for m in self.agree],
            self.correct[0].n,
        )
