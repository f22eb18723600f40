"""The data side of a run: evaluation shards count each image once, model arguments."""

from __future__ import annotations

import pytest
import torch

import shiftpool.data as sdata
from shiftpool.train import inputs
from shiftpool.train.runtime import Runtime


def _digits(n: int) -> sdata.ImageDataset:
    images = torch.arange(n, dtype=torch.int64).remainder(256).to(torch.uint8)
    return sdata.ImageDataset(images.view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous(),
                              torch.arange(n) % 10, classes=[str(c) for c in range(10)],
                              mean=(0.5,), std=(0.5,), name="digits")


@pytest.mark.parametrize(("n", "world_size"), [(1000, 3), (1000, 7), (10, 4), (2, 3)])
def test_evaluation_shards_count_every_image_exactly_once(tiny_config, n, world_size) -> None:
    dataset = _digits(n)
    config = tiny_config.replace(eval_batch_size=64)
    seen, counted = [], 0
    for rank in range(world_size):
        runtime = Runtime(torch.device("cpu"), rank=rank, world_size=world_size)
        loader = inputs.eval_loader(dataset, config, runtime)
        seen.append(loader.shard_indices())
        counted += sum(labels.numel() for _, labels in loader)
        assert len(loader) == -(-len(seen[-1]) // 64)
    everything = torch.cat(seen).sort().values
    assert counted == n and torch.equal(everything, torch.arange(n))
    assert max(map(len, seen)) - min(map(len, seen)) <= 1


def test_training_shards_stay_even(tiny_config) -> None:
    """DDP steps together: every rank of a training loader has the same number of batches."""
    dataset = _digits(1000)
    lengths = {len(inputs.train_loader(dataset, tiny_config,
                                       Runtime(torch.device("cpu"), rank=r, world_size=3)))
               for r in range(3)}
    assert lengths == {1000 // 3 // tiny_config.batch_size}


def test_model_args_of_memory_and_folder_data_sets(tmp_path) -> None:
    assert inputs.model_args(_digits(20)) == {"num_classes": 10, "in_channels": 1,
                                              "input_size": [2, 2], "dataset": "digits"}
    image = pytest.importorskip("PIL.Image")
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(2):
            image.new("RGB", (12, 10), (i * 40, 0, 0)).save(tmp_path / label / f"{i}.png")
    folder = sdata.image_folder(tmp_path)
    args = inputs.model_args(folder)
    assert (args["num_classes"], args["in_channels"], args["input_size"]) == (2, 3, [10, 12])
