"""Image shifts with a different integer offset per image, in one batched gather.

The implementation lives in :mod:`shiftpool.core.shifts` (the data loader's augmentation uses
the same code); this module keeps the metrics' names. Modes: ``circular`` (wrap around),
``zero`` (a fill value), ``reflect`` (mirror at the border), ``crop`` (Zhang's window).

Example:
    >>> import torch
    >>> shift_images(torch.arange(4.).view(1, 1, 1, 4), torch.tensor([0, 1]), "circular")
    tensor([[[[3., 0., 1., 2.]]]])
"""

from __future__ import annotations

from shiftpool.core.shifts import (
    SHIFT_MODES,
    ShiftMode,
    center_offset,
    check_shift_mode,
    draw_offsets,
    shift_images,
)

__all__ = [
    "SHIFT_MODES",
    "ShiftMode",
    "center_offset",
    "check_shift_mode",
    "draw_offsets",
    "shift_images",
]
