"""Image shifts with a different integer offset per image, and the seeded offsets of a run.

The shifts live in :mod:`shiftpool.core.shifts` (the data loader's augmentation uses the same
code); this module keeps the metrics' names. Modes: ``circular`` (wrap around), ``zero`` (a fill
value), ``reflect`` (mirror at the border), ``crop`` (Zhang's window).

:class:`OffsetStream` gives the offsets of an evaluation: those of image ``i`` depend only on the
seed, the stream's name (e.g. ``"pair/circular"``) and ``i`` — not on the batch size, the model
or the device — so every method evaluated with one seed on the same images in the same order
sees the same shifts of them (the ground of paired tests between methods).

Example:
    >>> import torch
    >>> shift_images(torch.arange(4.).view(1, 1, 1, 4), torch.tensor([0, 1]), "circular")
    tensor([[[[3., 0., 1., 2.]]]])
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from shiftpool.core.errors import InputError
from shiftpool.core.shifts import (
    SHIFT_MODES,
    OffsetRanges,
    ShiftMode,
    center_offset,
    check_shift_mode,
    default_ranges,
    draw_in_ranges,
    draw_offsets,
    shift_images,
)

__all__ = [
    "SHIFT_MODES",
    "OffsetRanges",
    "OffsetStream",
    "ShiftMode",
    "center_offset",
    "check_shift_mode",
    "default_ranges",
    "draw_in_ranges",
    "draw_offsets",
    "shift_images",
    "stream_seed",
]

#: Images per block of an :class:`OffsetStream` (each block has its own generator).
BLOCK = 4096


def stream_seed(seed: int, name: str, block: int) -> int:
    """The 63-bit seed of one block of a stream (a hash: nearby seeds give unrelated blocks).

    Example:
        >>> stream_seed(0, "pair/circular", 0) == stream_seed(0, "pair/circular", 0)
        True
        >>> stream_seed(0, "pair/circular", 0) == stream_seed(1, "pair/circular", 0)
        False
    """
    digest = hashlib.blake2b(f"shiftpool/{seed}/{name}/{block}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1)


class OffsetStream:
    """Per-image offsets, ``views`` of them per image, reproducible image by image.

    Image ``i``'s offsets come from block ``i // BLOCK``, drawn with a generator seeded by
    :func:`stream_seed` ``(seed, name, block)``: in each block, for each view, all ``dy`` then
    all ``dx`` (:func:`draw_in_ranges`), each uniform on its inclusive range. Taking the images
    in batches of any size gives the same offsets.

    Args:
        seed: the evaluation's seed.
        name: the stream, e.g. ``"pair/zero"``; different names give independent offsets.
        ranges: inclusive ``((dy_low, dy_high), (dx_low, dx_high))``.
        views: offsets per image.

    Example:
        >>> a = OffsetStream(0, "pair/circular", ((-3, 2), (-3, 2)))
        >>> b = OffsetStream(0, "pair/circular", ((-3, 2), (-3, 2)))
        >>> first = torch.cat([a.take(3), a.take(5)])  # batches of 3 and 5
        >>> first.shape, torch.equal(first, b.take(8))  # one batch of 8
        (torch.Size([8, 2, 2]), True)
    """

    def __init__(self, seed: int, name: str, ranges: OffsetRanges, views: int = 2) -> None:
        for low, high in ranges:
            if low > high:
                raise InputError(
                    f"shiftpool.metrics: an offset range must have low <= high, got {ranges}"
                )
        self.seed, self.name, self.ranges, self.views = seed, name, ranges, views
        self.position = 0
        self._block: tuple[int, Tensor] | None = None

    def take(self, n: int) -> Tensor:
        """The offsets of the next ``n`` images: ``(n, views, 2)`` int64 on the CPU."""
        out = self.at(self.position, n)
        self.position += n
        return out

    def at(self, start: int, n: int) -> Tensor:
        """The offsets of images ``start .. start + n - 1``: ``(n, views, 2)``."""
        parts, index, end = [], start, start + n
        while index < end:
            block, within = divmod(index, BLOCK)
            count = min(end - index, BLOCK - within)
            parts.append(self._block_offsets(block)[within : within + count])
            index += count
        if not parts:
            return torch.zeros(0, self.views, 2, dtype=torch.long)
        return torch.cat(parts)

    def _block_offsets(self, block: int) -> Tensor:
        if self._block is None or self._block[0] != block:
            generator = torch.Generator().manual_seed(stream_seed(self.seed, self.name, block))
            views = [draw_in_ranges(BLOCK, self.ranges, generator) for _ in range(self.views)]
            self._block = (block, torch.stack(views, dim=1))
        return self._block[1]
