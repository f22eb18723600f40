"""Paired tests: McNemar against exact enumeration, the paired t against a hand-computed
example and closed forms, the bootstrap's coverage by a seeded simulation (with an interval)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from shiftpool.core.errors import InputError
from shiftpool.metrics import paired
from shiftpool.metrics.paired import (
    PAIRED_BOOTSTRAP,
    PAIRED_T,
    mcnemar,
    mcnemar_outcomes,
    paired_bootstrap,
    paired_difference,
    paired_t,
)
from shiftpool.metrics.stats import t_two_sided_p, wilson_interval


def _pmf(x: int, m: int) -> Fraction:
    return Fraction(math.comb(m, x), 2**m)


def _enumerated_p(b: int, c: int) -> tuple[Fraction, Fraction]:
    """(exact p, mid-p) by definition: every count at least as far from m/2 as the observed one
    (mid-p: those as far count half), over all m + 1 outcomes of Binomial(m, 1/2)."""
    m = b + c
    far = abs(b - Fraction(m, 2))
    more = sum((_pmf(x, m) for x in range(m + 1) if abs(x - Fraction(m, 2)) > far), Fraction())
    same = sum((_pmf(x, m) for x in range(m + 1) if abs(x - Fraction(m, 2)) == far), Fraction())
    return min(Fraction(1), more + same), more + same / 2


def test_mcnemar_matches_exact_enumeration_of_every_small_case() -> None:
    for m in range(0, 15):
        for b in range(m + 1):
            test = mcnemar(b, m - b)
            exact, mid = _enumerated_p(b, m - b)
            assert test.p_value == pytest.approx(float(exact), abs=1e-14), (b, m - b)
            if 2 * b != m:
                assert test.mid_p == pytest.approx(float(mid), abs=1e-14), (b, m - b)
            else:  # b = c: the doubled one-sided mid-p (Fagerland et al. 2013) is 1
                assert test.mid_p == 1.0
            assert test.mid_p <= test.p_value


def test_mcnemar_known_values() -> None:
    # b = 1, c = 9: 2 * (1 + 10) / 1024 = 0.021484375; mid-p = 2 * (1 + 5) / 1024
    test = mcnemar(1, 9, n=100)
    assert test.p_value == 22 / 1024 and test.mid_p == 12 / 1024
    assert test.difference == pytest.approx(-0.08)
    assert mcnemar(0, 0).p_value == 1.0
    assert mcnemar(0, 5).p_value == 2 / 32


def test_mcnemar_large_counts_agree_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for b, c in ((40, 61), (180, 230), (9000, 9400), (10500, 10100)):
        expected = stats.binomtest(min(b, c), b + c, 0.5).pvalue
        assert mcnemar(b, c).p_value == pytest.approx(expected, rel=1e-9)


def test_mcnemar_from_outcomes_counts_the_discordant_pairs() -> None:
    a = torch.tensor([True, True, False, True, False, False])
    b = torch.tensor([False, True, True, False, False, False])
    test = mcnemar_outcomes(a, b)
    assert (test.better, test.worse, test.n) == (2, 1, 6)
    assert mcnemar_outcomes(np.array([1, 0, 1]), [1, 1, 0]).p_value == 1.0


def test_paired_t_by_hand() -> None:
    # d = 0.02, 0.03, 0.01: mean 0.02, sd 0.01, se 0.01 / sqrt(3), t = 2 sqrt(3) = 3.4641, df 2;
    # for df 2, P(|T| <= t) = t / sqrt(2 + t^2) = sqrt(12 / 14): p = 1 - sqrt(6 / 7) = 0.074180;
    # interval 0.02 -+ 4.302653 * 0.0057735 = [-0.004841, 0.044841]
    test = paired_t([0.90, 0.92, 0.91], [0.88, 0.89, 0.90])
    assert test.statistic == pytest.approx(2 * math.sqrt(3))
    assert test.df == 2
    assert test.p_value == pytest.approx(1 - math.sqrt(6 / 7), abs=1e-9)
    assert test.difference.value == pytest.approx(0.02)
    assert test.difference.low == pytest.approx(-0.004841, abs=1e-6)
    assert test.difference.high == pytest.approx(0.044841, abs=1e-6)
    assert (test.difference.n, test.difference.method) == (3, PAIRED_T)


def test_paired_t_edge_cases() -> None:
    one = paired_t([0.9], [0.8])
    assert one.difference.value == pytest.approx(0.1) and math.isnan(one.p_value)
    same = paired_t([0.75, 0.5], [0.5, 0.25])  # a constant difference: t is infinite, p is 0
    assert same.statistic == math.inf and same.p_value == 0.0
    zero = paired_t([0.9, 0.8], [0.9, 0.8])
    assert math.isnan(zero.statistic) and zero.to_dict()["p_value"] is None


def test_paired_t_agrees_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    g = np.random.default_rng(0)
    for n in (2, 3, 5, 30):
        a, b = g.normal(size=n), g.normal(size=n) + 0.3
        ours, theirs = paired_t(a, b), stats.ttest_rel(a, b)
        assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-12)
        assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-7)


@pytest.mark.parametrize("t", [0.3, 1.0, 2.5, 12.0])
def test_t_p_value_closed_forms(t: float) -> None:
    assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-12)
    assert t_two_sided_p(-t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-12)
    assert t_two_sided_p(math.inf, 4) == 0.0


def test_bootstrap_interval_is_near_the_normal_one_for_a_large_sample() -> None:
    # binary pairs: b = 60 better, c = 30 worse of n = 1000; the difference's standard error is
    # sqrt((b + c) / n - d^2) / sqrt(n)
    a = np.zeros(1000)
    b = np.zeros(1000)
    a[:60], b[60:90], a[90:800], b[90:800] = 1, 1, 1, 1
    e = paired_bootstrap(a, b, resamples=4000, seed=1)
    d, se = 0.03, math.sqrt(0.09 - 0.03**2) / math.sqrt(1000)
    assert (e.value, e.n, e.method) == (pytest.approx(d), 1000, PAIRED_BOOTSTRAP)
    assert e.low == pytest.approx(d - 1.96 * se, abs=0.003)
    assert e.high == pytest.approx(d + 1.96 * se, abs=0.003)
    assert paired_bootstrap(a, b, resamples=4000, seed=1) == e  # seeded: reproducible


def _simulated_pairs(g: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs with P(a only) = 0.10, P(b only) = 0.05, P(both) = 0.70: true difference 0.05."""
    u = torch.rand(n, generator=g)
    a = (u < 0.80)
    b = (u < 0.70) | ((u >= 0.80) & (u < 0.85))
    return a, b


def test_bootstrap_covers_at_the_nominal_rate() -> None:
    g = torch.Generator().manual_seed(2)
    simulations, covered, covered_strata = 300, 0, 0
    for i in range(simulations):
        a, b = _simulated_pairs(g, 150)
        e = paired_bootstrap(a, b, resamples=400, seed=i)
        covered += e.low <= 0.05 <= e.high
        strata = [_simulated_pairs(g, 50) for _ in range(3)]
        s = paired_bootstrap([x for x, _ in strata], [y for _, y in strata], resamples=400,
                             seed=i)
        covered_strata += s.low <= 0.05 <= s.high
    for count in (covered, covered_strata):
        rate = wilson_interval(count, simulations, confidence=0.99)
        assert rate.low <= 0.95 <= rate.high, rate


def test_bootstrap_of_few_values_draws_the_same_distribution_as_resampling(monkeypatch) -> None:
    # counts of the distinct values (multinomial) and resampled indices: the same distribution
    g = torch.Generator().manual_seed(4)
    a, b = _simulated_pairs(g, 400)
    counts = paired_bootstrap(a, b, resamples=6000, seed=1)
    monkeypatch.setattr(paired, "_FEW_VALUES", 0)
    indices = paired_bootstrap(a, b, resamples=6000, seed=1)
    assert counts.value == indices.value
    assert counts.low == pytest.approx(indices.low, abs=0.004)
    assert counts.high == pytest.approx(indices.high, abs=0.004)


def test_bootstrap_of_continuous_outcomes_covers_at_the_nominal_rate() -> None:
    g = torch.Generator().manual_seed(5)
    simulations, covered = 200, 0
    for i in range(simulations):
        x = torch.randn(80, generator=g)
        e = paired_bootstrap(x + 0.3 + 0.5 * torch.randn(80, generator=g), x, resamples=400,
                             seed=i)
        covered += e.low <= 0.3 <= e.high
    rate = wilson_interval(covered, simulations, confidence=0.99)
    assert rate.low <= 0.95 <= rate.high, rate


def test_paired_difference_over_seeds_and_images() -> None:
    g = torch.Generator().manual_seed(3)
    pairs = [_simulated_pairs(g, 200) for _ in range(3)]
    values = [float(a.float().mean()) for a, _ in pairs]
    base = [float(b.float().mean()) for _, b in pairs]
    d = paired_difference(values, base, [a for a, _ in pairs], [b for _, b in pairs],
                          resamples=500)
    assert d.difference == paired_t(values, base).difference  # the reported interval: seeds
    assert d.seeds is not None and d.seeds.df == 2
    assert d.images is not None and d.images.value == pytest.approx(d.difference.value)
    assert d.images.n == 600 and len(d.mcnemar_per_seed) == 3
    pooled = d.mcnemar
    assert pooled is not None
    assert pooled.better == sum(t.better for t in d.mcnemar_per_seed)
    assert pooled.p_value == mcnemar(pooled.better, pooled.worse).p_value
    assert d.marks() == ("*" if d.seeds.p_value < 0.05 else "") + (
        "†" if pooled.p_value < 0.05 else "")
    saved = d.to_dict()
    assert saved["mcnemar"]["better"] == pooled.better and len(saved["mcnemar_per_seed"]) == 3


def test_paired_difference_of_one_seed() -> None:
    d = paired_difference([0.8], [0.7], [[1.0, 0.6]], [[0.9, 0.5]], resamples=100)
    assert d.seeds is None and d.mcnemar is None  # not binary: bootstrap only
    assert d.difference.method == PAIRED_BOOTSTRAP and d.marks() == ""
    bare = paired_difference([0.8], [0.7])
    assert math.isnan(bare.difference.low) and bare.images is None


@pytest.mark.parametrize(("call", "match"), [
    (lambda: mcnemar(-1, 2), "better must be a count"),
    (lambda: mcnemar(1, 2, n=2), "below the discordant"),
    (lambda: mcnemar_outcomes([0.5, 1.0], [1, 0]), "binary"),
    (lambda: paired_t([1, 2], [1, 2, 3]), "must align"),
    (lambda: paired_t([], []), "no values"),
    (lambda: paired_t([1.0, math.nan], [1, 2]), "finite"),
    (lambda: paired_t("ab", "cd"), "vector of numbers"),
    (lambda: paired_bootstrap([1, 0], [0, 1], resamples=10), "resamples"),
    (lambda: paired_bootstrap([[1, 0]], [[0, 1], [1, 1]]), "as many baseline"),
    (lambda: paired_difference([0.8], [0.7], [[1, 0]], None), "of both methods"),
    (lambda: paired_difference([0.8, 0.9], [0.7, 0.8], [[1]], [[0]]), "outcomes for 1"),
])  # fmt: skip
def test_bad_input_is_one_line(call, match) -> None:
    with pytest.raises(InputError, match=match) as error:
        call()
    assert "\n" not in str(error.value)
