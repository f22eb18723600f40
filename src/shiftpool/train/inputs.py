"""The data side of a run: data sets, seeded subsets and the per-epoch batch loaders."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch

import shiftpool.data as sdata
from shiftpool.train.config import TrainConfig
from shiftpool.train.runtime import Runtime


def load_split(config: TrainConfig, split: str) -> Any:
    """The ``split`` ("train"/"test") of ``config.dataset``, as an in-memory ImageDataset."""
    return sdata.load_dataset(config.dataset, split, root=config.data_dir, download=config.download)


def subset(dataset: Any, size: int | None, seed: int) -> Any:
    """A seeded random subset of ``size`` images (the data set itself if ``size`` is None or
    not smaller). The order of the kept images follows the original order."""
    total = len(dataset.labels)
    if size is None or size >= total:
        return dataset
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(total, generator=generator)[:size].sort().values
    return with_arrays(dataset, dataset.images[keep], dataset.labels[keep])


def first(dataset: Any, size: int | None) -> Any:
    """The first ``size`` images of ``dataset`` (all of it if ``size`` is None)."""
    if size is None or size >= len(dataset.labels):
        return dataset
    return with_arrays(dataset, dataset.images[:size], dataset.labels[:size])


def with_arrays(dataset: Any, images: torch.Tensor, labels: torch.Tensor) -> Any:
    """A copy of ``dataset`` holding other ``images`` and ``labels`` (same metadata)."""
    if dataclasses.is_dataclass(dataset):
        return dataclasses.replace(dataset, images=images, labels=labels)
    clone = copy.copy(dataset)
    clone.images, clone.labels = images, labels
    return clone


def model_args(dataset: Any) -> dict[str, Any]:
    """What a model needs to know of the data: classes, channels, image size."""
    _, channels, height, width = dataset.images.shape
    return {
        "num_classes": int(dataset.num_classes),
        "in_channels": int(channels),
        "input_size": [int(height), int(width)],
        "dataset": str(getattr(dataset, "name", "")),
    }


def epoch_seed(seed: int, epoch: int) -> int:
    """The loader seed of ``epoch``: a fresh, reproducible order and augmentation every epoch,
    independent of how many epochs ran in this process (what makes resuming exact)."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63)


def train_loader(dataset: Any, config: TrainConfig, runtime: Runtime, epoch: int) -> Any:
    """The shuffled, augmented loader of ``epoch`` for this process's shard."""
    return sdata.BatchLoader(
        dataset,
        config.batch_size,
        shuffle=True,
        augment=config.augment,
        device=runtime.device,
        seed=epoch_seed(config.seed, epoch),
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
        augment=None,
        device=runtime.device,
        seed=config.seed,
        rank=runtime.rank if sharded else 0,
        world_size=runtime.world_size if sharded else 1,
        drop_last=False,
        channels_last=config.channels_last,
    )
