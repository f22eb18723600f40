"""Image shifts with a different integer offset per image, in one batched gather.

A shift ``T_δ`` with ``δ = (dy, dx)`` moves the content of an image down by ``dy`` rows and right
by ``dx`` columns: ``T_δ x[i, j] = x[i - dy, j - dx]``. The modes differ in what fills the rows
and columns that the shift exposes:

- ``circular``: the content wraps around (``torch.roll``).
- ``zero``: zeros (the "standard" shift of the TIPS paper): a roll whose wrapped part is zeroed.
- ``reflect``: the image reflected at its border (pad by the maximum shift with reflection,
  crop back at offset ``δ``), the edge pixel not repeated.
- ``crop``: Zhang's protocol: a window of a fixed size cut from a larger image, ``δ`` being the
  window's top-left corner: ``T_δ x[i, j] = x[i + dy, j + dx]``.

Offsets are drawn per image (not once per batch) from a seeded :class:`torch.Generator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from shiftpool.core.errors import InputError, InputTypeError

ShiftMode = Literal["circular", "zero", "reflect", "crop"]
SHIFT_MODES: tuple[str, ...] = ("circular", "zero", "reflect", "crop")


def check_shift_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`SHIFT_MODES`, else raise a ``ValueError``."""
    if mode not in SHIFT_MODES:
        raise InputError(
            f"shiftpool.metrics: unknown shift mode {mode!r}; allowed: {', '.join(SHIFT_MODES)}"
        )
    return mode


def draw_offsets(
    n: int, max_shift: tuple[int, int], mode: str, generator: torch.Generator | None = None
) -> Tensor:
    """Draw one offset ``(dy, dx)`` per image, each coordinate uniform and independent.

    ``|dy| <= max_shift[0]`` and ``|dx| <= max_shift[1]`` for the modes that move the content;
    for ``crop`` the window corner lies in ``[0, max_shift)`` per axis (Zhang: ``[0, 32)``).
    Offsets are drawn on the CPU, so a seed gives the same offsets on every device.

    Returns:
        ``(n, 2)`` int64 tensor on the CPU.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> draw_offsets(4, (3, 3), "circular", g).shape
        torch.Size([4, 2])
    """
    check_shift_mode(mode)
    columns = []
    for m in max_shift:
        low, high = (0, m) if mode == "crop" else (-m, m + 1)
        columns.append(torch.randint(low, high, (n,), generator=generator))
    return torch.stack(columns, dim=1)


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
        raise InputError(
            f"shiftpool.metrics.shift_images: expected images (N, C, H, W), got {tuple(x.shape)}"
        )
    n, c, h, w = x.shape
    offsets = _offsets_per_image(offsets, n)
    out_h, out_w = _output_size(mode, (h, w), crop_size)
    _check_offsets(offsets, mode, (h, w), (out_h, out_w))
    offsets = offsets.to(x.device)
    rows, row_ok = _source_index(offsets[:, :1], out_h, h, mode)
    cols, col_ok = _source_index(offsets[:, 1:], out_w, w, mode)
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
            "shiftpool.metrics.shift_images: fill must be a number or one value per channel "
            f"({channels}), got {tuple(fill)}"
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
        raise InputTypeError(
            f"shiftpool.metrics.shift_images: offsets must be integers, got {offsets.dtype}"
        )
    if offsets.shape == (2,):
        offsets = offsets.expand(n, 2)
    if offsets.shape != (n, 2):
        raise InputError(
            f"shiftpool.metrics.shift_images: offsets must have shape ({n}, 2) or (2,), "
            f"got {tuple(offsets.shape)}"
        )
    return offsets.long()


def _output_size(
    mode: str, size: tuple[int, int], crop_size: tuple[int, int] | None
) -> tuple[int, int]:
    if mode != "crop":
        if crop_size is not None:
            raise InputError(f"shiftpool.metrics.shift_images: crop_size is only used by mode "
                             f"'crop', got it with mode {mode!r}")
        return size
    if crop_size is None:
        raise InputError("shiftpool.metrics.shift_images: mode 'crop' needs crop_size (h, w)")
    h, w = crop_size
    if not (1 <= h <= size[0] and 1 <= w <= size[1]):
        raise InputError(
            f"shiftpool.metrics.shift_images: crop_size {tuple(crop_size)} must lie between "
            f"(1, 1) and the image size {tuple(size)}"
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
                    f"shiftpool.metrics.shift_images: crop {name} must lie in [0, {limit}] for "
                    f"a window of {out_size[axis]} in {size[axis]} pixels, got [{low}, {high}]"
                )
        elif max(-low, high) >= size[axis]:
            raise InputError(
                f"shiftpool.metrics.shift_images: |{name}| must be smaller than the image "
                f"({size[axis]} pixels), got {max(-low, high)}"
            )


def _source_index(offset: Tensor, out_len: int, in_len: int, mode: str) -> tuple[Tensor, Tensor]:
    """Source index ``(N, out_len)`` along one axis and whether it lies inside the image."""
    pos = torch.arange(out_len, device=offset.device)[None]
    if mode == "crop":
        idx = pos + offset
        return idx, torch.ones_like(idx, dtype=torch.bool)
    idx = pos - offset
    inside = (idx >= 0) & (idx < in_len)
    if mode == "circular":
        return idx.remainder(in_len), inside
    if mode == "zero":
        return idx.clamp(0, in_len - 1), inside
    # reflect without repeating the edge pixel: period 2 * (in_len - 1)
    if in_len == 1:
        return torch.zeros_like(idx), inside
    period = 2 * (in_len - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= in_len, period - idx, idx), inside
