"""Robustness metrics inside :func:`shiftpool.metrics.evaluate` (SPEC §7): ``adversarial``
(robust accuracy per ε), ``corruption`` (accuracy per corruption and severity) and ``flip_rate``
(ImageNet-P style flip probabilities).

They are asked for by name (``metrics=[..., "adversarial"]``), never by ``"all"`` (they cost
many passes: PGD-k about k forward+backward passes per ε; corruptions one forward pass per
corruption and severity; flip rates one per frame). Each batch is attacked, corrupted or
perturbed as it passes, so the data is read once.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from shiftpool.metrics import evaluate
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    >>> data = [(torch.rand(6, 3, 8, 8), torch.randint(0, 4, (6,)))]
    >>> r = evaluate(net, data, metrics=["adversarial"], eps="0,8/255", progress=False)
    >>> sorted(r.summary())
    ['rob_acc@0', 'rob_acc@8/255']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from shiftpool.core.errors import InputError
from shiftpool.metrics.adversarial import Attack, RobustCurve, RobustMeter, Space, parse_eps

__all__ = [
    "DEFAULT_EPS",
    "ROBUSTNESS_METRICS",
    "RobustnessOptions",
    "RobustnessResult",
    "RobustnessRun",
]

#: The metrics this module adds to :func:`~shiftpool.metrics.evaluate`.
ROBUSTNESS_METRICS: tuple[str, ...] = ("adversarial", "corruption", "flip_rate")
#: The default ε grid, pixel units (input units without a normalisation).
DEFAULT_EPS: tuple[float, ...] = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255)


@dataclass(frozen=True)
class RobustnessOptions:
    """What the robustness metrics do.

    Attributes:
        attack: the :class:`~shiftpool.metrics.adversarial.Attack` (default PGD-10 L∞, random
            start, step 2.5ε/10).
        eps: the ε grid (ε = 0, the clean accuracy, is always added).
        eps_unit: ``"pixel"`` (ε in ``[0, 1]`` pixel units, converted per channel through the
            normalisation; needs ``normalization``) or ``"input"`` (the model's input units);
            ``None``: pixel when the normalisation is known, else input.

    Example:
        >>> RobustnessOptions(eps="8/255").eps
        (0.0, 0.03137254901960784)
    """

    attack: Attack = field(default_factory=Attack)
    eps: tuple[float, ...] | str = DEFAULT_EPS
    eps_unit: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", parse_eps((0.0, *parse_eps(self.eps))))
        if not isinstance(self.attack, Attack):
            raise InputError(
                "shiftpool.metrics.evaluate: attack must be a shiftpool.metrics.Attack, got "
                f"{type(self.attack).__name__}"
            )
        if self.eps_unit not in (None, "pixel", "input"):
            raise InputError(
                f"shiftpool.metrics.evaluate: eps_unit must be 'pixel' or 'input', got "
                f"{self.eps_unit!r}"
            )

    def space(self, normalization: tuple[Sequence[float], Sequence[float]] | None) -> Space:
        """The :class:`~shiftpool.metrics.adversarial.Space` ε is measured in."""
        unit = self.eps_unit or ("pixel" if normalization is not None else "input")
        if unit == "pixel" and normalization is None:
            raise InputError(
                "shiftpool.metrics.evaluate: eps_unit='pixel' needs the data's normalization "
                "(mean, std); pass normalization=... or eps_unit='input'"
            )
        return Space.pixels(normalization) if unit == "pixel" else Space.inputs(normalization)


@dataclass
class RobustnessResult:
    """The robustness part of an :class:`~shiftpool.metrics.result.EvaluationResult`.

    Attributes:
        adversarial: the robust-accuracy curve, or ``None`` when not asked for.
    """

    adversarial: RobustCurve | None = None

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.adversarial is not None:
            out.update(self.adversarial.summary())
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"adversarial": None if self.adversarial is None else self.adversarial.to_dict()}


class RobustnessRun:
    """The robustness meters of one evaluation; fed batch by batch by ``evaluate``."""

    def __init__(
        self, wanted: Iterable[str], options: RobustnessOptions,
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
        per_image: bool = False,
    ) -> None:
        self.wanted = set(wanted) & set(ROBUSTNESS_METRICS)
        self.options = options
        self.adversarial = (
            RobustMeter(options.eps, options.attack, options.space(normalization), per_image)
            if "adversarial" in self.wanted else None
        )

    @classmethod
    def create(
        cls, wanted: Iterable[str], options: RobustnessOptions | None,
        normalization: tuple[Sequence[float], Sequence[float]] | None, per_image: bool = False,
    ) -> RobustnessRun | None:
        """A run when ``wanted`` names a robustness metric, else ``None``."""
        wanted = set(wanted)
        if not wanted & set(ROBUSTNESS_METRICS):
            return None
        return cls(wanted, options or RobustnessOptions(), normalization, per_image)

    def batch(self, model: nn.Module, x: Tensor, y: Tensor) -> None:
        if self.adversarial is not None:
            self.adversarial.update(model, x, y)

    def result(self, confidence: float = 0.95) -> RobustnessResult:
        return RobustnessResult(
            adversarial=None if self.adversarial is None else self.adversarial.curve(confidence),
        )


def robustness_options(
    options: RobustnessOptions | None = None, attack: Attack | None = None,
    eps: Iterable[float] | str | None = None, eps_unit: str | None = None,
) -> RobustnessOptions | None:
    """``options`` with the given fields replaced (``None``: left as they are).

    Example:
        >>> robustness_options(eps="4/255").eps[-1] == 4 / 255
        True
    """
    if options is None and attack is None and eps is None and eps_unit is None:
        return None
    base = options or RobustnessOptions()
    return RobustnessOptions(
        attack=attack if attack is not None else base.attack,
        eps=tuple(parse_eps(eps)) if eps is not None else base.eps,
        eps_unit=eps_unit if eps_unit is not None else base.eps_unit,
    )
