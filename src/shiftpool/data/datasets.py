"""``load_dataset``: find a data set under the data root, fetch what is missing, read, validate.

A folder already in place is read as it is — its checksums are *not* compared with the published
ones (a re-encoded copy is a valid layout) — and the decoded arrays are validated against the
table in :mod:`shiftpool.data.catalog`: image shape, dtype, count per split, label range.
Downloads, on the other hand, are always md5-checked (:func:`download_file`), and so is an
archive found in the data root before it is unpacked; unpacking never replaces what is there.
Image folders of one's own (``"folder:PATH"``) are read by :mod:`shiftpool.data.folder_sets`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from shiftpool.core.errors import InputError, InputTypeError, MissingFileError
from shiftpool.data.catalog import (
    DATASETS,
    DatasetSpec,
    Resource,
    data_root,
    data_root_origin,
    dataset_info,
)
from shiftpool.data.download import DownloadError, download_file, extract_archive
from shiftpool.data.embedded import embedded_mnist
from shiftpool.data.folder_sets import (
    FolderOptions,
    load_folder,
    parse_folder_name,
    unknown_name_error,
)
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

__all__ = ["DatasetNotFoundError", "exclusive_lock", "find_dataset_folder", "load_dataset"]

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
    """One line: where the files were looked for, what is missing, and how to get them."""
    looked = []
    for rel in spec.folders:
        folder = (root / rel).resolve()
        missing = [f for f in spec.split_files[split] if not _existing(folder, f)]
        looked.append(f"{folder} (missing {', '.join(missing)})")
    sources = ", ".join(u for r in spec.resources_for(split) for u in r.urls[:1])
    return (
        f"shiftpool.data: {spec.name} ({split}) {problem} under {root.resolve()} (data root "
        f"from {origin}); looked in {'; '.join(looked)}; pass download=True to fetch it from "
        f"{sources} (md5-checked), or {_by_hand(spec, split, root)}"
    )


def _by_hand(spec: DatasetSpec, split: str, root: Path) -> str:
    """How to place ``split``'s files by hand: which URL to save under which path."""
    target = (root / spec.folders[0]).resolve()
    steps = []
    for resource in spec.resources_for(split):
        if resource.archive:
            files = ", ".join(spec.split_files[split])
            steps.append(
                f"save {resource.urls[0]} as {root.resolve() / resource.filename} (it is "
                f"md5-checked and unpacked on the next run) or unpack it yourself so that "
                f"{target} holds {files}"
            )
        else:
            steps.append(f"save {resource.urls[0]} as {target / resource.filename}")
    return "to place the files by hand, " + "; ".join(steps)


@contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
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
    """Download (and unpack) what ``split`` needs into its first folder under ``root``.

    An archive already in the data root is unpacked only if it has the published md5; unpacking
    adds what is missing and never replaces a file or folder that is there.
    """
    target = root / spec.folders[0]
    for resource in spec.resources_for(split):
        if resource.archive:
            archive = root / resource.filename
            if not archive.exists():
                _download(spec, split, root, resource, archive, progress)
            extract_archive(archive, root, md5=resource.md5)
        elif not _existing(target, resource.filename):
            _download(spec, split, root, resource, target / resource.filename, progress)


def _download(
    spec: DatasetSpec, split: str, root: Path, resource: Resource, dest: Path, progress: bool
) -> None:
    try:
        download_file(resource.urls, dest, resource.md5, size=resource.size, progress=progress)
    except DownloadError as err:
        raise DownloadError(f"{err}; {_by_hand(spec, split, root)}") from None


# ---------------------------------------------------------------------------------------------
# the entry point


def load_dataset(
    name: str,
    split: str,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    progress: bool = True,
) -> ImageDataset:
    """Load split ``split`` of data set ``name``: a registered name or an image folder.

    Registered names (:func:`list_datasets`): files are looked for under :func:`data_root`
    ``(root)`` in each layout the table accepts (e.g. ``MNIST/raw/*.gz`` or ``mnist/``;
    ``cifar-10-batches-py/``). Missing files are downloaded from the official sources
    (md5-checked, resumable) when ``download`` is true.

    Image folders: ``"folder:PATH"`` or a path (``"./pets"``, ``"/data/pets"``), options after
    ``?`` (``"folder:pets?size=64x64"``); layouts, splits and normalisation as in
    :mod:`shiftpool.data.folder_sets` (``root`` and ``download`` do not apply).

    Returns:
        :class:`ImageDataset`: uint8 ``(N, C, H, W)`` in memory, int64 labels, validated, with
        ``mean``/``std`` for normalisation — for every kind of data set.

    Raises:
        InputError: unknown data set or split (the message lists the valid ones).
        DatasetNotFoundError: files missing and ``download=False`` (says which, and where).
        DatasetFormatError: files present but not a valid layout (truncated, wrong shape...).
        DownloadError: a download failed or had the wrong checksum (says how to place the
            files by hand).

    Example:
        >>> train = load_dataset("cifar10", "train", download=False)  # doctest: +SKIP
        >>> train.images.shape, train.images.dtype, train.num_classes  # doctest: +SKIP
        (torch.Size([50000, 3, 32, 32]), torch.uint8, 10)
    """
    if not isinstance(name, str):
        raise InputTypeError(f"shiftpool.data: a data set name must be a string, got {name!r}")
    if name not in DATASETS:
        folder = parse_folder_name(name)
        if folder is None:
            raise unknown_name_error(name)
        return load_folder(folder[0], split, folder[1])
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
        with exclusive_lock(root_path / f".{spec.name}.lock"):
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


def _tiny_imagenet(spec: DatasetSpec, split: str, folder: Path) -> ImageDataset:
    """Tiny ImageNet's ``train`` (folder per class) or ``val`` = ``test`` (annotations).

    Labels index the sorted class ids of ``wnids.txt`` (any number of them, so a subset of the
    200 classes loads), the same for every split; normalised with the full set's statistics.
    """
    options = FolderOptions(channels=spec.channels, mean=spec.mean, std=spec.std)
    dataset = load_folder(folder, split, options, spec.name)
    expected = (spec.channels, *spec.image_size)
    if dataset.image_shape != expected:
        raise DatasetFormatError(
            f"shiftpool.data.{spec.name} ({split}): images of shape {dataset.image_shape} under "
            f"{folder}, expected {expected}"
        )
    return dataset
