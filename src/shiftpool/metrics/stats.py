"""Estimates with 95% intervals: proportions (Wilson score) and means (Student t), and the
Student t distribution they rest on (quantiles and two-sided p-values), in the standard library.

Every metric of :mod:`shiftpool.metrics` is reported as an :class:`Estimate`: the value, the
interval and the number of images it rests on. The meters accumulate on the device of the data
and synchronise only when an estimate is asked for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from torch import Tensor

from shiftpool.core.errors import InputError
from shiftpool.core.jsonable import finite_or_none

# Above this many degrees of freedom the t quantile is the normal one corrected by the
# Cornish-Fisher series (error below 1e-7); below, it is found from the exact finite-sum CDF.
_EXACT_T_MAX_DF = 1000
# Up to this many degrees of freedom the t p-value is summed exactly (df / 2 terms).
_EXACT_T_P_MAX_DF = 100_000


@dataclass(frozen=True)
class Estimate:
    """A measured value with its confidence interval.

    Attributes:
        value: the point estimate (a proportion in ``[0, 1]`` or a mean).
        low, high: the interval bounds (``nan`` where undefined, e.g. a mean of one value).
        n: the number of independent units (images) it rests on.
        method: ``"wilson"`` for proportions, ``"t"`` for means.
        confidence: the interval's coverage, e.g. ``0.95``.
    """

    value: float
    low: float
    high: float
    n: int
    method: str
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``nan`` becomes ``None`` (JSON has no NaN)."""
        return {k: finite_or_none(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Estimate:
        """Inverse of :meth:`to_dict`."""
        values = {k: (math.nan if v is None else v) for k, v in data.items()}
        return cls(**values)

    def __str__(self) -> str:
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}] (n={self.n})"


def normal_quantile(p: float) -> float:
    """The ``p`` quantile of the standard normal distribution.

    Example:
        >>> round(normal_quantile(0.975), 3)
        1.96
    """
    return NormalDist().inv_cdf(p)


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (``p >= 0.5``) of Student's t with ``df`` degrees of freedom.

    Example:
        >>> round(t_quantile(0.975, 10), 3)
        2.228
    """
    if not 0.5 <= p < 1:
        raise InputError(f"shiftpool.metrics.t_quantile: p must lie in [0.5, 1), got {p}")
    if df < 1:
        raise InputError(f"shiftpool.metrics.t_quantile: df must be >= 1, got {df}")
    if df > _EXACT_T_MAX_DF:
        return _t_quantile_cornish_fisher(p, df)
    target = 2 * p - 1
    low, high = 0.0, 1.0
    while _t_two_sided_mass(high, df) < target:
        high *= 2
    for _ in range(100):
        mid = 0.5 * (low + high)
        if _t_two_sided_mass(mid, df) < target:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def t_two_sided_p(t: float, df: int) -> float:
    """The two-sided p-value ``P(|T| >= |t|)`` of Student's t with ``df`` degrees of freedom.

    Exact (the finite trigonometric series of the t distribution) up to 100,000 degrees of
    freedom; above, the normal approximation with the ``1 - 1/(4 df)`` correction (error
    far below 1e-6 there). ``t`` may be infinite (p = 0); NaN is refused.

    Example:
        >>> round(t_two_sided_p(2.228139, 10), 4)
        0.05
        >>> t_two_sided_p(0.0, 3)
        1.0
    """
    if math.isnan(t):
        raise InputError("shiftpool.metrics.t_two_sided_p: t is NaN")
    if df < 1:
        raise InputError(f"shiftpool.metrics.t_two_sided_p: df must be >= 1, got {df}")
    t = abs(t)
    if math.isinf(t):
        return 0.0
    if df > _EXACT_T_P_MAX_DF:
        z = t * (1 - 1 / (4 * df)) / math.sqrt(1 + t * t / (2 * df))
        return 2 * (1 - NormalDist().cdf(z))
    return min(1.0, max(0.0, 1 - _t_two_sided_mass(t, df)))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """A proportion with its Wilson score interval.

    Args:
        successes: number of successes, ``0 <= successes <= n``.
        n: number of trials, ``>= 1``.
        confidence: the interval's coverage.

    Example:
        >>> e = wilson_interval(90, 100)
        >>> round(e.low, 3), round(e.high, 3)
        (0.826, 0.945)
    """
    _check_confidence(confidence)
    if n < 1:
        raise InputError("shiftpool.metrics: a proportion needs n >= 1 trials, got 0")
    if not 0 <= successes <= n:
        raise InputError(f"shiftpool.metrics: successes must lie in [0, {n}], got {successes}")
    z = normal_quantile(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # the bounds at p = 0 and p = 1 are exactly 0 and 1; avoid rounding just inside them
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return Estimate(p, low, high, n, "wilson", confidence)


def mean_interval(
    n: int, mean: float, variance: float, confidence: float = 0.95
) -> Estimate:
    """A mean with its Student t interval, from ``n`` values of the given (unbiased) variance.

    Example:
        >>> e = mean_interval(11, 1.0, 1.0)
        >>> round(e.high - e.value, 3)
        0.672
    """
    _check_confidence(confidence)
    if n < 1:
        raise InputError("shiftpool.metrics: a mean needs n >= 1 values, got 0")
    if n == 1 or math.isnan(variance):
        return Estimate(mean, math.nan, math.nan, n, "t", confidence)
    half = t_quantile(0.5 + confidence / 2, n - 1) * math.sqrt(max(variance, 0.0) / n)
    return Estimate(mean, mean - half, mean + half, n, "t", confidence)


class ProportionMeter:
    """Counts successes of a Bernoulli outcome per image, on the data's device.

    Example:
        >>> import torch
        >>> m = ProportionMeter()
        >>> m.update(torch.tensor([True, False, True, True]))
        >>> m.estimate().value
        0.75
    """

    def __init__(self) -> None:
        self.successes: Tensor | int = 0
        self.n = 0

    def update(self, hits: Tensor) -> None:
        """Add a batch of outcomes: ``hits`` is a bool tensor ``(N,)``."""
        self.successes = self.successes + hits.sum()
        self.n += hits.numel()

    def estimate(self, confidence: float = 0.95) -> Estimate:
        return wilson_interval(int(self.successes), self.n, confidence)


class MeanMeter:
    """Accumulates per-image values and reports their mean with a t interval.

    Each batch is summarised on its device (count, mean, sum of squared deviations); batches are
    merged in float64 on the CPU when the estimate is asked for (Chan's parallel formula), so
    no per-batch synchronisation and no cancellation error.

    Example:
        >>> import torch
        >>> m = MeanMeter()
        >>> m.update(torch.tensor([1.0, 2.0, 3.0]))
        >>> m.estimate().value
        2.0
    """

    def __init__(self) -> None:
        self._batches: list[tuple[int, Tensor, Tensor]] = []

    @property
    def n(self) -> int:
        return sum(b[0] for b in self._batches)

    def update(self, values: Tensor) -> None:
        """Add a batch of per-image values ``(N,)``."""
        if values.numel() == 0:
            return
        values = values.detach().float().reshape(-1)
        mean = values.mean()
        self._batches.append((values.numel(), mean, (values - mean).square().sum()))

    def estimate(self, confidence: float = 0.95) -> Estimate:
        n, mean, m2 = 0, 0.0, 0.0
        for nb, mb, m2b in self._batches:
            mb, m2b = float(mb), float(m2b)
            total = n + nb
            delta = mb - mean
            mean += delta * nb / total
            m2 += m2b + delta * delta * n * nb / total
            n = total
        variance = m2 / (n - 1) if n > 1 else math.nan
        return mean_interval(n, mean, variance, confidence)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise InputError(f"shiftpool.metrics: confidence must lie in (0, 1), got {confidence}")


def _t_two_sided_mass(t: float, df: int) -> float:
    """``P(|T| <= t)`` for integer ``df``, by the finite trigonometric series of the t CDF."""
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:
        # odd df: (2/π)(θ + sinθ cosθ (1 + 2/3 cos²θ + 2·4/(3·5) cos⁴θ + ...)), df - 2 terms
        term, total = 1.0, 0.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (theta + s * math.cos(theta) * total)
    # even df: sinθ (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + ...), df / 2 terms
    term, total = 1.0, 0.0
    for k in range(1, df // 2 + 1):
        total += term
        term *= c2 * (2 * k - 1) / (2 * k)
    return s * total


def _t_quantile_cornish_fisher(p: float, df: int) -> float:
    z = normal_quantile(p)
    z2 = z * z
    g1 = (z2 + 1) * z / 4
    g2 = ((5 * z2 + 16) * z2 + 3) * z / 96
    g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3
