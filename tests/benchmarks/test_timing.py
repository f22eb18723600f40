"""The fair-timing helpers: interleaved rotating rounds, per-round ratios with their IQR."""

from __future__ import annotations

import pytest

from shiftpool.benchmarks.timing import CLOCKS, interleaved, quartiles, ratio_stats


def test_every_round_calls_every_contender_once_starting_at_a_rotating_position():
    calls: list[str] = []
    runs = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = interleaved(runs, rounds=4, warmup=1, clock="cpu")
    assert calls[:3] == ["a", "b", "c"]  # warm-up, in order
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert {name: len(values) for name, values in times.items()} == {"a": 4, "b": 4, "c": 4}


@pytest.mark.parametrize("clock", sorted(CLOCKS))
def test_both_clocks_give_non_negative_seconds(clock):
    times = interleaved({"sum": lambda: sum(range(1000))}, rounds=2, warmup=0, clock=clock)
    assert all(t >= 0 for t in times["sum"])


def test_ratio_stats_are_the_quartiles_of_per_round_ratios():
    stats = ratio_stats([2.0, 6.0, 3.0, 10.0, 4.0], [1.0, 2.0, 1.0, 2.0, 1.0])
    assert stats == {"median": 3.0, "q1": 3.0, "q3": 4.0, "rounds": 5}
    assert quartiles([7.0]) == (7.0, 7.0, 7.0)
