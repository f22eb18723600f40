"""The data side of a run: data sets, seeded subsets and batch loaders.

Classification runs read :class:`~shiftpool.data.ImageDataset` (or image folders) through
:class:`~shiftpool.data.BatchLoader`; segmentation runs (``config.task == "segmentation"``)
read a :class:`~shiftpool.data.segmentation.SegmentationSet` through
:class:`SegmentationLoader`, which orders, shards and seeds its batches the same way and
augments images and masks together (:func:`~shiftpool.data.segmentation.augment_segmentation`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from pathlib import Path

import torch

import shiftpool.data as sdata
from shiftpool.core.errors import InputError
from shiftpool.data.loader import _derived_seed
from shiftpool.data.segmentation import SegmentationSet, augment_segmentation
from shiftpool.train.config import TrainConfig
from shiftpool.train.runtime import Runtime

#: What a run trains and evaluates on: in memory, decoded from a folder as it goes, or images
#: with per-pixel labels (segmentation).
Dataset = sdata.ImageDataset | sdata.ImageFolderDataset | SegmentationSet
#: What a model needs to know of the data (see :func:`model_args`).
ModelArgs = dict[str, int | list[int] | str]


def load_split(config: TrainConfig, split: str) -> Dataset:
    """The ``split`` ("train"/"test") of ``config.dataset``: in memory, or a folder's images
    decoded as they are read; a :class:`SegmentationSet` for a segmentation run."""
    if config.task == "segmentation":
        return load_segmentation_split(config.dataset, split, config.data_dir, config.download)
    return sdata.load_dataset(config.dataset, split, root=config.data_dir, download=config.download)


@functools.lru_cache(maxsize=4)
def load_segmentation_split(name: str, split: str, root: str | Path | None,
                            download: bool = True) -> SegmentationSet:
    """One split of the segmentation set ``name`` (:func:`shiftpool.data.load_segmentation`
    with its default options: ``mnist-canvas`` is 1,000 training and 200 test canvases of
    32x32, the file sets 256x256 crops; ``download`` for the sets that can be downloaded); kept
    in memory for the next call (a comparison loads the same split for every run; nothing here
    changes a set in place)."""
    options = {"download": download} if "download" in sdata.segmentation_info(name).options else {}
    return sdata.load_segmentation(name, split, root, **options)


def subset(dataset: Dataset, size: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``size`` images, in the original order (the data set itself
    if ``size`` is None or not smaller)."""
    if size is None or size >= len(dataset):
        return dataset
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(dataset), generator=generator)[:size].sort().values
    return dataset.subset(index)


def image_shape(dataset: Dataset) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images of ``dataset`` (a folder without a fixed size: its first)."""
    if isinstance(dataset, SegmentationSet):
        channels, height, width = dataset.images.shape[1:]
        return int(channels), int(height), int(width)
    if isinstance(dataset, sdata.ImageDataset):
        return dataset.image_shape
    if dataset.size is not None:
        return (dataset.channels, *dataset.size)
    channels, height, width = dataset.decode(0).shape
    return int(channels), int(height), int(width)


def model_args(dataset: Dataset) -> ModelArgs:
    """What a model needs to know of the data: classes, channels, image size."""
    channels, height, width = image_shape(dataset)
    return {
        "num_classes": int(dataset.num_classes),
        "in_channels": int(channels),
        "input_size": [int(height), int(width)],
        "dataset": str(getattr(dataset, "name", "")),
    }


def process_seed(seed: int, rank: int) -> int:
    """The seed of a process's own random draws (S3Pool rows, Gumbel noise, TIPS shifts)."""
    return (seed * 1_000_003 + 7919 * (rank + 1)) % (2**63)


def augmentation(config: TrainConfig) -> sdata.Augment | None:
    """``config.augment`` as a :class:`shiftpool.data.Augment` (None when empty; TrainConfig has
    checked its keys and values)."""
    return sdata.Augment(**config.augment) if config.augment else None


def train_loader(dataset: Dataset, config: TrainConfig, runtime: Runtime) -> Loader:
    """The shuffled, augmented loader of this process's shard; call ``set_epoch`` each epoch
    (order and augmentation are keyed by seed, epoch and rank, so a resumed run sees the same
    batches)."""
    if isinstance(dataset, SegmentationSet):
        return SegmentationLoader(dataset, config.batch_size, shuffle=True,
                                  augment=config.augment or None, device=runtime.device,
                                  seed=config.seed, rank=runtime.rank,
                                  world_size=runtime.world_size, drop_last=True,
                                  channels_last=config.channels_last)
    return sdata.BatchLoader(
        dataset,
        config.batch_size,
        shuffle=True,
        augment=augmentation(config),
        device=runtime.device,
        seed=config.seed,
        rank=runtime.rank,
        world_size=runtime.world_size,
        drop_last=True,
        channels_last=config.channels_last,
    )


def eval_loader(
    dataset: Dataset, config: TrainConfig, runtime: Runtime, *, sharded: bool = True
) -> Loader:
    """A loader over ``dataset`` in order, no augmentation; this process's shard if ``sharded``.

    The shards are not padded: over all processes each image is counted exactly once (with 3
    processes and 1,000 images, ranks see 334, 333 and 333).
    """
    if isinstance(dataset, SegmentationSet):
        return SegmentationLoader(dataset, config.eval_batch_size, shuffle=False,
                                  device=runtime.device, seed=config.seed,
                                  rank=runtime.rank if sharded else 0,
                                  world_size=runtime.world_size if sharded else 1,
                                  drop_last=False, pad_shards=False,
                                  channels_last=config.channels_last)
    return sdata.BatchLoader(
        dataset,
        config.eval_batch_size,
        shuffle=False,
        device=runtime.device,
        seed=config.seed,
        rank=runtime.rank if sharded else 0,
        world_size=runtime.world_size if sharded else 1,
        drop_last=False,
        pad_shards=False,
        channels_last=config.channels_last,
    )


_PERMUTATION_STREAM, _AUGMENT_STREAM = 0, 1  # as BatchLoader's: the same order for the same seed


class SegmentationLoader:
    """``(images, masks)`` batches of a :class:`SegmentationSet`, sharded and seeded like
    :class:`~shiftpool.data.BatchLoader` (same order for the same seed, epoch and rank; shards
    ``order[rank::world_size]``, padded for training, unpadded for evaluation).

    Args:
        dataset: the set; images read as float32 in ``[0, 1]`` (``take``), augmented there
            (padding is black), then normalised by the set's mean and std where it has them.
        batch_size, shuffle, device, seed, rank, world_size, drop_last, pad_shards,
            channels_last: as :class:`~shiftpool.data.BatchLoader`.
        augment: keyword arguments of
            :func:`~shiftpool.data.segmentation.augment_segmentation` (``crop_padding``,
            ``flip``, ``scale``), drawn from a generator keyed by ``(seed, epoch, rank)``; None
            for none.

    Yields:
        images float32 ``(B, C, H, W)`` and masks int64 ``(B, H, W)`` (255: ignored), on
        ``device``.

    Example:
        >>> from shiftpool.data.segmentation import mnist_segmentation
        >>> loader = SegmentationLoader(mnist_segmentation("test", 10), 4, shuffle=True,
        ...                             augment={"crop_padding": 2, "flip": True})
        >>> [tuple(x.shape) + tuple(y.shape) for x, y in loader][:1], len(loader)
        ([(4, 1, 32, 32, 4, 32, 32)], 3)
    """

    def __init__(self, dataset: SegmentationSet, batch_size: int, *, shuffle: bool,
                 augment: dict[str, object] | None = None, device: str | torch.device = "cpu",
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False,
                 pad_shards: bool = True, channels_last: bool = False) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"shiftpool.train: batch_size must be an int >= 1, got "
                             f"{batch_size!r}")
        if len(dataset) == 0:
            raise InputError("shiftpool.train: the segmentation set is empty")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        # flips are asked for, as with classification's Augment (the function's default is on)
        self.augment = {"flip": False, **augment} if augment else None
        self.device = torch.device(device)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.drop_last, self.pad_shards = drop_last, pad_shards
        self.channels_last = channels_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (its order and augmentation)."""
        self.epoch = int(epoch)

    @property
    def num_samples(self) -> int:
        """Images this rank sees per epoch (before ``drop_last`` trims the last batch)."""
        n, ws = len(self.dataset), self.world_size
        if self.drop_last:
            return n // ws
        return math.ceil(n / ws) if self.pad_shards else len(range(self.rank, n, ws))

    def __len__(self) -> int:
        count = self.num_samples
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def shard_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The data set indices this rank visits in ``epoch`` (default: the next pass)."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator().manual_seed(
                _derived_seed(self.seed, epoch, _PERMUTATION_STREAM))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if not (self.drop_last or self.pad_shards):
            return order[self.rank::self.world_size]
        total = self.num_samples * self.world_size
        if total > n:
            order = order.repeat(math.ceil(total / n))
        return order[:total][self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        generator = torch.Generator().manual_seed(
            _derived_seed(self.seed, epoch, self.rank, _AUGMENT_STREAM))
        batches = list(self.shard_indices(epoch).split(self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        for index in batches:
            images, masks = self.dataset.take(index)  # float32 in [0, 1], int64
            if self.augment is not None:
                images, masks = augment_segmentation(
                    images, masks, ignore_index=self.dataset.ignore_index, generator=generator,
                    **self.augment)  # type: ignore[arg-type]
            images = self.dataset.normalize(images.to(self.device, non_blocking=True))
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, masks.to(self.device, non_blocking=True)


#: A loader of either task: ``(images, labels)`` batches, ``set_epoch``, ``len``.
Loader = sdata.BatchLoader | SegmentationLoader
