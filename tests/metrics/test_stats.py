"""Intervals: known quantiles, hand-checked values, and coverage by simulation."""

from __future__ import annotations

import math

import pytest
import torch

from shiftpool.metrics.stats import (
    Estimate,
    MeanMeter,
    ProportionMeter,
    mean_interval,
    t_quantile,
    wilson_interval,
)

SIMULATIONS = 500


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.7062), (2, 4.3027), (3, 3.1824), (5, 2.5706), (10, 2.2281), (30, 2.0423),
     (120, 1.9799), (5000, 1.9604)],
)
def test_t_quantile_matches_tables(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_wilson_interval_by_hand() -> None:
    # p = 0.9, n = 100, z = 1.95996: centre 0.8855, half-width 0.0596
    e = wilson_interval(90, 100)
    assert (e.value, e.n, e.method) == (0.9, 100, "wilson")
    assert e.low == pytest.approx(0.82564, abs=1e-4)
    assert e.high == pytest.approx(0.94477, abs=1e-4)
    assert wilson_interval(10, 10).high == 1.0
    assert wilson_interval(0, 10).low == 0.0
    assert 0 < wilson_interval(0, 10).high < 0.35


def test_proportion_interval_covers_at_the_nominal_rate() -> None:
    g = torch.Generator().manual_seed(0)
    p, n = 0.85, 300
    hits = torch.rand(SIMULATIONS, n, generator=g) < p
    covered = 0
    for row in hits:
        meter = ProportionMeter()
        meter.update(row[:100])
        meter.update(row[100:])
        e = meter.estimate()
        covered += e.low <= p <= e.high
    assert 0.92 <= covered / SIMULATIONS <= 0.98


def test_mean_interval_covers_at_the_nominal_rate() -> None:
    g = torch.Generator().manual_seed(1)
    values = torch.rand(SIMULATIONS, 12, generator=g) ** 2  # skewed, mean 1/3
    covered = 0
    for row in values:
        meter = MeanMeter()
        meter.update(row[:5])
        meter.update(row[5:])
        e = meter.estimate()
        covered += e.low <= 1 / 3 <= e.high
    assert 0.92 <= covered / SIMULATIONS <= 0.98


def test_mean_meter_merges_batches_exactly() -> None:
    values = torch.randn(1000, dtype=torch.float64) * 3 + 1e4
    meter = MeanMeter()
    for chunk in values.split(37):
        meter.update(chunk)
    e = meter.estimate()
    direct = mean_interval(1000, values.mean().item(), values.var().item())
    assert e.n == 1000
    assert e.value == pytest.approx(direct.value, rel=1e-6)
    assert e.high - e.value == pytest.approx(direct.high - direct.value, rel=1e-3)


def test_mean_of_one_value_has_no_interval() -> None:
    e = mean_interval(1, 0.5, math.nan)
    assert e.value == 0.5 and math.isnan(e.low) and math.isnan(e.high)
    assert e.to_dict()["low"] is None
    assert Estimate.from_dict(e.to_dict()).value == 0.5


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: wilson_interval(0, 0), "n >= 1"),
        (lambda: wilson_interval(5, 4), "successes"),
        (lambda: wilson_interval(1, 2, confidence=1.0), "confidence"),
        (lambda: mean_interval(0, 0.0, 0.0), "n >= 1"),
        (lambda: t_quantile(0.975, 0), "df"),
        (lambda: MeanMeter().estimate(), "n >= 1"),
    ],
)
def test_bad_input_raises(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
