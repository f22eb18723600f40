"""An in-memory labelled image data set: uint8 images, int64 labels, and its statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from shiftpool.data.catalog import DatasetSpec
from shiftpool.data.formats import DatasetFormatError

__all__ = ["ImageDataset", "validate_dataset"]

UNLABELLED = -1


@dataclass(eq=False)
class ImageDataset:
    """Images and labels held in memory.

    Attributes:
        images: uint8 ``(N, C, H, W)``, contiguous.
        labels: int64 ``(N,)``; ``-1`` marks an unlabelled image (STL-10's ``unlabeled`` split).
        name: the data set's name (``"cifar10"``...).
        classes: class names, index = label.
        mean, std: per-channel statistics on the [0, 1] scale, for normalisation.
        split: the split it holds (``"train"``...).

    Example:
        >>> ds = ImageDataset(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.arange(4),
        ...                   "toy", ("a", "b", "c", "d"), (0.5,), (0.25,))
        >>> len(ds), ds.num_classes, ds[1][1]
        (4, 4, 1)
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split: str = ""

    def __post_init__(self) -> None:
        where = f"shiftpool.data.{self.name}"
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DatasetFormatError(
                f"{where}: images must be uint8 (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise DatasetFormatError(
                f"{where}: labels must be int64 ({self.images.shape[0]},), got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )
        channels = self.images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DatasetFormatError(f"{where}: mean and std need one value per channel")
        self.classes, self.mean, self.std = tuple(self.classes), tuple(self.mean), tuple(self.std)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        return tuple(self.images.shape[1:])

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def subset(self, indices: Sequence[int] | torch.Tensor) -> ImageDataset:
        """A new data set with the images at ``indices`` (copied), same metadata."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        return ImageDataset(
            self.images[index].contiguous(),
            self.labels[index].contiguous(),
            self.name,
            self.classes,
            self.mean,
            self.std,
            self.split,
        )


def dataset_from_arrays(
    images: np.ndarray, labels: np.ndarray, spec: DatasetSpec, split: str
) -> ImageDataset:
    """An :class:`ImageDataset` of ``split`` from decoded arrays, validated against ``spec``.

    Args:
        images: uint8 ``(N, C, H, W)``.
        labels: int64 ``(N,)``.
    """
    dataset = ImageDataset(
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.from_numpy(np.ascontiguousarray(labels)),
        spec.name,
        spec.classes,
        spec.mean,
        spec.std,
        split,
    )
    return validate_dataset(dataset, spec, split)


def validate_dataset(dataset: ImageDataset, spec: DatasetSpec, split: str) -> ImageDataset:
    """Check ``dataset`` against the table entry: count, image shape, label range; return it.

    Raises:
        DatasetFormatError: naming the data set, the split and what differs.
    """
    where = f"shiftpool.data.{spec.name} ({split})"
    expected_shape = (spec.channels, *spec.image_size)
    if dataset.image_shape != expected_shape:
        raise DatasetFormatError(
            f"{where}: images have shape {dataset.image_shape}, expected {expected_shape}"
        )
    expected_count = spec.counts[split]
    if len(dataset) != expected_count:
        raise DatasetFormatError(f"{where}: {len(dataset)} images, expected {expected_count}")
    labels = dataset.labels
    if split in spec.unlabelled_splits:
        if not bool((labels == UNLABELLED).all()):
            raise DatasetFormatError(f"{where}: an unlabelled split must have labels {UNLABELLED}")
        return dataset
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= spec.num_classes:
        raise DatasetFormatError(
            f"{where}: labels span [{low}, {high}], expected [0, {spec.num_classes - 1}]"
        )
    return dataset
