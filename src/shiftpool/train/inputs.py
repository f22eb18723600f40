"""The data side of a run: data sets, seeded subsets and batch loaders."""

from __future__ import annotations

import torch

import shiftpool.data as sdata
from shiftpool.train.config import TrainConfig
from shiftpool.train.runtime import Runtime

#: What a run trains and evaluates on: in memory, or decoded from a folder as it goes.
Dataset = sdata.ImageDataset | sdata.ImageFolderDataset
#: What a model needs to know of the data (see :func:`model_args`).
ModelArgs = dict[str, int | list[int] | str]


def load_split(config: TrainConfig, split: str) -> Dataset:
    """The ``split`` ("train"/"test") of ``config.dataset``: in memory, or a folder's images
    decoded as they are read."""
    return sdata.load_dataset(config.dataset, split, root=config.data_dir, download=config.download)


def subset(dataset: Dataset, size: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``size`` images, in the original order (the data set itself
    if ``size`` is None or not smaller)."""
    if size is None or size >= len(dataset):
        return dataset
    generator = torch.Generator().manual_seed(seed)
    return dataset.subset(torch.randperm(len(dataset), generator=generator)[:size].sort().values)


def image_shape(dataset: Dataset) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images of ``dataset`` (a folder without a fixed size: its first)."""
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


def train_loader(dataset: Dataset, config: TrainConfig, runtime: Runtime) -> sdata.BatchLoader:
    """The shuffled, augmented loader of this process's shard; call ``set_epoch`` each epoch
    (order and augmentation are keyed by seed, epoch and rank, so a resumed run sees the same
    batches)."""
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
) -> sdata.BatchLoader:
    """A loader over ``dataset`` in order, no augmentation; this process's shard if ``sharded``.

    The shards are not padded: over all processes each image is counted exactly once (with 3
    processes and 1,000 images, ranks see 334, 333 and 333).
    """
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
