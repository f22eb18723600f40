"""The data side of a run: data sets, seeded subsets and batch loaders."""

from __future__ import annotations

from typing import Any

import torch

import shiftpool.data as sdata
from shiftpool.core.errors import InputError
from shiftpool.train.config import TrainConfig
from shiftpool.train.runtime import Runtime


def load_split(config: TrainConfig, split: str) -> Any:
    """The ``split`` ("train"/"test") of ``config.dataset``, as an in-memory ImageDataset."""
    return sdata.load_dataset(config.dataset, split, root=config.data_dir, download=config.download)


def subset(dataset: Any, size: int | None, seed: int) -> Any:
    """A seeded random subset of ``size`` images, in the original order (the data set itself
    if ``size`` is None or not smaller)."""
    if size is None or size >= len(dataset):
        return dataset
    generator = torch.Generator().manual_seed(seed)
    return dataset.subset(torch.randperm(len(dataset), generator=generator)[:size].sort().values)


def model_args(dataset: Any) -> dict[str, Any]:
    """What a model needs to know of the data: classes, channels, image size."""
    _, channels, height, width = dataset.images.shape
    return {
        "num_classes": int(dataset.num_classes),
        "in_channels": int(channels),
        "input_size": [int(height), int(width)],
        "dataset": str(getattr(dataset, "name", "")),
    }


def process_seed(seed: int, rank: int) -> int:
    """The seed of a process's own random draws (S3Pool rows, Gumbel noise, TIPS shifts)."""
    return (seed * 1_000_003 + 7919 * (rank + 1)) % (2**63)


def augmentation(config: TrainConfig) -> Any:
    """``config.augment`` as a :class:`shiftpool.data.Augment` (None when empty)."""
    if not config.augment:
        return None
    try:
        return sdata.Augment(**config.augment)
    except TypeError:
        raise InputError(
            f"shiftpool.train: augment takes crop_padding, flip, max_shift, shift_mode; "
            f"got {config.augment}"
        ) from None


def train_loader(dataset: Any, config: TrainConfig, runtime: Runtime) -> Any:
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
    dataset: Any, config: TrainConfig, runtime: Runtime, *, sharded: bool = True
) -> Any:
    """A loader over ``dataset`` in order, no augmentation; this process's shard if ``sharded``."""
    return sdata.BatchLoader(
        dataset,
        config.eval_batch_size,
        shuffle=False,
        device=runtime.device,
        seed=config.seed,
        rank=runtime.rank if sharded else 0,
        world_size=runtime.world_size if sharded else 1,
        drop_last=False,
        channels_last=config.channels_last,
    )
