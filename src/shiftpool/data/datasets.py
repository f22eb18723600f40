"""``load_dataset``: find a data set under the data root, fetch what is missing, read, validate.

A folder already in place is read as it is — its checksums are *not* compared with the published
ones (a re-encoded copy is a valid layout) — and the decoded arrays are validated against the
table in :mod:`shiftpool.data.catalog`: image shape, dtype, count per split, label range.
Downloads, on the other hand, are always md5-checked (:func:`download_file`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from shiftpool.core.errors import InputError, MissingFileError
from shiftpool.data.catalog import DatasetSpec, data_root, data_root_origin, dataset_info
from shiftpool.data.download import download_file, extract_archive
from shiftpool.data.embedded import embedded_mnist
from shiftpool.data.folder import ImageFolderDataset, annotated_samples, class_folder_samples
from shiftpool.data.formats import (
    DatasetFormatError,
    cifar_arrays,
    read_cifar_pickle,
    read_idx,
    read_mat,
    read_stl10_images,
    read_stl10_labels,
)
from shiftpool.data.image_dataset import UNLABELLED, ImageDataset, dataset_from_arrays

__all__ = ["DatasetNotFoundError", "find_dataset_folder", "load_dataset"]

Arrays = tuple[np.ndarray, np.ndarray]


class DatasetNotFoundError(MissingFileError):
    """A data set's files are not under the data root and downloading was not allowed."""


# ---------------------------------------------------------------------------------------------
# readers: the split's files (in ``split_files`` order) -> (images (N, C, H, W) uint8, labels)


def _read_idx_pair(paths: list[Path]) -> Arrays:
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1:
        raise DatasetFormatError(
            f"{paths[0].parent}: expected images (N, H, W) and labels (N,), "
            f"found {images.shape} and {labels.shape}"
        )
    if len(images) != len(labels):
        raise DatasetFormatError(
            f"{paths[0].parent}: {len(images)} images but {len(labels)} labels"
        )
    return images[:, None], labels.astype(np.int64)


def _cifar_reader(label_key: str) -> Callable[[list[Path]], Arrays]:
    def read(paths: list[Path]) -> Arrays:
        parts = [cifar_arrays(read_cifar_pickle(p), label_key, p) for p in paths]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    return read


def _read_svhn(paths: list[Path]) -> Arrays:
    arrays = read_mat(paths[0])
    if "X" not in arrays or "y" not in arrays:
        raise DatasetFormatError(f"{paths[0]}: expected variables X and y, found {list(arrays)}")
    x, y = arrays["X"], arrays["y"].reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DatasetFormatError(
            f"{paths[0]}: expected X (32, 32, 3, N) and y (N, 1), found {x.shape}, {y.shape}"
        )
    images = np.ascontiguousarray(x.astype(np.uint8).transpose(3, 2, 0, 1))
    return images, y.astype(np.int64) % 10  # SVHN writes digit 0 as label 10


def _read_stl10(paths: list[Path]) -> Arrays:
    images = read_stl10_images(paths[0])
    if len(paths) == 1:
        return images, np.full(len(images), UNLABELLED, dtype=np.int64)
    labels = read_stl10_labels(paths[1])
    if len(labels) != len(images):
        raise DatasetFormatError(f"{paths[1]}: {len(labels)} labels for {len(images)} images")
    return images, labels


_READERS: dict[str, Callable[[list[Path]], Arrays]] = {
    "idx": _read_idx_pair,
    "cifar10": _cifar_reader("labels"),
    "cifar100": _cifar_reader("fine_labels"),
    "svhn": _read_svhn,
    "stl10": _read_stl10,
}


# ---------------------------------------------------------------------------------------------
# finding and fetching files


def _existing(folder: Path, name: str) -> Path | None:
    """``folder/name``, or its decompressed form for a ``.gz`` name, if either exists."""
    for candidate in (name, name.removesuffix(".gz")):
        if (folder / candidate).exists():
            return folder / candidate
    return None


def find_dataset_folder(spec: DatasetSpec, split: str, root: Path) -> Path | None:
    """The first of the spec's folders under ``root`` holding every file ``split`` needs."""
    for rel in spec.folders:
        folder = root / rel
        if all(_existing(folder, f) for f in spec.split_files[split]):
            return folder
    return None


def _not_found_message(
    spec: DatasetSpec, split: str, root: Path, origin: str, problem: str = "not found"
) -> str:
    lines = [
        f"shiftpool.data: {spec.name} ({split}) {problem} under {root.resolve()} "
        f"(data root from {origin}). Looked in:"
    ]
    for rel in spec.folders:
        folder = (root / rel).resolve()
        missing = [f for f in spec.split_files[split] if not _existing(folder, f)]
        lines.append(f"  {folder}: missing {', '.join(missing)}")
    sources = ", ".join(u for r in spec.resources_for(split) for u in r.urls[:1])
    lines.append(
        f"Pass download=True to fetch it from {sources} (md5-checked), or put the files in "
        "one of these folders."
    )
    return "\n".join(lines)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (so that parallel ranks download only once)."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): run unlocked
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch(spec: DatasetSpec, split: str, root: Path, progress: bool) -> None:
    """Download (and unpack) what ``split`` needs into its first folder under ``root``."""
    target = root / spec.folders[0]
    for resource in spec.resources_for(split):
        if resource.archive:
            archive = root / resource.filename
            if not archive.exists():
                download_file(
                    resource.urls, archive, resource.md5, size=resource.size, progress=progress
                )
            extract_archive(archive, root)
        elif not _existing(target, resource.filename):
            download_file(
                resource.urls,
                target / resource.filename,
                resource.md5,
                size=resource.size,
                progress=progress,
            )


# ---------------------------------------------------------------------------------------------
# the entry point


def load_dataset(
    name: str,
    split: str,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    progress: bool = True,
) -> ImageDataset | ImageFolderDataset:
    """Load split ``split`` of data set ``name`` (see :func:`list_datasets`).

    Files are looked for under :func:`data_root` ``(root)`` in each layout the table accepts
    (e.g. ``MNIST/raw/*.gz`` or ``mnist/``; ``cifar-10-batches-py/``). Missing files are
    downloaded from the official sources (md5-checked, resumable) when ``download`` is true.

    Returns:
        :class:`ImageDataset` (uint8 ``(N, C, H, W)`` in memory, validated) for array data sets;
        :class:`ImageFolderDataset` (decoded lazily) for folder data sets (``tinyimagenet``).

    Raises:
        ValueError: unknown data set or split (the message lists the valid ones).
        DatasetNotFoundError: files missing and ``download=False`` (says which, and where).
        DatasetFormatError: files present but not a valid layout (truncated, wrong shape...).
        DownloadError: a download failed or had the wrong checksum.

    Example:
        >>> train = load_dataset("cifar10", "train", download=False)  # doctest: +SKIP
        >>> train.images.shape, train.images.dtype, train.num_classes  # doctest: +SKIP
        (torch.Size([50000, 3, 32, 32]), torch.uint8, 10)
    """
    spec = dataset_info(name)
    if split not in spec.splits:
        raise InputError(
            f"shiftpool.data.{name}: unknown split {split!r}; available: {', '.join(spec.splits)}"
        )
    if spec.kind == "embedded":
        return embedded_mnist(split)
    root_path = data_root(root)
    folder = find_dataset_folder(spec, split, root_path)
    if folder is None:
        if not download:
            raise DatasetNotFoundError(
                _not_found_message(spec, split, root_path, data_root_origin(root))
            )
        with _exclusive(root_path / f".{spec.name}.lock"):
            # another process may have fetched it while this one waited for the lock
            if find_dataset_folder(spec, split, root_path) is None:
                _fetch(spec, split, root_path, progress)
        folder = find_dataset_folder(spec, split, root_path)
        if folder is None:
            raise DatasetFormatError(
                _not_found_message(
                    spec, split, root_path, data_root_origin(root), "incomplete after download"
                )
            )
    if spec.kind == "folder":
        return _tiny_imagenet(spec, split, folder)
    paths = [_existing(folder, f) for f in spec.split_files[split]]
    images, labels = _READERS[spec.reader](paths)
    return dataset_from_arrays(images, labels, spec, split)


def _tiny_imagenet(spec: DatasetSpec, split: str, folder: Path) -> ImageFolderDataset:
    """Tiny ImageNet's ``train`` (folder per class) or ``val`` = ``test`` (annotations).

    Labels index the sorted class ids of ``wnids.txt``, the same for every split.
    """
    classes = tuple(sorted((folder / "wnids.txt").read_text().split()))
    if len(classes) != spec.num_classes:
        raise DatasetFormatError(
            f"{folder / 'wnids.txt'}: {len(classes)} class ids, expected {spec.num_classes}"
        )
    if split == "train":
        samples, _ = class_folder_samples(folder / "train", classes)
    else:
        samples, _ = annotated_samples(folder / "val", classes)
    if len(samples) != spec.counts[split]:
        raise DatasetFormatError(
            f"shiftpool.data.{spec.name} ({split}): {len(samples)} images under {folder}, "
            f"expected {spec.counts[split]}"
        )
    dataset = ImageFolderDataset(
        samples, classes, name=spec.name, channels=spec.channels, mean=spec.mean, std=spec.std
    )
    first = dataset.decode(0)
    expected = (spec.channels, *spec.image_size)
    if tuple(first.shape) != expected:
        raise DatasetFormatError(
            f"{dataset.paths[0]}: image of shape {tuple(first.shape)}, expected {expected}"
        )
    return dataset
