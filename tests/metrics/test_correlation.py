"""Correlations: hand values, scipy where installed, exact enumerations, and simulations.

References: hand-computed coefficients; scipy.stats (pearsonr, spearmanr, rankdata,
permutation_test, bootstrap) when scipy is installed; every pairing enumerated by a plain
loop; simulated data whose true correlation is known (interval coverage, p-value uniformity).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from shiftpool.core.errors import InputError
from shiftpool.metrics.correlation import (
    MIN_CLUSTERS,
    Correlation,
    _row_ranks,
    bootstrap_interval,
    cluster_bootstrap_interval,
    correlation,
    correlations,
    linear_fit_band,
    pearson,
    permutation_p_value,
    ranks,
    spearman,
)
from shiftpool.metrics.stats import wilson_interval

try:
    from scipy import stats
except ImportError:  # scipy is not a dependency: the scipy checks skip without it
    stats = None

needs_scipy = pytest.mark.skipif(stats is None, reason="scipy is not installed")


def _plain_pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


# -- coefficients ------------------------------------------------------------------------------


def test_coefficients_by_hand() -> None:
    assert pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert pearson([1, 2, 3, 4], [3, 5, 7, 9]) == pytest.approx(1.0)  # y = 2x + 1
    assert pearson([1, 2, 3, 4], [9, 7, 5, 3]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == 1.0  # monotone, not linear
    assert pearson([1, 2, 3, 4], [1, 8, 27, 64]) < 1.0
    # ties: ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4): r = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / math.sqrt(10))
    assert list(ranks([3.0, 1.0, 3.0, 2.0, 3.0])) == [4.0, 1.0, 4.0, 2.0, 4.0]


def test_inputs_as_lists_arrays_and_tensors_agree() -> None:
    x, y = [0.1, 0.5, 0.2, 0.9], [1.0, 2.0, 1.5, 2.5]
    expected = _plain_pearson(x, y)
    assert pearson(np.array(x), np.array(y)) == pytest.approx(expected, abs=1e-12)
    assert pearson(torch.tensor(x), torch.tensor(y, dtype=torch.float64)) == pytest.approx(
        expected, abs=1e-7)


@needs_scipy
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coefficients_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=15)
    y = 0.5 * x + rng.normal(size=15)
    ties_x, ties_y = np.round(x), np.round(y)  # many ties
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert spearman(ties_x, ties_y) == pytest.approx(
        stats.spearmanr(ties_x, ties_y).statistic, abs=1e-12)
    assert list(ranks(ties_x)) == list(stats.rankdata(ties_x))


@needs_scipy
def test_resampled_ranks_match_rankdata_row_by_row() -> None:
    rng = np.random.default_rng(3)
    values = np.round(rng.normal(size=9), 1)
    values[2] = values[5]  # a tie before any resampling
    rows = rng.integers(0, 9, size=(50, 9))
    got = _row_ranks(values, rows)
    for row, ranked in zip(rows, got, strict=True):
        assert list(ranked) == list(stats.rankdata(values[row]))


# -- permutation p-values ----------------------------------------------------------------------


def _enumerated_p(x: list[float], y: list[float]) -> float:
    """Every pairing by a plain loop: the fraction with |r| at least the observed one."""
    observed = abs(_plain_pearson(x, y))
    pairings = list(itertools.permutations(y))
    extreme = sum(abs(_plain_pearson(x, list(p))) >= observed - 1e-10 for p in pairings)
    return extreme / len(pairings)


def test_exact_p_by_hand_and_by_enumeration() -> None:
    # n = 3, x = (1, 2, 3), y = (1, 3, 2): the six pairings give r = ±1, ±0.5, ±0.5: all >= 0.5
    assert permutation_p_value([1, 2, 3], [1, 3, 2]) == (1.0, "exact", 6)
    # perfectly ordered: only the pairing itself and its reverse reach |r| = 1
    assert permutation_p_value([1, 2, 3, 4], [1, 2, 3, 4])[0] == pytest.approx(2 / 24)
    x, y = [0.3, 0.1, 0.8, 0.5, 0.9, 0.2], [2.0, 1.1, 3.5, 2.2, 2.9, 1.8]
    p, method, counted = permutation_p_value(x, y)
    assert (method, counted) == ("exact", 720)
    assert p == pytest.approx(_enumerated_p(x, y), abs=1e-12)
    rank_p, _, _ = permutation_p_value(x, y, "spearman")
    assert rank_p == pytest.approx(_enumerated_p(list(ranks(x)), list(ranks(y))), abs=1e-12)


@needs_scipy
def test_exact_p_matches_scipy_permutation_test() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=6), rng.normal(size=6)
    for kind, statistic in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr)):
        reference = stats.permutation_test(
            (y,), lambda b, f=statistic: abs(f(x, b).statistic), permutation_type="pairings",
            alternative="greater", n_resamples=np.inf).pvalue
        assert permutation_p_value(x, y, kind)[0] == pytest.approx(reference, abs=1e-12)


def test_monte_carlo_p_of_perfect_correlation_is_the_minimum() -> None:
    x = np.arange(12.0)  # 12! pairings > 999: Monte Carlo
    for kind in ("pearson", "spearman"):
        p, method, counted = permutation_p_value(x, 3 * x + 1, kind, permutations=999)
        assert (p, method, counted) == (1 / 1000, "monte carlo", 999)
        p, _, _ = permutation_p_value(x, -x, kind, permutations=999)  # two-sided
        assert p == 1 / 1000


def test_monte_carlo_p_agrees_with_the_exact_one() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=7)
    y = 0.4 * x + rng.normal(size=7)
    exact, method, _ = permutation_p_value(x, y, permutations=5040)
    assert method == "exact"
    draws = 4000
    p, method, _ = permutation_p_value(x, y, permutations=draws, seed=7)
    assert method == "monte carlo"
    # (1 + k) / (1 + B) with k ~ Binomial(B, exact): the 99.9% interval of k / B holds exact
    k = round(p * (draws + 1)) - 1
    band = wilson_interval(k, draws, confidence=0.999)
    assert band.low <= exact <= band.high


def test_p_values_under_independence_are_uniform() -> None:
    """Independent data: P(p <= a) = a up to the Monte Carlo grid; the empirical CDF stays in
    the Dvoretzky-Kiefer-Wolfowitz band at level 0.001 and the 5% test rejects ~5%."""
    datasets, draws = 400, 199
    rng = np.random.default_rng(6)
    for kind in ("pearson", "spearman"):
        ps = np.array([permutation_p_value(rng.normal(size=12), rng.normal(size=12), kind,
                                           permutations=draws, seed=s)[0]
                       for s in range(datasets)])
        band = math.sqrt(math.log(2 / 0.001) / (2 * datasets))
        grid = np.arange(1, draws + 2) / (draws + 1)
        ecdf = (ps[None, :] <= grid[:, None] + 1e-12).mean(1)
        assert np.max(np.abs(ecdf - grid)) < band, kind
        rejections = wilson_interval(int((ps <= 0.05).sum()), datasets, confidence=0.999)
        assert rejections.low <= 0.05 <= rejections.high, kind


# -- bootstrap intervals -----------------------------------------------------------------------


def test_perfect_correlation_gives_a_point_interval() -> None:
    low, high, used = bootstrap_interval([1, 2, 3, 4, 5], [2, 4, 6, 8, 10], resamples=500)
    assert (low, high) == (1.0, 1.0)
    assert 0 < used <= 500  # resamples of one repeated point have no correlation: dropped


def test_degenerate_resamples_are_dropped_and_counted() -> None:
    # n = 3: a resample of one point repeated three times has no correlation (1/9 of draws)
    _, _, used = bootstrap_interval([1, 2, 3], [1, 3, 2], resamples=9000, seed=0)
    assert 7500 < used < 8500  # 8000 expected: 9000 * (1 - 3/27)


@needs_scipy
@pytest.mark.parametrize("method", ["percentile", "bca"])
@pytest.mark.parametrize("kind", ["pearson", "spearman"])
def test_bootstrap_matches_scipy(kind: str, method: str) -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=25)
    y = 0.6 * x + rng.normal(size=25)

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        if kind == "spearman":
            a, b = stats.rankdata(a, axis=axis), stats.rankdata(b, axis=axis)
        return stats.pearsonr(a, b, axis=axis).statistic

    reference = stats.bootstrap((x, y), statistic, paired=True, vectorized=True,
                                n_resamples=4000, method="BCa" if method == "bca" else method,
                                rng=np.random.default_rng(9)).confidence_interval
    low, high, _ = bootstrap_interval(x, y, kind, resamples=4000, interval=method, seed=1)
    # two Monte Carlo estimates of the same quantiles: within a few hundredths
    assert low == pytest.approx(reference.low, abs=0.04)
    assert high == pytest.approx(reference.high, abs=0.04)


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_interval_coverage_by_simulation(method: str) -> None:
    """Bivariate normal with rho = 0.5, n = 30: the 95% interval covers rho in about 95% of
    data sets. The bootstrap is approximate, so the test asks that coverage is not
    demonstrably outside [0.90, 0.975] (99.9% Wilson interval of the simulated rate)."""
    rho, n, datasets = 0.5, 30, 300
    rng = np.random.default_rng(10)
    covered = 0
    for s in range(datasets):
        x = rng.normal(size=n)
        y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=n)
        low, high, _ = bootstrap_interval(x, y, resamples=500, interval=method, seed=s)
        covered += low <= rho <= high
    rate = wilson_interval(covered, datasets, confidence=0.999)
    assert rate.high >= 0.90 and rate.low <= 0.975, (covered, datasets)


def test_correlation_is_seeded_and_complete() -> None:
    x, y = [0.9, 0.8, 0.7, 0.55, 0.5, 0.4, 0.3, 0.2, 0.15], [3, 1, 2, 6, 5, 4, 2, 7, 5]
    first = correlation(x, y, "spearman", resamples=300, permutations=300, seed=3)
    assert first == correlation(x, y, "spearman", resamples=300, permutations=300, seed=3)
    other = correlation(x, y, "spearman", resamples=300, permutations=300, seed=4)
    assert (other.low, other.p_value) != (first.low, first.p_value)
    assert first.value == pytest.approx(spearman(x, y))
    assert first.low <= first.value <= first.high
    assert (first.n, first.p_method, first.permutations) == (9, "monte carlo", 300)
    assert Correlation.from_dict(first.to_dict()) == first
    both = correlations(x, y, resamples=300, permutations=300)
    assert sorted(both) == ["pearson", "spearman"]
    assert "r=" in str(first)


# -- regression band ---------------------------------------------------------------------------


def test_linear_fit_matches_polyfit_and_the_band_holds_it() -> None:
    rng = np.random.default_rng(11)
    x = rng.uniform(0, 1, size=20)
    y = 2 - 3 * x + 0.2 * rng.normal(size=20)
    fit = linear_fit_band(x, y, points=11, resamples=500)
    slope, intercept = np.polyfit(x, y, 1)
    assert (fit.slope, fit.intercept) == (pytest.approx(slope), pytest.approx(intercept))
    assert len(fit.xs) == 11 and fit.xs[0] == x.min() and fit.xs[-1] == x.max()
    assert all(lo <= f <= hi for lo, f, hi in zip(fit.low, fit.fit, fit.high, strict=True))
    assert 400 <= fit.resamples <= 500


# -- bad inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: correlation([1, 2], [1, 2]), "at least 3 pairs"),
        (lambda: correlation([1, 2, 3], [1, 2]), "differ in length"),
        (lambda: correlation([1, 1, 1], [1, 2, 3]), "x is constant"),
        (lambda: correlation([1, 2, 3], [5, 5, 5]), "y is constant"),
        (lambda: correlation([1, 2, math.nan], [1, 2, 3]), "NaN"),
        (lambda: correlation([[1, 2, 3]], [[1, 2, 3]]), "one-dimensional"),
        (lambda: correlation(["a", "b", "c"], [1, 2, 3]), "must be numbers"),
        (lambda: correlation([1, 2, 3], [1, 3, 2], "kendall"), "kendall"),
        (lambda: correlation([1, 2, 3], [1, 3, 2], interval="normal"), "normal"),
        (lambda: correlation([1, 2, 3], [1, 3, 2], resamples=10), "resamples"),
        (lambda: correlation([1, 2, 3], [1, 3, 2], permutations=0), "permutations"),
        (lambda: correlation([1, 2, 3], [1, 3, 2], confidence=1.0), "confidence"),
        (lambda: correlation([1, 2, 3], [1, 3, 2], seed=-1), "seed"),
        (lambda: linear_fit_band([1, 1, 1], [1, 2, 3]), "x is constant"),
    ],
)
def test_bad_inputs_are_one_line_errors(call, message: str) -> None:
    with pytest.raises(InputError) as error:
        call()
    assert message in str(error.value) and "\n" not in str(error.value)


# --- the cluster bootstrap --------------------------------------------------------------------


def _clustered(seed: int, methods: int = 8, seeds: int = 3, noise: float = 0.1):
    """Models in clusters: each method's own (x, y), uncorrelated across methods, and its
    seeds close to it."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(methods, 2))
    points = centre.repeat(seeds, axis=0) + noise * rng.normal(size=(methods * seeds, 2))
    return points[:, 0], points[:, 1], np.arange(methods).repeat(seeds)


@pytest.mark.parametrize("kind", ["pearson", "spearman"])
def test_models_duplicated_within_their_clusters_leave_the_cluster_interval_unchanged(kind):
    # the point of resampling clusters: more seeds of the same methods are no new evidence.
    # Pearson is unchanged by repeating every point; Spearman's ties keep its ranks' order too
    x, y = [0.3, 0.9, 0.1, 0.5, 0.7, 0.2], [0.4, 0.8, 0.3, 0.2, 0.9, 0.1]
    once = cluster_bootstrap_interval(x, y, range(6), kind, resamples=400, seed=3)
    thrice = cluster_bootstrap_interval(np.repeat(x, 3), np.repeat(y, 3), np.repeat(range(6), 3),
                                        kind, resamples=400, seed=3)
    np.testing.assert_allclose(thrice, once, rtol=0, atol=1e-12)
    # while the bootstrap over models takes the copies for evidence and narrows
    low, high, _ = bootstrap_interval(x, y, kind, resamples=400, interval="percentile")
    low3, high3, _ = bootstrap_interval(np.repeat(x, 3), np.repeat(y, 3), kind, resamples=400,
                                        interval="percentile")
    assert high3 - low3 < 0.8 * (high - low)


def test_cluster_interval_covers_a_null_across_methods_where_the_model_interval_does_not():
    """Simulated methods with no correlation across them, three close seeds each: the
    bootstrap over models covers the truth (0) far less often than nominal, the cluster
    bootstrap close to nominal (percentile, 8 clusters: somewhat below)."""
    cover_models = cover_clusters = 0
    runs = 120
    for seed in range(runs):
        x, y, methods = _clustered(seed)
        low, high, _ = bootstrap_interval(x, y, resamples=300, interval="percentile", seed=seed)
        cover_models += low <= 0 <= high
        low, high, _ = cluster_bootstrap_interval(x, y, methods, resamples=300, seed=seed)
        cover_clusters += low <= 0 <= high
    models, clusters = cover_models / runs, cover_clusters / runs
    assert models < 0.8, models
    assert clusters > 0.85 and clusters > models + 0.1, (clusters, models)


def test_correlation_adds_the_cluster_interval_from_enough_clusters():
    x, y, methods = _clustered(0)
    c = correlation(x, y, resamples=300, permutations=99, clusters=methods)
    assert c.clusters == 8 and c.cluster_low < c.value < c.cluster_high
    low, high, _ = cluster_bootstrap_interval(x, y, methods, resamples=300)
    assert (c.cluster_low, c.cluster_high) == (low, high)
    assert Correlation.from_dict(c.to_dict()) == c
    few = correlation(x[:9], y[:9], resamples=300, permutations=99, clusters=methods[:9])
    assert few.clusters == 0 and math.isnan(few.cluster_low) and math.isnan(few.cluster_high)
    assert few.to_dict()["cluster_low"] is None
    plain = correlation(x, y, resamples=300, permutations=99)
    assert plain.clusters == 0 and (plain.low, plain.high) == (c.low, c.high)


def test_correlation_read_from_an_older_record_has_no_cluster_interval():
    old = {"kind": "pearson", "value": 0.5, "low": 0.1, "high": 0.8, "p_value": 0.2, "n": 6}
    c = Correlation.from_dict(old)
    assert c.clusters == 0 and math.isnan(c.cluster_low)


@pytest.mark.parametrize(("clusters", "message"), [
    ("aabbcc", rf"needs at least {MIN_CLUSTERS} clusters, got 3"),
    ("aabbccd", r"one label per pair \(6\), got 7"),
])
def test_cluster_bootstrap_refuses_too_few_clusters_and_misplaced_labels(clusters, message):
    with pytest.raises(InputError, match=message):
        cluster_bootstrap_interval([1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5], clusters,
                                   resamples=100)
