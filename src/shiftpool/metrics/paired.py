"""Paired comparisons of a method with a baseline measured on the same units: the difference of
a metric with a 95% interval and a p-value, from tests that fit how the data were paired.

Two kinds of pairing occur in a comparison:

* **over seeds**: each training seed gives one value per method (the same seed draws the same
  initialisation stream, training order, test images and offsets for every method), so the
  per-seed differences are paired: :func:`paired_t` (Student t on the differences, ``k - 1``
  degrees of freedom). This is the test of the *method*: it includes the variation from
  training run to training run.
* **over test images**: within one seed every method sees the same images under the same
  offsets, so per-image outcomes are paired. Binary outcomes (correct, consistent, faithful)
  get :func:`mcnemar`, the exact binomial test on the discordant images (and its mid-p);
  any outcome gets :func:`paired_bootstrap`, a percentile interval of the mean difference
  from resampling images (the same images for both methods). These tests hold the trained
  models fixed: they say whether *these models* differ on this test distribution, not whether
  another training run would.

Over several seeds the image-level tests are combined by stratifying by seed: the bootstrap
resamples images within each seed and averages the per-seed differences (the same estimate as
the mean over seeds); McNemar's test is run on the discordant counts summed over seeds (under
the null hypothesis every discordant image is a fair coin in every seed, so the sum is
Binomial(b + c, 1/2): the stratified McNemar test), and also per seed.

Everything here needs only the standard library, numpy and torch.

Example:
    >>> d = paired_difference([0.90, 0.92, 0.91], [0.88, 0.89, 0.90])
    >>> round(d.difference.value, 4), round(d.seeds.p_value, 4)
    (0.02, 0.0742)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from shiftpool.core.errors import InputError
from shiftpool.core.jsonable import finite_or_none
from shiftpool.metrics.stats import Estimate, mean_interval, t_two_sided_p

#: ``Estimate.method`` of a mean difference over seeds with its paired t interval.
PAIRED_T = "paired t"
#: ``Estimate.method`` of a mean difference over images with its percentile bootstrap interval.
PAIRED_BOOTSTRAP = "paired bootstrap"
#: Resamples of the image bootstrap unless told otherwise.
BOOTSTRAP_RESAMPLES = 2000
#: The level below which :meth:`PairedDifference.marks` marks a difference.
ALPHA = 0.05
#: The marks of a significant difference, by test.
SEEDS_MARK = "*"
IMAGES_MARK = "†"

# Above this many discordant pairs the binomial tail is summed in floating point (log space)
# instead of exact integers; both agree far below 1e-9 there.
_EXACT_BINOMIAL_MAX = 20_000
# Bootstrap resamples drawn at once (memory: chunk x images indices).
_CHUNK_ELEMENTS = 4_000_000
# Up to this many distinct values the bootstrap draws multinomial counts instead of indices.
_FEW_VALUES = 8

Outcomes = Sequence[float] | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of paired binary outcomes (method vs baseline on the same units).

    Attributes:
        better: units where the method succeeds and the baseline fails (``b``).
        worse: units where the baseline succeeds and the method fails (``c``).
        n: all paired units (the concordant ones included).
        p_value: the exact two-sided p-value: ``min(1, 2 P(X <= min(b, c)))`` with
            ``X ~ Binomial(b + c, 1/2)``.
        mid_p: the mid-p value (half the probability of the observed count removed from the
            doubled tail): less conservative, close to nominal size.
    """

    better: int
    worse: int
    n: int
    p_value: float
    mid_p: float

    @property
    def difference(self) -> float:
        """The difference of the two success rates, ``(b - c) / n``."""
        return (self.better - self.worse) / self.n if self.n else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"better": self.better, "worse": self.worse, "n": self.n,
                "p_value": self.p_value, "mid_p": self.mid_p}


def mcnemar(better: int, worse: int, n: int | None = None) -> McNemar:
    """McNemar's exact test from the discordant counts ``b`` (``better``) and ``c`` (``worse``).

    ``n`` (all pairs, default ``b + c``) only sets :attr:`McNemar.difference`.

    Example:
        >>> test = mcnemar(1, 9)
        >>> round(test.p_value, 5), round(test.mid_p, 5)
        (0.02148, 0.01172)
    """
    for name, value in (("better", better), ("worse", worse)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InputError(f"shiftpool.metrics.mcnemar: {name} must be a count >= 0, "
                             f"got {value!r}")
    better, worse = int(better), int(worse)
    total = better + worse if n is None else int(n)
    if total < better + worse:
        raise InputError(f"shiftpool.metrics.mcnemar: n ({total}) is below the discordant "
                         f"pairs ({better + worse})")
    tail, point = _binomial_half_tail(min(better, worse), better + worse)
    return McNemar(better, worse, total, min(1.0, 2 * tail), min(1.0, 2 * tail - point))


def mcnemar_outcomes(outcomes: Outcomes, baseline: Outcomes) -> McNemar:
    """:func:`mcnemar` of two aligned vectors of binary per-unit outcomes (bool or 0/1).

    Example:
        >>> mcnemar_outcomes([1, 1, 0, 1], [0, 1, 0, 0]).better
        2
    """
    a, b = _pair(outcomes, baseline, "mcnemar_outcomes")
    if not (_binary(a) and _binary(b)):
        raise InputError("shiftpool.metrics.mcnemar_outcomes: outcomes must be binary "
                         "(bool or 0/1)")
    a, b = a.astype(bool), b.astype(bool)
    return mcnemar(int(np.sum(a & ~b)), int(np.sum(~a & b)), a.size)


@dataclass(frozen=True)
class PairedT:
    """Student's paired t-test of aligned values (method vs baseline, one pair per unit).

    Attributes:
        difference: the mean difference (method − baseline) with its t interval; ``n`` is the
            number of pairs, ``method`` is ``"paired t"``.
        statistic: ``t = mean / (sd / sqrt(n))`` (``±inf`` when every difference is the same
            nonzero value, NaN for one pair or all-zero differences).
        df: degrees of freedom, ``n - 1``.
        p_value: the two-sided p-value (NaN where ``statistic`` is NaN).
    """

    difference: Estimate
    statistic: float
    df: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return {"difference": self.difference.to_dict(),
                "statistic": finite_or_none(self.statistic), "df": self.df,
                "p_value": finite_or_none(self.p_value)}


def paired_t(values: Outcomes, baseline: Outcomes, confidence: float = 0.95) -> PairedT:
    """The paired t-test of ``values`` against ``baseline`` (aligned: the i-th of each pair).

    Example:
        >>> test = paired_t([0.90, 0.92, 0.91], [0.88, 0.89, 0.90])
        >>> round(test.statistic, 4), test.df, round(test.p_value, 4)
        (3.4641, 2, 0.0742)
    """
    a, b = _pair(values, baseline, "paired_t")
    d = a.astype(np.float64) - b.astype(np.float64)
    n = d.size
    mean = float(d.mean())
    variance = float(d.var(ddof=1)) if n > 1 else math.nan
    estimate = mean_interval(n, mean, variance, confidence)
    estimate = Estimate(estimate.value, estimate.low, estimate.high, n, PAIRED_T, confidence)
    if n < 2:
        return PairedT(estimate, math.nan, 0, math.nan)
    se = math.sqrt(max(variance, 0.0) / n)
    constant = math.nan if mean == 0 else math.copysign(math.inf, mean)
    statistic = constant if se == 0 else mean / se
    p = math.nan if math.isnan(statistic) else t_two_sided_p(statistic, n - 1)
    return PairedT(estimate, statistic, n - 1, p)


def paired_bootstrap(
    values: Outcomes | Sequence[Outcomes], baseline: Outcomes | Sequence[Outcomes], *,
    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, confidence: float = 0.95,
) -> Estimate:
    """A percentile bootstrap interval of the mean difference of paired per-unit outcomes.

    Units (images) are resampled with replacement, the same units for both methods. Given one
    vector per stratum (seed), images are resampled within each stratum and the statistic is the
    mean over strata of the per-stratum mean difference.

    Args:
        values, baseline: aligned per-unit outcomes (numbers or bools), or one such vector per
            stratum (the i-th of ``values`` paired with the i-th of ``baseline``).
        resamples: bootstrap resamples (>= 100).
        seed: seeds the resampling (a ``torch.Generator``): the interval is reproducible.
        confidence: the interval's coverage.

    Returns:
        An :class:`Estimate` with ``method="paired bootstrap"`` and ``n`` the number of units
        (summed over strata).

    Example:
        >>> e = paired_bootstrap([1, 1, 1, 0] * 50, [1, 0, 1, 0] * 50, resamples=1000)
        >>> e.value, e.low < 0.25 < e.high
        (0.25, True)
    """
    strata = _strata(values, baseline)
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise InputError(f"shiftpool.metrics.paired_bootstrap: resamples must be an integer "
                         f">= 100, got {resamples!r}")
    if not 0 < confidence < 1:
        raise InputError(f"shiftpool.metrics.paired_bootstrap: confidence must lie in (0, 1), "
                         f"got {confidence}")
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(resamples, dtype=torch.float64)
    for d in strata:
        total += _bootstrap_means(d, resamples, generator)
    means = total / len(strata)
    value = sum(float(d.mean()) for d in strata) / len(strata)
    tail = (1 - confidence) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    n = sum(int(d.numel()) for d in strata)
    return Estimate(value, min(low, value), max(high, value), n, PAIRED_BOOTSTRAP, confidence)


@dataclass(frozen=True)
class PairedDifference:
    """A method's difference from the baseline in one metric, with every test that applies.

    Attributes:
        difference: the mean over seeds of (method − baseline), with the interval reported in
            tables: the paired t interval over seeds with two or more seeds, else the paired
            bootstrap interval over images (or no interval where neither applies).
        seeds: the paired t-test over seeds (two or more seeds), else None.
        images: the paired bootstrap interval over images (stratified by seed), else None.
        mcnemar: McNemar's exact test on the discordant images summed over seeds (binary
            per-image outcomes only), else None.
        mcnemar_per_seed: the same test in each seed separately.
    """

    difference: Estimate
    seeds: PairedT | None = None
    images: Estimate | None = None
    mcnemar: McNemar | None = None
    mcnemar_per_seed: tuple[McNemar, ...] = ()

    def marks(self, alpha: float = ALPHA) -> str:
        """``"*"`` where the paired t-test over seeds gives p < ``alpha``, ``"†"`` where the
        exact McNemar test over images (summed over seeds) does; both, one or ``""``."""
        marks = ""
        if self.seeds is not None and self.seeds.p_value < alpha:
            marks += SEEDS_MARK
        if self.mcnemar is not None and self.mcnemar.p_value < alpha:
            marks += IMAGES_MARK
        return marks

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``nan`` as ``None``)."""
        return {
            "difference": self.difference.to_dict(),
            "seeds": None if self.seeds is None else self.seeds.to_dict(),
            "images": None if self.images is None else self.images.to_dict(),
            "mcnemar": None if self.mcnemar is None else self.mcnemar.to_dict(),
            "mcnemar_per_seed": [m.to_dict() for m in self.mcnemar_per_seed],
            "marks": self.marks(),
        }


def paired_difference(
    values: Sequence[float], baseline: Sequence[float],
    outcomes: Sequence[Outcomes] | None = None,
    baseline_outcomes: Sequence[Outcomes] | None = None, *,
    confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
) -> PairedDifference:
    """Compare one metric of a method with the baseline, paired by seed and by image.

    Args:
        values, baseline: the metric's value per seed (aligned: same seeds, same order).
        outcomes, baseline_outcomes: optionally, per seed, the per-image outcomes behind the
            value (same images and offsets for both methods within a seed); binary outcomes
            also get McNemar's test.
        confidence, resamples, seed: of the intervals and the bootstrap.

    Example:
        >>> d = paired_difference([0.75], [0.5], [[1, 1, 1, 0] * 10], [[1, 0, 1, 0] * 10])
        >>> d.seeds is None, d.difference.method, round(d.mcnemar.p_value, 6), d.marks()
        (True, 'paired bootstrap', 0.001953, '†')
    """
    a, b = _pair(values, baseline, "paired_difference")
    per_seed = a.astype(np.float64) - b.astype(np.float64)
    seeds_test = paired_t(a, b, confidence) if a.size >= 2 else None
    images = tests = pooled = None
    if (outcomes is None) != (baseline_outcomes is None):
        raise InputError("shiftpool.metrics.paired_difference: give the per-image outcomes of "
                         "both methods or of neither")
    if outcomes is not None and baseline_outcomes is not None:
        if len(outcomes) != a.size or len(baseline_outcomes) != a.size:
            raise InputError(f"shiftpool.metrics.paired_difference: per-image outcomes for "
                             f"{len(outcomes)} and {len(baseline_outcomes)} seeds, values for "
                             f"{a.size}")
        images = paired_bootstrap(list(outcomes), list(baseline_outcomes), resamples=resamples,
                                  seed=seed, confidence=confidence)
        pairs = [_pair(x, y, "paired_difference") for x, y in
                 zip(outcomes, baseline_outcomes, strict=True)]
        if all(_binary(x) and _binary(y) for x, y in pairs):
            tests = tuple(mcnemar_outcomes(x, y) for x, y in pairs)
            pooled = mcnemar(sum(t.better for t in tests), sum(t.worse for t in tests),
                             sum(t.n for t in tests))
    value = float(per_seed.mean())
    if seeds_test is not None:
        difference = seeds_test.difference
    elif images is not None:
        difference = Estimate(value, images.low, images.high, images.n, PAIRED_BOOTSTRAP,
                              confidence)
    else:
        difference = Estimate(value, math.nan, math.nan, a.size, PAIRED_T, confidence)
    return PairedDifference(difference, seeds_test, images, pooled, tests or ())


# -- helpers -------------------------------------------------------------------------------------

def _array(values: Outcomes, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 1 or not (
        array.dtype == bool or np.issubdtype(array.dtype, np.number)
    ):
        raise InputError(f"shiftpool.metrics.{what}: expected a vector of numbers, got "
                         f"{type(values).__name__}")
    if array.size == 0:
        raise InputError(f"shiftpool.metrics.{what}: no values")
    if array.dtype != bool and not np.all(np.isfinite(array)):
        raise InputError(f"shiftpool.metrics.{what}: values must be finite numbers")
    return array


def _pair(values: Outcomes, baseline: Outcomes, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = _array(values, what), _array(baseline, what)
    if a.shape != b.shape:
        raise InputError(f"shiftpool.metrics.{what}: paired values must align, got {a.size} "
                         f"and {b.size}")
    return a, b


def _binary(array: np.ndarray) -> bool:
    return array.dtype == bool or bool(np.all((array == 0) | (array == 1)))


def _strata(values: Any, baseline: Any) -> list[torch.Tensor]:
    """Per-stratum differences (float64 tensors) from one vector or one vector per stratum."""
    nested = isinstance(values, (list, tuple)) and len(values) > 0 and all(
        isinstance(v, (list, tuple, np.ndarray, torch.Tensor)) for v in values
    )
    if not nested:
        values, baseline = [values], [baseline]
    if not isinstance(baseline, (list, tuple)) or len(values) != len(baseline):
        raise InputError("shiftpool.metrics.paired_bootstrap: give as many baseline vectors as "
                         "vectors (one per stratum)")
    out = []
    for x, y in zip(values, baseline, strict=True):
        a, b = _pair(x, y, "paired_bootstrap")
        out.append(torch.from_numpy(a.astype(np.float64) - b.astype(np.float64)))
    return out


def _bootstrap_means(d: torch.Tensor, resamples: int, generator: torch.Generator) -> torch.Tensor:
    """``resamples`` means of ``d`` resampled with replacement.

    Where ``d`` takes few distinct values (differences of binary outcomes: -1, 0, 1), a
    resample's mean depends only on how often each value is drawn, a multinomial count drawn
    exactly as successive binomials: the same distribution as resampling indices, at a cost
    that does not grow with the number of images. Otherwise indices are resampled.
    """
    n = d.numel()
    values, counts = torch.unique(d, return_counts=True)
    if len(values) <= _FEW_VALUES:
        remaining = torch.full((resamples,), float(n), dtype=torch.float64)
        left = n  # images whose value is not yet drawn
        total = torch.zeros(resamples, dtype=torch.float64)
        for value, count in zip(values[:-1].tolist(), counts[:-1].tolist(), strict=True):
            share = torch.full_like(remaining, count / left)
            drawn = torch.binomial(remaining, share, generator=generator)
            total += drawn * value
            remaining -= drawn
            left -= count
        return (total + remaining * float(values[-1])) / n
    chunk = max(1, _CHUNK_ELEMENTS // n)
    means = []
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        index = torch.randint(n, (count, n), generator=generator)
        means.append(d[index].mean(dim=1))
    return torch.cat(means)


def _binomial_half_tail(k: int, m: int) -> tuple[float, float]:
    """``(P(X <= k), P(X = k))`` for ``X ~ Binomial(m, 1/2)``."""
    if m <= _EXACT_BINOMIAL_MAX:
        term, total = 1, 0
        for i in range(k + 1):  # term = C(m, i), exact integers
            total += term
            if i < k:
                term = term * (m - i) // (i + 1)
        scale = 2**m
        return total / scale, term / scale
    logs = [math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) - m * math.log(2)
            for i in range(k + 1)]
    top = max(logs)
    return math.exp(top) * sum(math.exp(x - top) for x in logs), math.exp(logs[-1])
