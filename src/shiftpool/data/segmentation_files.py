"""Image/label-map file pairs decoded into one uint8 array each, at one size (Pillow).

Used by :func:`shiftpool.data.load_segmentation` for the real segmentation sets:

- a label map is read as stored (the palette *index* of a ``P`` PNG such as PASCAL VOC's, the
  grey level of an ``L`` PNG such as Cityscapes' or ADE20K's), then mapped to class ids by a
  256-entry table (:class:`LabelMap`); a value the table does not allow is an error naming the
  file and the value. An RGB label map is turned into indices through a palette when one is
  given (PASCAL VOC's, :func:`voc_palette`);
- every pair is brought to one ``(H, W)`` (``fit``): ``"crop"`` scales the shorter side to
  cover ``(H, W)`` and cuts the centre; ``"pad"`` scales the longer side to fit inside and pads
  the rest (image 0, label ``255`` = ignored); ``"stretch"`` resizes to ``(H, W)`` ignoring the
  aspect ratio. Images are resampled bilinearly, label maps by nearest neighbour (labels are
  never blended).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shiftpool.data.folder import _pil_image
from shiftpool.data.formats import DatasetFormatError
from shiftpool.data.segmentation import IGNORE_INDEX

__all__ = ["FITS", "LabelMap", "decode_pairs", "fit_geometry", "voc_palette"]

FITS = ("crop", "pad", "stretch")
_INVALID = -1


def voc_palette() -> np.ndarray:
    """PASCAL VOC's colour map: uint8 ``(256, 3)``, row ``i`` = the RGB colour of label ``i``.

    Bit ``k`` of the label (from the lowest) goes to bit ``7 - k // 3`` of channel ``k % 3``.

    Example:
        >>> p = voc_palette()
        >>> p[0].tolist(), p[1].tolist(), p[15].tolist(), p[255].tolist()
        ([0, 0, 0], [128, 0, 0], [192, 128, 128], [224, 224, 192])
    """
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(256):
        for k in range(8 * 3):
            if label >> k & 1:
                palette[label, k % 3] |= 1 << (7 - k // 3)
    return palette


@dataclass(frozen=True)
class LabelMap:
    """Stored label values → class ids: ``table[v]`` is the class of stored value ``v``
    (``255`` for ignored pixels), or ``-1`` where ``v`` must not occur.

    Attributes:
        table: int16 ``(256,)``.
        palette: for RGB label maps: uint8 ``(K, 3)``, row = colour of stored value ``row``.

    Example:
        >>> m = LabelMap.from_pairs({1: 0, 2: 1, 3: 2})
        >>> m.apply(np.array([[1, 3], [2, 1]], dtype=np.uint8), Path("t.png")).tolist()
        [[0, 2], [1, 0]]
    """

    table: np.ndarray
    palette: np.ndarray | None = None

    @staticmethod
    def from_pairs(pairs: Mapping[int, int], *, others: int = _INVALID,
                   palette: np.ndarray | None = None) -> LabelMap:
        """``stored value → class id`` for the values in ``pairs``; every other value maps to
        ``others`` (``-1``: an error, ``255``: ignored)."""
        table = np.full(256, others, dtype=np.int16)
        for stored, label in pairs.items():
            table[stored] = label
        return LabelMap(table, palette)

    def apply(self, stored: np.ndarray, path: Path) -> np.ndarray:
        """Class ids uint8 ``(H, W)`` of stored values uint8 ``(H, W)``; ``path`` for messages."""
        labels = self.table[stored]
        if (labels < 0).any():
            bad = sorted(set(np.unique(stored[labels < 0]).tolist()))
            allowed = np.flatnonzero(self.table >= 0).tolist()
            raise DatasetFormatError(
                f"shiftpool.data: {path} holds label value(s) {bad[:5]} that this data set does "
                f"not use (allowed: {_ranges(allowed)}); is it the right label file?"
            )
        return labels.astype(np.uint8)


def _ranges(values: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 255]`` → ``'0-2, 5, 255'``."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


def fit_geometry(
    source: tuple[int, int], target: tuple[int, int], fit: str
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((h, w) to resize to, (top, left) offset of the target window)`` for one image.

    For ``"crop"`` the offset is where the target window starts inside the resized image; for
    ``"pad"`` it is where the resized image starts inside the target; ``"stretch"``: ``(0, 0)``.

    Example:
        >>> fit_geometry((100, 200), (50, 50), "crop")  # shorter side to 50, centre cut
        ((50, 100), (0, 25))
        >>> fit_geometry((100, 200), (50, 50), "pad")  # longer side to 50, centred
        ((25, 50), (12, 0))
    """
    (h, w), (th, tw) = source, target
    if fit == "stretch":
        return (th, tw), (0, 0)
    scale = max(th / h, tw / w) if fit == "crop" else min(th / h, tw / w)
    if fit == "crop":
        rh, rw = max(th, round(h * scale)), max(tw, round(w * scale))
        return (rh, rw), ((rh - th) // 2, (rw - tw) // 2)
    rh, rw = min(th, max(1, round(h * scale))), min(tw, max(1, round(w * scale)))
    return (rh, rw), ((th - rh) // 2, (tw - rw) // 2)


def _stored_labels(image, path: Path, palette: np.ndarray | None) -> np.ndarray:
    """The stored values of a label map: palette indices (``P``), grey levels (``L``), or RGB
    colours looked up in ``palette``."""
    if image.mode in ("P", "L"):
        return np.asarray(image, dtype=np.uint8)
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 255:
            raise DatasetFormatError(f"shiftpool.data: {path}: label values outside 0-255")
        return values.astype(np.uint8)
    if image.mode in ("RGB", "RGBA") and palette is not None:
        rgb = np.asarray(image.convert("RGB"), dtype=np.int32)
        keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        colours = (palette[:, 0].astype(np.int32) << 16) | (palette[:, 1].astype(np.int32) << 8)
        colours |= palette[:, 2].astype(np.int32)
        order = np.argsort(colours, kind="stable")
        where = np.searchsorted(colours[order], keys).clip(max=len(colours) - 1)
        found = colours[order][where] == keys
        if not found.all():
            bad = tuple(int(c) for c in rgb[~found][0])
            raise DatasetFormatError(f"shiftpool.data: {path}: colour {bad} is not in the "
                                     "data set's palette")
        return order[where].astype(np.uint8)
    raise DatasetFormatError(f"shiftpool.data: {path}: a label map must be a palette (P) or "
                             f"greyscale (L) PNG, found mode {image.mode}")


def _decode_pair(
    image_path: Path, label_path: Path, labels: LabelMap, size: tuple[int, int], fit: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8 (3, H, W), labels uint8 (H, W))`` of one pair at ``size``."""
    pil = _pil_image()
    try:
        with pil.open(image_path) as image:
            image = image.convert("RGB")
    except (OSError, ValueError) as err:
        raise DatasetFormatError(f"shiftpool.data: {image_path}: cannot decode image ({err})"
                                 ) from err
    try:
        with pil.open(label_path) as label_image:
            label_image.load()
            stored = _stored_labels(label_image, label_path, labels.palette)
    except (OSError, ValueError) as err:
        raise DatasetFormatError(f"shiftpool.data: {label_path}: cannot decode label map "
                                 f"({err})") from err
    if stored.shape != (image.size[1], image.size[0]):
        raise DatasetFormatError(
            f"shiftpool.data: {label_path} is {stored.shape[0]}x{stored.shape[1]} but its image "
            f"{image_path} is {image.size[1]}x{image.size[0]} (height x width)")
    classes = pil.fromarray(labels.apply(stored, label_path))  # 2-D uint8: mode L
    (rh, rw), (top, left) = fit_geometry(stored.shape, size, fit)
    if (rh, rw) != stored.shape:
        image = image.resize((rw, rh), pil.BILINEAR)
        classes = classes.resize((rw, rh), pil.NEAREST)
    rgb, ids = np.asarray(image, dtype=np.uint8), np.asarray(classes, dtype=np.uint8)
    th, tw = size
    if fit == "pad":
        out_rgb = np.zeros((th, tw, 3), dtype=np.uint8)
        out_ids = np.full((th, tw), IGNORE_INDEX, dtype=np.uint8)
        out_rgb[top:top + rh, left:left + rw] = rgb
        out_ids[top:top + rh, left:left + rw] = ids
        rgb, ids = out_rgb, out_ids
    else:
        rgb, ids = rgb[top:top + th, left:left + tw], ids[top:top + th, left:left + tw]
    return rgb.transpose(2, 0, 1), ids


def decode_pairs(
    pairs: Sequence[tuple[Path, Path]], labels: LabelMap, size: tuple[int, int], fit: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Every ``(image file, label file)`` pair at ``size``, with a few threads.

    Returns:
        ``(images uint8 (N, 3, H, W), labels uint8 (N, H, W))``: ``4 * N * H * W`` bytes.

    Raises:
        DatasetFormatError: a file cannot be decoded, a label map's size differs from its
            image's, or it holds a value the data set does not use (each names the file).
    """
    h, w = size
    images = np.empty((len(pairs), 3, h, w), dtype=np.uint8)
    masks = np.empty((len(pairs), h, w), dtype=np.uint8)

    def decode_into(i: int) -> None:
        images[i], masks[i] = _decode_pair(*pairs[i], labels, size, fit)

    workers = max(1, min(8, os.cpu_count() or 1))  # Pillow decodes without holding the GIL
    pool = ThreadPoolExecutor(workers, thread_name_prefix="shiftpool-segdecode")
    try:
        for _ in pool.map(decode_into, range(len(pairs))):
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return images, masks
