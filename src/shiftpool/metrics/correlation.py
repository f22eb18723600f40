"""Correlation between per-model quantities (e.g. MSB and shift consistency), with intervals.

The TIPS paper's central analysis is a correlation across trained models: maximum-sampling bias
(MSB) against shift invariance. The number of models is small (a handful to a few dozen), so
every coefficient comes with

- a bootstrap interval over models (pairs resampled with replacement; BCa by default, or the
  plain percentile interval), seeded; resamples in which either variable is constant have no
  correlation and are dropped (their count is reported);
- a two-sided permutation p-value for "no association" (the statistic is ``|r|``): exact, over
  all ``n!`` pairings, when ``n!`` is at most the number of permutations asked for; otherwise
  Monte Carlo with the ``+1`` correction, ``p = (1 + #{|r_perm| >= |r|}) / (1 + B)``, so the
  smallest possible p is ``1 / (B + 1)`` and the test is exact in level (``P(p <= α) <= α``).

Spearman's coefficient is Pearson's on the ranks (ties get their average rank), in the bootstrap
too: each resample is ranked again. Only NumPy (and torch tensors as inputs) are needed.

Models often come in clusters: one method trained with several seeds lands close to its
siblings, and a bootstrap over models then treats a method's seeds as independent evidence.
Given each model's cluster, :func:`correlation` adds a cluster bootstrap interval (whole
clusters resampled with replacement, percentile; at least :data:`MIN_CLUSTERS` clusters), the
honest interval when the question is about methods rather than trained models.

Example:
    >>> c = correlation([0.9, 0.7, 0.6, 0.5, 0.45], [0.70, 0.81, 0.85, 0.92, 0.90],
    ...                 resamples=999, seed=0)
    >>> round(c.value, 3), c.p_method, round(c.p_value, 4)
    (-0.982, 'exact', 0.0167)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

from shiftpool.core.checks import check_choice, check_int, check_range
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.core.jsonable import finite_or_none

#: The coefficients :func:`correlation` computes.
CORRELATIONS: tuple[str, ...] = ("pearson", "spearman")
#: The bootstrap intervals it offers.
INTERVALS: tuple[str, ...] = ("bca", "percentile")

#: Fewest clusters a cluster bootstrap interval is computed from (with 3, a resample is one
#: of only 10 distinct multisets of clusters).
MIN_CLUSTERS = 4

DEFAULT_RESAMPLES = 9999
DEFAULT_PERMUTATIONS = 9999
# |r_perm| >= |r| - _TIE counts as "at least as extreme" (floating-point ties of equal sums)
_TIE = 1e-10
# rows of a (rows, n) block of resamples, so that blocks stay near this many numbers
_BLOCK_NUMBERS = 2_000_000

Values = Sequence[float] | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class Correlation:
    """A correlation coefficient with its bootstrap interval and permutation p-value.

    Attributes:
        kind: ``"pearson"`` or ``"spearman"``.
        value: the coefficient, in ``[-1, 1]``.
        low, high: the bootstrap interval (``nan`` when no resample had a correlation).
        p_value: two-sided permutation p-value of "no association".
        n: number of pairs (models).
        confidence: the interval's nominal coverage.
        interval: ``"bca"`` or ``"percentile"``: how ``low`` and ``high`` were found.
        resamples: bootstrap resamples used (those with a constant variable are dropped).
        p_method: ``"exact"`` (all ``n!`` pairings) or ``"monte carlo"``.
        permutations: pairings counted (``n!`` when exact, else the random ones drawn).
        seed: the seed of the bootstrap and the permutations.
        clusters: clusters the models came in (0: no cluster bootstrap).
        cluster_low, cluster_high: the cluster bootstrap's percentile interval (``nan``
            without one).
    """

    kind: str
    value: float
    low: float
    high: float
    p_value: float
    n: int
    confidence: float = 0.95
    interval: str = "bca"
    resamples: int = 0
    p_method: str = "exact"
    permutations: int = 0
    seed: int = 0
    clusters: int = 0
    cluster_low: float = math.nan
    cluster_high: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``nan`` becomes ``None``."""
        return {k: finite_or_none(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Correlation:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: (math.nan if v is None else v) for k, v in data.items()})

    def __str__(self) -> str:
        return (f"{self.kind} r={self.value:.3f} [{self.low:.3f}, {self.high:.3f}] "
                f"p={self.p_value:.4g} (n={self.n})")


@dataclass(frozen=True)
class LinearFit:
    """A least-squares line ``y = intercept + slope · x`` with a pointwise bootstrap band.

    Attributes:
        slope, intercept: the fit to all points.
        xs: where the band is evaluated (sorted).
        fit: the line at ``xs``.
        low, high: the band at ``xs``: pointwise percentile interval of the lines fitted to
            bootstrap resamples of the points (pairs).
        confidence: the band's nominal pointwise coverage.
        resamples: resamples used (those with constant ``x`` are dropped).
    """

    slope: float
    intercept: float
    xs: tuple[float, ...]
    fit: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    confidence: float
    resamples: int


def as_values(values: Values, what: str = "values") -> np.ndarray:
    """``values`` (a sequence, NumPy array or torch tensor) as a 1-D float64 array of finite
    numbers; anything else is an :class:`InputError`.

    Example:
        >>> as_values(torch.tensor([1, 2, 3]))
        array([1., 2., 3.])
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputTypeError(f"shiftpool.metrics.correlation: {what} must be numbers, "
                             f"got {values!r}") from None
    if array.ndim != 1:
        raise InputError(f"shiftpool.metrics.correlation: {what} must be one-dimensional, got "
                         f"shape {tuple(array.shape)}")
    if not np.isfinite(array).all():
        raise InputError(f"shiftpool.metrics.correlation: {what} hold a NaN or an infinity")
    return array


def ranks(values: Values) -> np.ndarray:
    """1-based ranks; tied values share their average rank.

    Example:
        >>> ranks([10.0, 30.0, 20.0, 30.0])
        array([1. , 3.5, 2. , 3.5])
    """
    x = as_values(values)
    less = (x[:, None] < x[None, :]).sum(0)
    equal = (x[:, None] == x[None, :]).sum(0)
    return less + (equal + 1) / 2


def pearson(x: Values, y: Values) -> float:
    """Pearson's correlation coefficient of two equally long sequences (>= 2 values, neither
    constant).

    Example:
        >>> pearson([1, 2, 3], [1, 3, 2])
        0.5
    """
    a, b = _pair(x, y, minimum=2)
    return float(_row_pearson(a[None], b[None])[0])


def spearman(x: Values, y: Values) -> float:
    """Spearman's rank correlation: Pearson's of the ranks (ties averaged).

    Example:
        >>> spearman([1, 2, 3, 4], [1, 4, 9, 16])
        1.0
    """
    a, b = _pair(x, y, minimum=2)
    return pearson(ranks(a), ranks(b))


def correlation(
    x: Values, y: Values, kind: str = "pearson", *,
    resamples: int = DEFAULT_RESAMPLES, permutations: int = DEFAULT_PERMUTATIONS,
    confidence: float = 0.95, interval: str = "bca", seed: int = 0,
    clusters: Sequence[object] | None = None,
) -> Correlation:
    """The correlation of ``x`` and ``y`` with a bootstrap interval and a permutation p-value.

    Args:
        x, y: equally long sequences (>= 3 pairs), neither constant.
        kind: ``"pearson"`` or ``"spearman"``.
        resamples: bootstrap resamples, >= 100.
        permutations: random pairings of the Monte Carlo test, >= 1; when ``n!`` is not
            larger, every pairing is enumerated instead (an exact p-value).
        confidence: the interval's coverage, in (0, 1).
        interval: ``"bca"`` (bias-corrected and accelerated) or ``"percentile"``.
        seed: seed of the resamples and permutations (independent streams).
        clusters: each pair's cluster (e.g. its method); with at least :data:`MIN_CLUSTERS`
            distinct ones, also :func:`cluster_bootstrap_interval` (same resamples and
            confidence).

    Raises:
        InputError: fewer than 3 pairs, unequal lengths, non-finite values, a constant
            variable (no correlation is defined), or a bad option.

    Example:
        >>> c = correlation([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5], "spearman", seed=1)
        >>> round(c.value, 4), round(c.p_value, 4), c.permutations
        (0.8286, 0.0583, 720)
    """
    kind = check_choice(kind, "shiftpool.metrics.correlation: kind", list(CORRELATIONS))
    a, b = _pair(x, y, minimum=3)
    value = pearson(a, b) if kind == "pearson" else spearman(a, b)
    low, high, used = bootstrap_interval(a, b, kind, resamples=resamples,
                                         confidence=confidence, interval=interval, seed=seed)
    p_value, p_method, counted = permutation_p_value(a, b, kind, permutations=permutations,
                                                     seed=seed)
    grouped, cluster_low, cluster_high = 0, math.nan, math.nan
    distinct = 0 if clusters is None else len(set(_cluster_labels(clusters, len(a))))
    if distinct >= MIN_CLUSTERS:
        grouped = distinct
        cluster_low, cluster_high, _ = cluster_bootstrap_interval(
            a, b, clusters, kind, resamples=resamples, confidence=confidence, seed=seed)
    return Correlation(kind, value, low, high, p_value, len(a), confidence, interval, used,
                       p_method, counted, seed, grouped, cluster_low, cluster_high)


def correlations(x: Values, y: Values, **options: Any) -> dict[str, Correlation]:
    """:func:`correlation` of each kind (``pearson``, ``spearman``), same options.

    Example:
        >>> sorted(correlations([1, 2, 3], [1, 3, 2], resamples=100))
        ['pearson', 'spearman']
    """
    return {kind: correlation(x, y, kind, **options) for kind in CORRELATIONS}


def bootstrap_interval(
    x: Values, y: Values, kind: str = "pearson", *, resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95, interval: str = "bca", seed: int = 0,
) -> tuple[float, float, int]:
    """``(low, high, resamples used)``: the bootstrap interval of the correlation, pairs
    resampled with replacement.

    BCa (Efron 1987): bias correction ``z0`` from the fraction of resampled coefficients below
    the estimate (ties count half; the fraction is kept inside ``[1/(2B), 1 - 1/(2B)]``), the
    acceleration from the jackknife. Resamples in which ``x`` or ``y`` is constant have no
    coefficient and are dropped; with none left the bounds are ``nan``.

    Example:
        >>> low, high, used = bootstrap_interval([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], resamples=200)
        >>> low, high
        (1.0, 1.0)
    """
    kind = check_choice(kind, "shiftpool.metrics.correlation: kind", list(CORRELATIONS))
    interval = check_choice(interval, "shiftpool.metrics.correlation: interval", list(INTERVALS))
    check_int(resamples, "shiftpool.metrics.correlation: resamples", minimum=100)
    _check_confidence(confidence)
    _check_seed(seed)
    a, b = _pair(x, y, minimum=3)
    estimate = pearson(a, b) if kind == "pearson" else spearman(a, b)
    rng = np.random.default_rng([seed, 0])
    values = np.concatenate([_resampled(a, b, kind, rows) for rows in
                             _index_blocks(rng, resamples, len(a))])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan, 0
    alpha = (1 - confidence) / 2
    levels = np.array([alpha, 1 - alpha])
    if interval == "bca":
        levels = _bca_levels(a, b, kind, estimate, values, levels)
    low, high = np.quantile(values, levels)
    return float(low), float(high), int(values.size)


def cluster_bootstrap_interval(
    x: Values, y: Values, clusters: Sequence[object], kind: str = "pearson", *,
    resamples: int = DEFAULT_RESAMPLES, confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float, int]:
    """``(low, high, resamples used)``: the percentile bootstrap interval of the correlation
    with whole clusters resampled with replacement (all pairs of each drawn cluster, as often
    as it is drawn).

    The interval for a question about clusters (methods) rather than their members (a
    method's models, one per seed): the members of a cluster are not independent draws.
    Resamples in which ``x`` or ``y`` is constant are dropped; with none left, ``nan``.

    Args:
        x, y: equally long sequences (>= 3 pairs).
        clusters: each pair's cluster label (any hashable), at least :data:`MIN_CLUSTERS`
            distinct.
        kind, resamples, confidence, seed: as for :func:`bootstrap_interval` (another
            random stream of the same seed).

    Raises:
        InputError: fewer than :data:`MIN_CLUSTERS` clusters, labels not one per pair, or a
            bad option.

    Example:
        >>> x = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
        >>> y = [0.2, 0.1, 0.4, 0.3, 0.6, 0.5, 0.8, 0.7]
        >>> low, high, used = cluster_bootstrap_interval(x, y, "aabbccdd", resamples=500)
        >>> 0 < low < high <= 1, used
        (True, 500)
    """
    kind = check_choice(kind, "shiftpool.metrics.correlation: kind", list(CORRELATIONS))
    check_int(resamples, "shiftpool.metrics.correlation: resamples", minimum=100)
    _check_confidence(confidence)
    _check_seed(seed)
    a, b = _pair(x, y, minimum=3)
    labels = _cluster_labels(clusters, len(a))
    names = list(dict.fromkeys(labels))
    if len(names) < MIN_CLUSTERS:
        raise InputError(f"shiftpool.metrics.correlation: a cluster bootstrap needs at least "
                         f"{MIN_CLUSTERS} clusters, got {len(names)}")
    members = [np.flatnonzero(np.array([label == name for label in labels])) for name in names]
    rng = np.random.default_rng([seed, 2])
    values = np.empty(resamples)
    for i, drawn in enumerate(rng.integers(0, len(names), size=(resamples, len(names)))):
        rows = np.concatenate([members[k] for k in drawn])
        values[i] = _resampled(a, b, kind, rows[None, :])[0]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan, 0
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high), int(values.size)


def _cluster_labels(clusters: Sequence[object], n: int) -> list[object]:
    labels = list(clusters)
    if len(labels) != n:
        raise InputError(f"shiftpool.metrics.correlation: clusters must give one label per "
                         f"pair ({n}), got {len(labels)}")
    return labels


def permutation_p_value(
    x: Values, y: Values, kind: str = "pearson", *, permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> tuple[float, str, int]:
    """``(p, method, pairings counted)``: the two-sided permutation p-value of "no association"
    (statistic ``|r|``).

    Exact when ``n! <= permutations``: the fraction of all ``n!`` pairings whose ``|r|`` is at
    least the observed one (the observed pairing included, so ``p >= 1/n!``). Otherwise Monte
    Carlo with the ``+1`` correction: ``(1 + #{|r_perm| >= |r|}) / (1 + permutations)``.

    Example:
        >>> permutation_p_value([1, 2, 3, 4], [1, 2, 3, 4])
        (0.08333333333333333, 'exact', 24)
        >>> p, method, _ = permutation_p_value(list(range(10)), list(range(10)), permutations=99)
        >>> p, method
        (0.01, 'monte carlo')
    """
    kind = check_choice(kind, "shiftpool.metrics.correlation: kind", list(CORRELATIONS))
    check_int(permutations, "shiftpool.metrics.correlation: permutations", minimum=1)
    _check_seed(seed)
    a, b = _pair(x, y, minimum=3)
    if kind == "spearman":
        a, b = ranks(a), ranks(b)
    ac, bc = a - a.mean(), b - b.mean()
    scale = math.sqrt(float(ac @ ac) * float(bc @ bc))
    observed = abs(float(ac @ bc)) / scale
    n = len(a)
    exact = math.factorial(n) <= permutations
    blocks = _all_permutations(n) if exact else _permutation_blocks(
        np.random.default_rng([seed, 1]), permutations, n)
    extreme = counted = 0
    for rows in blocks:
        r = np.abs(bc[rows] @ ac) / scale
        extreme += int((r >= observed - _TIE).sum())
        counted += len(rows)
    if exact:
        return extreme / counted, "exact", counted
    return (extreme + 1) / (counted + 1), "monte carlo", counted


def linear_fit_band(
    x: Values, y: Values, xs: Values | None = None, *, points: int = 50,
    resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
) -> LinearFit:
    """The least-squares line through ``(x, y)`` and its pointwise bootstrap band.

    Args:
        xs: where to evaluate the line and band; default ``points`` values evenly spread
            over ``[min(x), max(x)]``.

    Example:
        >>> fit = linear_fit_band([0, 1, 2, 3], [1, 3, 5, 7], points=3, resamples=200)
        >>> fit.slope, fit.intercept, fit.fit
        (2.0, 1.0, (1.0, 4.0, 7.0))
    """
    a, b = _pair(x, y, minimum=3, need_spread=False)
    if np.ptp(a) == 0:
        raise InputError("shiftpool.metrics.correlation: x is constant; no line can be fitted")
    check_int(resamples, "shiftpool.metrics.correlation: resamples", minimum=100)
    check_int(points, "shiftpool.metrics.correlation: points", minimum=2)
    _check_confidence(confidence)
    _check_seed(seed)
    grid = (np.linspace(a.min(), a.max(), points) if xs is None
            else np.sort(as_values(xs, "xs")))
    slope, intercept = _line(a[None], b[None])
    lines = []
    for rows in _index_blocks(np.random.default_rng([seed, 2]), resamples, len(a)):
        s, i = _line(a[rows], b[rows])
        keep = np.isfinite(s)
        lines.append(i[keep, None] + s[keep, None] * grid[None])
    fitted = np.concatenate(lines)
    alpha = (1 - confidence) / 2
    if len(fitted):
        low, high = np.quantile(fitted, [alpha, 1 - alpha], axis=0)
    else:
        low = high = np.full_like(grid, math.nan)
    line = intercept[0] + slope[0] * grid

    def floats(values: np.ndarray) -> tuple[float, ...]:
        return tuple(float(v) for v in values)

    return LinearFit(float(slope[0]), float(intercept[0]), floats(grid), floats(line),
                     floats(low), floats(high), confidence, len(fitted))


# -- helpers ---------------------------------------------------------------------------------


def _pair(x: Values, y: Values, minimum: int, need_spread: bool = True,
          ) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_values(x, "x"), as_values(y, "y")
    if len(a) != len(b):
        raise InputError(f"shiftpool.metrics.correlation: x and y differ in length: {len(a)} vs "
                         f"{len(b)}")
    if len(a) < minimum:
        raise InputError(f"shiftpool.metrics.correlation: needs at least {minimum} pairs, got "
                         f"{len(a)}")
    if need_spread:
        for name, values in (("x", a), ("y", b)):
            if np.ptp(values) == 0:
                raise InputError(f"shiftpool.metrics.correlation: {name} is constant "
                                 f"({values[0]:g}); no correlation is defined")
    return a, b


def _check_confidence(confidence: float) -> None:
    check_range(confidence, "shiftpool.metrics.correlation: confidence", 0, 1,
                low_open=True, high_open=True)


def _check_seed(seed: int) -> None:
    check_int(seed, "shiftpool.metrics.correlation: seed", minimum=0)


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson's r of each row pair of ``(rows, n)`` arrays; ``nan`` where a row is constant."""
    ac = a - a.mean(1, keepdims=True)
    bc = b - b.mean(1, keepdims=True)
    denominator = np.sqrt((ac * ac).sum(1) * (bc * bc).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ac * bc).sum(1) / denominator
    # a constant row has exactly zero spread; rounding may leave a tiny one: treat as constant
    spread = np.minimum(np.ptp(a, 1), np.ptp(b, 1))
    r[(denominator == 0) | (spread == 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def _row_ranks(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Average ranks within each resample ``values[rows[k]]``, from counts: the rank of an
    element is (resampled values below it) + (resampled values equal to it, + 1) / 2."""
    n = len(values)
    counts = np.zeros((len(rows), n))
    np.add.at(counts, (np.arange(len(rows))[:, None], rows), 1.0)
    below = counts @ (values[:, None] < values[None, :])
    same = counts @ (values[:, None] == values[None, :])
    per_value = below + (same + 1) / 2
    return np.take_along_axis(per_value, rows, axis=1)


def _resampled(a: np.ndarray, b: np.ndarray, kind: str, rows: np.ndarray) -> np.ndarray:
    if kind == "spearman":
        return _row_pearson(_row_ranks(a, rows), _row_ranks(b, rows))
    return _row_pearson(a[rows], b[rows])


def _bca_levels(a: np.ndarray, b: np.ndarray, kind: str, estimate: float, values: np.ndarray,
                levels: np.ndarray) -> np.ndarray:
    """The BCa quantile levels replacing the percentile ones ``levels``."""
    normal = NormalDist()
    count = len(values)
    below = (np.sum(values < estimate) + 0.5 * np.sum(values == estimate)) / count
    below = min(max(below, 0.5 / count), 1 - 0.5 / count)
    z0 = normal.inv_cdf(below)
    n = len(a)
    keep = ~np.eye(n, dtype=bool)
    leave_one_out = np.arange(n)[None, :].repeat(n, 0)[keep].reshape(n, n - 1)
    jackknife = _resampled(a, b, kind, leave_one_out)
    jackknife = jackknife[np.isfinite(jackknife)]
    acceleration = 0.0
    if len(jackknife) >= 2:
        d = jackknife.mean() - jackknife
        spread = float((d * d).sum())
        if spread > 0:
            acceleration = float((d**3).sum()) / (6 * spread**1.5)
    adjusted = []
    for level in levels:
        z = normal.inv_cdf(float(level))
        shift = z0 + z
        denominator = 1 - acceleration * shift
        if denominator <= 0:  # the correction breaks down: keep the percentile level
            adjusted.append(float(level))
            continue
        adjusted.append(normal.cdf(z0 + shift / denominator))
    return np.clip(np.array(adjusted), 0.0, 1.0)


def _line(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``(slope, intercept)`` of each row pair; ``nan`` where ``a`` is constant."""
    ac = a - a.mean(1, keepdims=True)
    sxx = (ac * ac).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (ac * (b - b.mean(1, keepdims=True))).sum(1) / sxx
    slope[(sxx == 0) | (np.ptp(a, 1) == 0)] = np.nan
    return slope, b.mean(1) - slope * a.mean(1)


def _block_rows(n: int) -> int:
    return max(1, _BLOCK_NUMBERS // max(n, 1))


def _index_blocks(rng: np.random.Generator, total: int, n: int) -> Iterator[np.ndarray]:
    """``total`` bootstrap index rows (draws with replacement from ``range(n)``), in blocks."""
    step = _block_rows(n)
    for start in range(0, total, step):
        yield rng.integers(0, n, size=(min(step, total - start), n))


def _permutation_blocks(rng: np.random.Generator, total: int, n: int) -> Iterator[np.ndarray]:
    """``total`` random permutations of ``range(n)``, in blocks."""
    step = _block_rows(n)
    for start in range(0, total, step):
        rows = min(step, total - start)
        yield rng.permuted(np.tile(np.arange(n), (rows, 1)), axis=1)


def _all_permutations(n: int) -> Iterator[np.ndarray]:
    """Every permutation of ``range(n)``, in blocks."""
    step = _block_rows(n)
    source = itertools.permutations(range(n))
    while True:
        block = list(itertools.islice(source, step))
        if not block:
            return
        yield np.array(block, dtype=np.int64)
