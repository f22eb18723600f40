"""The data side of a run: data sets, seeded subsets and batch loaders.

Classification runs read :class:`~shiftpool.data.ImageDataset` (or image folders) through
:class:`~shiftpool.data.BatchLoader`; segmentation runs (``config.task == "segmentation"``) read a
:class:`~shiftpool.data.segmentation.SegmentationSet` through
:class:`~shiftpool.data.SegmentationLoader`, which orders, shards and seeds its batches the same
way and augments images and masks together
(:func:`~shiftpool.data.segmentation.augment_segmentation`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

import shiftpool.data as sdata
from shiftpool.data.segmentation import SegmentationSet
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
        return sdata.SegmentationLoader(dataset, config.batch_size, shuffle=True,
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
        return sdata.SegmentationLoader(dataset, config.eval_batch_size, shuffle=False,
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


#: A loader of either task: ``(images, labels)`` batches, ``set_epoch``, ``len``.
Loader = sdata.BatchLoader | sdata.SegmentationLoader
