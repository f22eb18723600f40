"""Integer image shifts, one offset per image, written once for every layer that shifts.

A shift ``T_δ`` with ``δ = (dy, dx)`` moves the content of an image down by ``dy`` rows and right
by ``dx`` columns: ``T_δ x[i, j] = x[i - dy, j - dx]``. The modes differ in what fills the rows
and columns that the shift exposes:

- ``circular``: the content wraps around (``torch.roll``).
- ``zero``: a fill value, 0 by default (the "standard" shift of the TIPS paper).
- ``reflect``: the image reflected at its border, the edge pixel not repeated (periodic with
  period ``2 (L - 1)``, so any offset is defined).
- ``crop``: Zhang's protocol: a window of a fixed size cut from a larger image, ``δ`` being the
  window's top-left corner: ``T_δ x[i, j] = x[i + dy, j + dx]``.

Every shift is separable: :func:`shift_source` maps output positions to source positions along
one axis. :func:`shift_images` gathers whole batches with it (``shiftpool.metrics``), and the
data loader composes it with its crop and flip into one gather (``shiftpool.data.Augment``).

Offsets are drawn per image (not once per batch) from a seeded :class:`torch.Generator` on the
CPU (:func:`draw_offsets`), so a seed gives the same offsets on every device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from shiftpool.core.errors import InputError, InputTypeError

__all__ = [
    "SHIFT_MODES",
    "OffsetRanges",
    "ShiftMode",
    "center_offset",
    "check_shift_mode",
    "default_ranges",
    "draw_in_ranges",
    "draw_offsets",
    "shift_images",
    "shift_source",
]

ShiftMode = Literal["circular", "zero", "reflect", "crop"]
SHIFT_MODES: tuple[str, ...] = ("circular", "zero", "reflect", "crop")
_WHERE = "shiftpool.shift_images"


def check_shift_mode(mode: str, allowed: Sequence[str] = SHIFT_MODES) -> str:
    """Return ``mode`` if it is one of ``allowed`` (default :data:`SHIFT_MODES`), else raise.

    Example:
        >>> check_shift_mode("zero")
        'zero'
    """
    if mode not in allowed:
        raise InputError(
            f"shiftpool: unknown shift mode {mode!r}; allowed: {', '.join(allowed)}"
        )
    return mode


def shift_source(
    positions: Tensor, offset: Tensor, length: int, mode: str
) -> tuple[Tensor, Tensor]:
    """Where each output position reads from, along one axis of ``length`` pixels.

    Args:
        positions: int64 output positions, ``(N, L)`` (or anything that broadcasts with
            ``offset``); they may lie outside ``[0, length)`` (a caller's padding).
        offset: int64 shift per image, ``(N, 1)``.
        length: the source axis's length.
        mode: one of :data:`SHIFT_MODES`.

    Returns:
        ``(source, inside)``, both shaped like the broadcast of the inputs: the source index
        (always in ``[0, length)`` except for ``crop``, whose window lies inside by contract)
        and whether the unwrapped source ``position - offset`` lies inside the image. ``zero``
        mode fills where ``inside`` is false (its source is clamped there, so still a valid
        index); ``circular`` and ``reflect`` use ``source`` everywhere.

    Example:
        >>> pos = torch.arange(4)[None]
        >>> src, inside = shift_source(pos, torch.tensor([[1]]), 4, "circular")
        >>> src.tolist(), inside.tolist()
        ([[3, 0, 1, 2]], [[False, True, True, True]])
    """
    if mode == "crop":
        index = positions + offset
        return index, torch.ones_like(index, dtype=torch.bool)
    index = positions - offset
    inside = (index >= 0) & (index < length)
    if mode == "circular":
        return index.remainder(length), inside
    if mode == "zero":
        return index.clamp(0, length - 1), inside
    if mode != "reflect":
        check_shift_mode(mode)
    if length == 1:
        return torch.zeros_like(index), inside
    period = 2 * (length - 1)
    index = index.remainder(period)
    return torch.where(index >= length, period - index, index), inside


#: Inclusive offset ranges ``((dy_low, dy_high), (dx_low, dx_high))``.
OffsetRanges = tuple[tuple[int, int], tuple[int, int]]


def default_ranges(max_shift: tuple[int, int], mode: str) -> OffsetRanges:
    """The offsets a mode draws from for ``max_shift``: ``[-m, m]`` per axis, or for ``crop``
    the window corners ``[0, m - 1]`` (Zhang: ``[0, 32)``).

    Example:
        >>> default_ranges((3, 2), "circular"), default_ranges((32, 32), "crop")
        (((-3, 3), (-2, 2)), ((0, 31), (0, 31)))
    """
    check_shift_mode(mode)
    if mode == "crop":
        return (0, max_shift[0] - 1), (0, max_shift[1] - 1)
    return (-max_shift[0], max_shift[0]), (-max_shift[1], max_shift[1])


def draw_in_ranges(
    n: int, ranges: OffsetRanges, generator: torch.Generator | None = None
) -> Tensor:
    """Draw ``n`` offsets ``(dy, dx)``, each coordinate uniform on its inclusive range and
    independent: all ``dy`` first, then all ``dx``. Drawn on the CPU, so a seed gives the same
    offsets on every device.

    Returns:
        ``(n, 2)`` int64 tensor on the CPU.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> offsets = draw_in_ranges(1000, ((-3, 2), (0, 0)), g)
        >>> offsets[:, 0].unique().tolist(), offsets[:, 1].unique().tolist()
        ([-3, -2, -1, 0, 1, 2], [0])
    """
    columns = [torch.randint(low, high + 1, (n,), generator=generator) for low, high in ranges]
    return torch.stack(columns, dim=1)


def draw_offsets(
    n: int, max_shift: tuple[int, int], mode: str, generator: torch.Generator | None = None
) -> Tensor:
    """Draw one offset ``(dy, dx)`` per image from :func:`default_ranges` of ``max_shift``.

    ``|dy| <= max_shift[0]`` and ``|dx| <= max_shift[1]`` for the modes that move the content;
    for ``crop`` the window corner lies in ``[0, max_shift)`` per axis (Zhang: ``[0, 32)``).

    Returns:
        ``(n, 2)`` int64 tensor on the CPU.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> draw_offsets(4, (3, 3), "circular", g).shape
        torch.Size([4, 2])
    """
    return draw_in_ranges(n, default_ranges(max_shift, mode), generator)


def shift_images(
    x: Tensor,
    offsets: Tensor,
    mode: str,
    crop_size: tuple[int, int] | None = None,
    fill: float | Sequence[float] = 0.0,
) -> Tensor:
    """Shift each image of ``x`` by its own offset, in one gather (no loop over images).

    Args:
        x: ``(N, C, H, W)``.
        offsets: ``(N, 2)`` or ``(2,)`` (the same offset for every image) integer ``(dy, dx)``;
            ``|dy| < H`` and ``|dx| < W``, or for ``crop`` a window corner inside the image.
        mode: one of :data:`SHIFT_MODES`.
        crop_size: ``(h, w)`` of the window, required by (and only allowed for) ``crop``.
        fill: what ``zero`` mode brings in: a number, or one per channel. Images that were
            normalised are black at ``-mean / std``, not at 0.

    Returns:
        ``(N, C, H, W)``, or ``(N, C, h, w)`` for ``crop``; same dtype, device and memory format.

    Example:
        >>> x = torch.arange(4.).view(1, 1, 1, 4)
        >>> shift_images(x, torch.tensor([0, 1]), "zero")
        tensor([[[[0., 0., 1., 2.]]]])
    """
    check_shift_mode(mode)
    if x.dim() != 4:
        raise InputError(f"{_WHERE}: expected images (N, C, H, W), got {tuple(x.shape)}")
    n, c, h, w = x.shape
    offsets = _offsets_per_image(offsets, n)
    out_h, out_w = _output_size(mode, (h, w), crop_size)
    _check_offsets(offsets, mode, (h, w), (out_h, out_w))
    offsets = offsets.to(x.device)
    rows, row_ok = shift_source(torch.arange(out_h, device=x.device)[None], offsets[:, :1], h, mode)
    cols, col_ok = shift_source(torch.arange(out_w, device=x.device)[None], offsets[:, 1:], w, mode)
    flat = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, out_h * out_w)
    out = x.flatten(2).gather(2, flat.expand(n, c, -1)).view(n, c, out_h, out_w)
    if mode == "zero":
        inside = (row_ok[:, :, None] & col_ok[:, None, :])[:, None]
        out = torch.where(inside, out, _fill_value(fill, c, x))
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def _fill_value(fill: float | Sequence[float], channels: int, x: Tensor) -> Tensor:
    """``fill`` as a tensor that broadcasts against ``(N, C, H, W)``."""
    value = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    if value.dim() == 0:
        return value
    if value.shape != (channels,):
        raise InputError(
            f"{_WHERE}: fill must be a number or one value per channel ({channels}), "
            f"got {tuple(fill)}"
        )
    return value.view(1, channels, 1, 1)


def center_offset(image_size: tuple[int, int], crop_size: tuple[int, int]) -> tuple[int, int]:
    """Corner of the centred window of ``crop_size`` in an image of ``image_size``.

    Example:
        >>> center_offset((256, 256), (224, 224))
        (16, 16)
    """
    return ((image_size[0] - crop_size[0]) // 2, (image_size[1] - crop_size[1]) // 2)


def _offsets_per_image(offsets: Tensor, n: int) -> Tensor:
    offsets = torch.as_tensor(offsets)
    if offsets.dtype.is_floating_point or offsets.dtype.is_complex or offsets.dtype == torch.bool:
        raise InputTypeError(f"{_WHERE}: offsets must be integers, got {offsets.dtype}")
    if offsets.shape == (2,):
        offsets = offsets.expand(n, 2)
    if offsets.shape != (n, 2):
        raise InputError(
            f"{_WHERE}: offsets must have shape ({n}, 2) or (2,), got {tuple(offsets.shape)}"
        )
    return offsets.long()


def _output_size(
    mode: str, size: tuple[int, int], crop_size: tuple[int, int] | None
) -> tuple[int, int]:
    if mode != "crop":
        if crop_size is not None:
            raise InputError(
                f"{_WHERE}: crop_size is only used by mode 'crop', got it with mode {mode!r}"
            )
        return size
    if crop_size is None:
        raise InputError(f"{_WHERE}: mode 'crop' needs crop_size (h, w)")
    h, w = crop_size
    if not (1 <= h <= size[0] and 1 <= w <= size[1]):
        raise InputError(
            f"{_WHERE}: crop_size {tuple(crop_size)} must lie between (1, 1) and the image "
            f"size {tuple(size)}"
        )
    return h, w


def _check_offsets(
    offsets: Tensor, mode: str, size: tuple[int, int], out_size: tuple[int, int]
) -> None:
    if offsets.numel() == 0:
        return
    for axis, name in enumerate(("dy", "dx")):
        low, high = int(offsets[:, axis].min()), int(offsets[:, axis].max())
        if mode == "crop":
            limit = size[axis] - out_size[axis]
            if low < 0 or high > limit:
                raise InputError(
                    f"{_WHERE}: crop {name} must lie in [0, {limit}] for a window of "
                    f"{out_size[axis]} in {size[axis]} pixels, got [{low}, {high}]"
                )
        elif max(-low, high) >= size[axis]:
            raise InputError(
                f"{_WHERE}: |{name}| must be smaller than the image ({size[axis]} pixels), "
                f"got {max(-low, high)}"
            )
