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

from shiftpool.downsample import Downsample, create_downsample, list_downsamples

__version__ = "0.1.0"

# Higher layers load on first use, so that ``import shiftpool`` stays light.
_LAZY = {
    "convert": ("shiftpool.convert", "convert"),
    "create_model": ("shiftpool.models", "create_model"),
    "list_models": ("shiftpool.models", "list_models"),
    "metrics": ("shiftpool.metrics", None),
    "models": ("shiftpool.models", None),
    "data": ("shiftpool.data", None),
}

__all__ = [
    "Downsample",
    "__version__",
    "convert",
    "create_downsample",
    "create_model",
    "list_downsamples",
    "list_models",
    "metrics",
    "models",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'shiftpool' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)
