"""shiftpool: shift-aware downsampling for CNNs and translation-invariance metrics.

Example:
    >>> import torch, shiftpool
    >>> pool = shiftpool.create_downsample("aps", channels=8, stride=2)
    >>> pool(torch.randn(4, 8, 32, 32)).shape
    torch.Size([4, 8, 16, 16])
"""

from __future__ import annotations

import importlib
from typing import Any

from shiftpool.convert import convert
from shiftpool.core.errors import InputError
from shiftpool.downsample import Downsample, create_downsample, list_downsamples
from shiftpool.models import create_model, list_models

__version__ = "0.1.0"

# Subpackages above the operators load on first use, so that ``import shiftpool`` stays light.
# ``convert`` is imported eagerly: as a lazy name it would be shadowed by its own module.
_LAZY = ("metrics", "data", "train", "report", "harness", "core")

__all__ = [
    "Downsample",
    "InputError",
    "__version__",
    "convert",
    "create_downsample",
    "create_model",
    "list_downsamples",
    "list_models",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'shiftpool' has no attribute {name!r}")
    return importlib.import_module(f"shiftpool.{name}")
