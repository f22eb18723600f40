"""Fair timing on a shared machine: interleaved rounds, per-round ratios, a CPU-time clock.

Each round runs every contender once, one after the other, so that a busy moment of the machine
hits them alike, and the order rotates from round to round, so that no contender always runs
first (after another's allocations, with colder caches); a contender's cost relative to another
is the median over rounds of the per-round ratio, reported with its interquartile range.
``clock="cpu"`` measures the calling thread's CPU time (:func:`time.thread_time`): with torch
on one thread, what the work itself cost, whatever else the machine runs. ``clock="wall"``
(:func:`time.perf_counter`) measures elapsed time, for quiet machines, several threads and GPUs.

Example:
    >>> import torch
    >>> x = torch.randn(64, 64)
    >>> times = interleaved({"mm": lambda: x @ x, "add": lambda: x + x}, rounds=3, warmup=1)
    >>> sorted(times), len(times["mm"])
    (['add', 'mm'], 3)
    >>> stats = ratio_stats(times["mm"], times["add"])
    >>> sorted(stats)
    ['median', 'q1', 'q3', 'rounds']
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch

__all__ = ["CLOCKS", "interleaved", "load_average", "quartiles", "ratio_stats"]

#: clock name -> (function returning seconds, what it measures).
CLOCKS: dict[str, tuple[Callable[[], float], str]] = {
    "cpu": (time.thread_time, "CPU time of the timing thread (time.thread_time)"),
    "wall": (time.perf_counter, "elapsed time (time.perf_counter)"),
}


def interleaved(
    runs: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    clock: str = "cpu",
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds of each callable in each of ``rounds`` rounds, after ``warmup`` untimed calls.

    Args:
        runs: name -> a callable doing one unit of work.
        rounds: timed rounds; each calls every callable once, round ``r`` starting at the
            ``r``-th (cyclically).
        warmup: untimed calls of each callable first (caches, kernels, allocator).
        clock: ``"cpu"`` or ``"wall"`` (see the module docstring).
        sync: called after each call before the clock is read (e.g. CUDA synchronise).

    Returns:
        name -> ``rounds`` times in seconds.
    """
    read = CLOCKS[clock][0]
    sync = sync or (lambda: None)
    for run in runs.values():
        for _ in range(warmup):
            run()
    sync()
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            start = read()
            runs[name]()
            sync()
            times[name].append(read() - start)
    return times


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """``(q1, median, q3)`` of ``values`` (inclusive method; one value gives it three times).

    Example:
        >>> quartiles([1.0, 2.0, 3.0, 4.0, 5.0])
        (2.0, 3.0, 4.0)
    """
    if len(values) == 1:
        return (values[0],) * 3
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def ratio_stats(numerators: Sequence[float], denominators: Sequence[float]) -> dict[str, float]:
    """Median and interquartile range of the per-round ratios ``numerators[r] / denominators[r]``.

    Example:
        >>> ratio_stats([2.0, 3.0, 4.0], [1.0, 1.0, 2.0])["median"]
        2.0
    """
    ratios = [a / b for a, b in zip(numerators, denominators, strict=True)]
    q1, median, q3 = quartiles(ratios)
    return {"median": median, "q1": q1, "q3": q3, "rounds": len(ratios)}


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, or ``None`` where the system has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def cuda_sync(device: str) -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` for a CUDA device, else ``None``."""
    return torch.cuda.synchronize if device.startswith("cuda") else None
