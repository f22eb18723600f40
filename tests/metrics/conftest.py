"""Test helpers for the metrics: a minimal reader of the real data sets under the data root."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

SUBSET = 2000

# data set -> (folder, file) of its test images under the data root
_FILES = {
    "mnist": ("MNIST/raw", "t10k-images-idx3-ubyte.gz"),
    "fashionmnist": ("FashionMNIST/raw", "t10k-images-idx3-ubyte.gz"),
    "cifar10": ("cifar-10-batches-py", "test_batch"),
}


def _data_root() -> Path | None:
    """The data root as the project defines it for tests: ``SHIFTPOOL_DATA``."""
    root = os.environ.get("SHIFTPOOL_DATA")
    return Path(root) if root else None


def _read_idx_images(path: Path, count: int) -> torch.Tensor:
    with gzip.open(path, "rb") as f:
        header = np.frombuffer(f.read(16), dtype=">u4")
        _, n, h, w = (int(v) for v in header)
        n = min(n, count)
        pixels = np.frombuffer(f.read(n * h * w), dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).view(n, 1, h, w)


def _read_cifar_images(path: Path, count: int) -> torch.Tensor:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    data = np.asarray(batch["data"][:count], dtype=np.uint8)
    return torch.from_numpy(data.copy()).view(-1, 3, 32, 32)


@pytest.fixture(scope="session")
def real_images():
    """``real_images(name)``: the first 2,000 test images of a data set, uint8 (N, C, H, W)."""

    def load(name: str) -> torch.Tensor:
        folder, file = _FILES[name]
        root = _data_root()
        path = None if root is None else root / folder / file
        if path is None or not path.is_file():
            pytest.skip(f"{name} not found under {root or 'SHIFTPOOL_DATA (unset)'}/{folder}")
        reader = _read_cifar_images if name == "cifar10" else _read_idx_images
        return reader(path, SUBSET)

    return load
