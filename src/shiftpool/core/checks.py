"""Value checks that raise one clear :class:`~shiftpool.core.errors.InputError` line.

Each check names the value (``what``), says what is allowed and shows what was given; it returns
the value so that checks can be written inline.

Example:
    >>> check_positive_int(3, "epochs")
    3
    >>> check_positive_int(0, "shiftpool.train: epochs")
    Traceback (most recent call last):
    ...
    shiftpool.core.errors.InputError: shiftpool.train: epochs must be an integer >= 1, got 0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

from shiftpool.core.errors import InputError, InputTypeError

T = TypeVar("T")


def is_int(value: object) -> bool:
    """True for ``int`` values that are not ``bool`` (``True`` is an ``int`` in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(value: object, what: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """``value`` if it is an integer (not a bool) in ``[minimum, maximum]``; else an error."""
    bounds = _bounds_text(minimum, maximum)
    if not is_int(value):
        raise InputTypeError(f"{what} must be an integer{bounds}, got {value!r}")
    assert isinstance(value, int)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise InputError(f"{what} must be an integer{bounds}, got {value!r}")
    return value


def check_positive_int(value: object, what: str) -> int:
    """``value`` if it is an integer ``>= 1``."""
    return check_int(value, what, minimum=1)


def check_finite(value: object, what: str) -> float:
    """``value`` as a float if it is a real, finite number (not a bool, NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(f"{what} must be a finite number, got {value!r}")
    if not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def check_range(value: object, what: str, low: float | None = None, high: float | None = None,
                *, low_open: bool = False, high_open: bool = False) -> float:
    """``value`` if it is a finite number inside the interval ``low .. high``.

    ``low_open``/``high_open`` exclude the end point; ``None`` leaves a side unbounded.
    """
    number = check_finite(value, what)
    below = low is not None and (number <= low if low_open else number < low)
    above = high is not None and (number >= high if high_open else number > high)
    if below or above:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lower = "-inf" if low is None else low
        upper = "inf" if high is None else high
        interval = f"{left}{lower}, {upper}{right}"
        raise InputError(f"{what} must be in {interval}, got {value!r}")
    return number


def check_choice(value: T, what: str, choices: Sequence[T]) -> T:
    """``value`` if it is one of ``choices``; the error lists them."""
    if value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise InputError(f"{what} must be one of {allowed}; got {value!r}")
    return value


def _bounds_text(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""
