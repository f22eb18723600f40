"""JSON has no NaN: the helpers that turn NaN into ``None`` (``null``), written once.

Example:
    >>> without_nan({"acc": float("nan"), "n": [1.0, float("nan")]})
    {'acc': None, 'n': [1.0, None]}
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def finite_or_none(value: object) -> object:
    """``None`` for a float NaN or infinity, else ``value`` unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def without_nan(value: object) -> object:
    """``value`` with every non-finite float inside mappings, lists and tuples made ``None``."""
    if isinstance(value, Mapping):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(v) for v in value]
    return finite_or_none(value)
