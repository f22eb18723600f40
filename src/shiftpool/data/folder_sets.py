"""Image folders as data sets: wherever a data-set name is accepted, a folder works too.

Spellings (for :func:`~shiftpool.data.load_dataset`, ``--dataset``, ``TrainConfig.dataset``):

- ``folder:PATH`` — any path, relative to the current folder or absolute;
- ``PATH`` itself when it reads as a path: it contains ``/`` or starts with ``.`` or ``~``
  (``./pets``, ``/data/pets``). A bare word is a registered name (``mnist``...), never a folder;
- options after ``?``, joined by ``&`` (quote the name in a shell):
  ``folder:/data/pets?size=64x64&channels=1&mean=0.45&std=0.27&test_fraction=0.1&seed=3``.
  ``size`` is ``HxW`` or one number (square).

Layouts, detected in this order:

1. Tiny ImageNet: ``wnids.txt``, ``train/<wnid>/**/<image>``, ``val/val_annotations.txt`` with
   ``val/images/`` — with any number of classes (the sorted ids of ``wnids.txt``);
2. split folders: ``train/<class>/**/<image>`` beside ``val/<class>/...`` and/or
   ``test/<class>/...`` (a held-out folder may lack classes, never add any);
3. class folders: ``<class>/**/<image>`` (or under a lone ``train/``), split here: within
   each class, in a seeded random order (seed :data:`DEFAULT_SPLIT_SEED` = 0), the first
   ``round(test_fraction * n)`` images are test images — :data:`DEFAULT_TEST_FRACTION` = 0.2,
   i.e. 20% test, stratified — keeping at least one training image per class. The split
   depends only on the sorted file names and the seed, not on the machine.

Splits are ``train``, ``test`` and ``val``: ``val`` and ``test`` are the same images unless both
folders exist. Labels index the training classes, the same for every split.

Every split is decoded into memory as an :class:`~shiftpool.data.ImageDataset` (uint8
``(N, C, H, W)``: 1.2 GB for Tiny ImageNet's training set), so it has the interface of every
other data set (``images``, ``labels``, ``subset``, ``num_classes``, ``mean``, ``std``).
For a lazy, per-file form use :func:`~shiftpool.data.image_folder`.

- channels: 1 when every training image is stored greyscale (Pillow modes 1, L, LA, I, F) or
  when ``mean`` has one value, else 3 (RGB); or as given.
- size: every image must have the training images' size; otherwise the error names two files and
  their sizes. ``image_size=(h, w)`` (``?size=HxW``) resizes every image (bilinear) instead.
- normalisation: per-channel mean and std of the training images on the [0, 1] scale, unless
  given. Loading only ``test`` therefore decodes the training images once for them (remembered
  for the rest of the process).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shiftpool.core.checks import check_choice, check_int, check_range
from shiftpool.core.errors import InputError, InputTypeError, MissingFileError
from shiftpool.data.catalog import DATASETS, list_datasets
from shiftpool.data.folder import (
    VAL_ANNOTATIONS,
    Statistics,
    annotated_samples,
    channel_statistics,
    check_image_size,
    check_statistics,
    class_folder_samples,
    decode_images,
    image_mode,
)
from shiftpool.data.formats import DatasetFormatError
from shiftpool.data.image_dataset import ImageDataset

__all__ = [
    "DEFAULT_SPLIT_SEED",
    "DEFAULT_TEST_FRACTION",
    "FOLDER_PREFIX",
    "FOLDER_SPLITS",
    "FolderOptions",
    "check_dataset_name",
    "folder_dataset",
    "parse_folder_name",
    "stratified_split",
]

FOLDER_PREFIX = "folder:"
FOLDER_SPLITS = ("train", "test", "val")
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_SPLIT_SEED = 0
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_OPTIONS = ("size", "channels", "mean", "std", "test_fraction", "seed")
_WHERE = "shiftpool.data"

Samples = list[tuple[Path, int]]


@dataclass(frozen=True)
class FolderOptions:
    """How a folder becomes a data set; every field checked at construction.

    Attributes:
        image_size: ``(H, W)`` to resize every image to; ``None`` keeps their (common) size.
        channels: 1 or 3; ``None`` decides from the images (or from ``mean``).
        mean, std: per-channel normalisation on the [0, 1] scale; ``None`` computes them from
            the training images.
        test_fraction: share of each class held out as ``test`` for a folder of class folders,
            in ``(0, 1)``.
        seed: seed of that split, an integer ``>= 0``.

    Example:
        >>> FolderOptions(image_size=(32, 32), channels=1).channels
        1
    """

    image_size: tuple[int, int] | None = None
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    test_fraction: float = DEFAULT_TEST_FRACTION
    seed: int = DEFAULT_SPLIT_SEED

    def __post_init__(self) -> None:
        where = f"{_WHERE}: image folder"
        set_ = object.__setattr__  # frozen: store the normalised values
        set_(self, "image_size", check_image_size(self.image_size, f"{where} image_size"))
        if self.channels is not None:
            check_int(self.channels, f"{where} channels", minimum=1, maximum=3)
            check_choice(self.channels, f"{where} channels", (1, 3))
        stats = check_statistics(self.mean, self.std, self.channels, where)
        set_(self, "mean", None if stats is None else stats[0])
        set_(self, "std", None if stats is None else stats[1])
        check_range(self.test_fraction, f"{where} test_fraction", 0, 1, low_open=True,
                    high_open=True)
        check_int(self.seed, f"{where} seed", minimum=0, maximum=2**63 - 1)

    @property
    def statistics(self) -> Statistics | None:
        """``(mean, std)`` when given."""
        return None if self.mean is None or self.std is None else (self.mean, self.std)


# ---------------------------------------------------------------------------------------------
# names


def _looks_like_path(name: str) -> bool:
    return "/" in name or os.sep in name or name.startswith((".", "~"))


def parse_folder_name(name: str) -> tuple[Path, FolderOptions] | None:
    """``(folder, options)`` for a folder spelling of a data-set name; ``None`` for any other.

    Does not look at the disk (see :func:`check_dataset_name`).

    Raises:
        InputError: a malformed option (names it and what is allowed).

    Example:
        >>> path, options = parse_folder_name("folder:/data/pets?size=64x48&channels=1")
        >>> str(path), options.image_size, options.channels
        ('/data/pets', (64, 48), 1)
        >>> parse_folder_name("mnist") is None
        True
    """
    if name in DATASETS:
        return None
    if name.startswith(FOLDER_PREFIX):
        text = name[len(FOLDER_PREFIX):]
    elif _looks_like_path(name):
        text = name
    else:
        return None
    path_text, query = text, ""
    if "?" in text and not Path(text).expanduser().is_dir():
        path_text, query = text.rsplit("?", 1)
    if not path_text:
        raise InputError(f"{_WHERE}: {name!r} names no folder; write folder:PATH")
    return Path(path_text).expanduser(), _parse_options(query, name)


def _parse_options(query: str, name: str) -> FolderOptions:
    values: dict[str, object] = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if not sep or key not in _OPTIONS:
            raise InputError(
                f"{_WHERE}: image folder option {item!r} in {name!r} is not one of "
                f"{', '.join(k + '=...' for k in _OPTIONS)}"
            )
        values[key] = _option_value(key, value.strip(), name)
    size = values.pop("size", None)
    return FolderOptions(image_size=size, **values)  # type: ignore[arg-type]


def _option_value(key: str, value: str, name: str) -> object:
    try:
        if key == "size":
            parts = value.lower().split("x")
            if len(parts) not in (1, 2):
                raise ValueError
            size = tuple(int(p) for p in parts)
            return size * 2 if len(size) == 1 else size
        if key in ("channels", "seed"):
            return int(value)
        if key in ("mean", "std"):
            return tuple(float(v) for v in value.split(","))
        return float(value)
    except ValueError:
        allowed = {
            "size": "HxW or N (positive integers)",
            "channels": "1 or 3",
            "mean": "numbers separated by commas",
            "std": "positive numbers separated by commas",
            "test_fraction": "a number in (0, 1)",
            "seed": "an integer >= 0",
        }[key]
        raise InputError(
            f"{_WHERE}: image folder option {key}={value!r} in {name!r} must be {allowed}"
        ) from None


def unknown_name_error(name: str) -> InputError:
    hint = ""
    if name and "/" not in name and Path(name).is_dir():
        hint = f" (for the folder {name!r} here write ./{name} or folder:{name})"
    return InputError(
        f"{_WHERE}: unknown data set {name!r}; available: {', '.join(list_datasets())}, or an "
        f"image folder of class sub-folders given as folder:PATH or a path{hint}"
    )


def check_dataset_name(name: str) -> str:
    """``name`` if :func:`load_dataset` can take it; a clear error before any work otherwise.

    Accepts the registered names (:func:`list_datasets`) and image folders (``folder:PATH``, a
    path, options after ``?``): the folder must exist and hold sub-folders (class folders, or
    ``train/`` beside ``val/``/``test/``). Cheap: it reads no image and lists one folder.

    Raises:
        InputTypeError: not a string.
        MissingFileError: a folder that does not exist (names it).
        DatasetFormatError: a folder without sub-folders.
        InputError: an unknown name (lists the valid ones) or a malformed folder option.

    Example:
        >>> check_dataset_name("cifar10")
        'cifar10'
        >>> check_dataset_name("cifar")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.InputError: shiftpool.data: unknown data set 'cifar'; available: ...
    """
    if not isinstance(name, str):
        raise InputTypeError(f"{_WHERE}: a data set name must be a string, got {name!r}")
    parsed = parse_folder_name(name)
    if parsed is None:
        if name in DATASETS:
            return name
        raise unknown_name_error(name)
    folder, _ = parsed
    _check_folder(folder)
    if not any(_subfolders(folder)):
        raise DatasetFormatError(
            f"{folder}: no class folders found (expected one folder per class, or train/ "
            "beside val/ or test/ of class folders)"
        )
    return name


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise MissingFileError(f"{_WHERE}: image folder {folder} {what}")


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


# ---------------------------------------------------------------------------------------------
# layouts


def stratified_split(
    labels: Sequence[int] | np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` sorted indices: within each class, in a seeded random order, the first
    ``round(test_fraction * n)`` (half up) are test, keeping at least one training image.

    Example:
        >>> train, test = stratified_split([0] * 5 + [1] * 10, 0.2, seed=0)
        >>> len(train), len(test), sorted(np.asarray([0] * 5 + [1] * 10)[test].tolist())
        (12, 3, [0, 1, 1])
    """
    labels = np.asarray(labels)
    generator = np.random.Generator(np.random.PCG64(seed))
    train, test = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[generator.permutation(len(members))]
        n_test = min(len(members) - 1, math.floor(test_fraction * len(members) + 0.5))
        test.append(members[:n_test])
        train.append(members[n_test:])
    empty = np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(train or [empty])), np.sort(np.concatenate(test or [empty]))


def _held_out_samples(folder: Path, classes: tuple[str, ...]) -> Samples:
    """A held-out folder's samples, labelled by the training classes."""
    if (folder / VAL_ANNOTATIONS).is_file():
        return annotated_samples(folder, classes)[0]
    names = [p.name for p in _subfolders(folder)]
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise DatasetFormatError(
            f"{folder}: class folder {unknown[0]!r} is not among the {len(classes)} training "
            f"classes ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})"
        )
    samples, _ = class_folder_samples(folder, names)
    index = {name: label for label, name in enumerate(classes)}
    return [(path, index[names[label]]) for path, label in samples]


@dataclass(frozen=True)
class _Layout:
    kind: str  # "tinyimagenet", "splits" or "classes"
    classes: tuple[str, ...]
    train: Samples
    held_out: dict[str, Path]  # split -> folder ("splits", "tinyimagenet")
    test: Samples  # the seeded test split ("classes")

    def samples(self, split: str) -> Samples:
        if split == "train":
            return self.train
        if self.kind == "classes":
            return self.test
        return _held_out_samples(self.held_out[split], self.classes)


def _layout(root: Path, options: FolderOptions) -> _Layout:
    held = {n: root / n for n in ("val", "test") if (root / n).is_dir()}
    if (root / "wnids.txt").is_file() and (root / "train").is_dir():
        classes = tuple(sorted(set((root / "wnids.txt").read_text().split())))
        if not classes:
            raise DatasetFormatError(f"{root / 'wnids.txt'}: no class ids")
        train, _ = class_folder_samples(root / "train", classes)
        kind = "tinyimagenet"
    elif (root / "train").is_dir() and held:
        train, classes = class_folder_samples(root / "train")
        kind = "splits"
    else:  # class folders, directly or under a lone train/: split them here
        samples, classes = class_folder_samples(root / "train" if (root / "train").is_dir()
                                                else root)  # fmt: skip
        train_idx, test_idx = stratified_split(
            [label for _, label in samples], options.test_fraction, options.seed
        )
        return _Layout("classes", classes, [samples[i] for i in train_idx],
                       {}, [samples[i] for i in test_idx])  # fmt: skip
    if "val" in held or "test" in held:
        held.setdefault("val", held.get("test", root))
        held.setdefault("test", held["val"])
    return _Layout(kind, classes, train, held, [])


# ---------------------------------------------------------------------------------------------
# loading


@dataclass(frozen=True)
class _Profile:
    """What every split of one folder shares, decided by its training images."""

    channels: int
    shape: tuple[int, int, int]
    reference: Path  # a training image of that shape, for messages
    statistics: Statistics


_PROFILES: dict[str, _Profile] = {}
_MAX_PROFILES = 16


def _profile_key(root: Path, train: Samples, options: FolderOptions) -> str:
    """Identifies a folder's training images (names, sizes, times) and the options used."""
    digest = hashlib.sha256(repr((str(root.resolve()), options.image_size, options.channels,
                                  options.statistics)).encode())  # fmt: skip
    for path, label in train:
        stat = path.stat()
        digest.update(f"{path}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _auto_channels(paths: Sequence[Path]) -> int:
    """1 if every image is stored greyscale, else 3 (reads only the headers)."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="shiftpool-headers") as pool:
        for mode, _ in pool.map(image_mode, paths):
            if mode not in _GREY_MODES:
                return 3
    return 1


def _channels(options: FolderOptions, train: Samples) -> int:
    if options.channels is not None:
        return options.channels
    if options.mean is not None:
        return len(options.mean)
    return _auto_channels([path for path, _ in train])


def _train_profile(
    root: Path, train: Samples, options: FolderOptions, images: np.ndarray | None = None
) -> _Profile:
    """The folder's profile, from ``images`` (the decoded training split) or by reading it."""
    key = _profile_key(root, train, options)
    if key in _PROFILES:
        return _PROFILES[key]
    paths = [path for path, _ in train]
    channels = images.shape[1] if images is not None else _channels(options, train)
    stats = options.statistics
    if images is None:
        shape = tuple(decode_images(paths[:1], channels, options.image_size).shape[1:])
        if stats is None:  # decode in chunks: the statistics need every pixel
            chunks = (decode_images(paths[i:i + 1024], channels, options.image_size,
                                    reference=(paths[0], shape))
                      for i in range(0, len(paths), 1024))  # fmt: skip
            stats = channel_statistics(chunks)
    else:
        shape = tuple(images.shape[1:])
        stats = stats or channel_statistics([images])
    profile = _Profile(channels, shape, paths[0], stats)  # type: ignore[arg-type]
    if len(_PROFILES) >= _MAX_PROFILES:
        _PROFILES.pop(next(iter(_PROFILES)))
    _PROFILES[key] = profile
    return profile


def folder_dataset(
    path: str | os.PathLike[str],
    split: str = "train",
    *,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
    name: str | None = None,
) -> ImageDataset:
    """Split ``split`` of an image folder, decoded into memory (see the module's layouts).

    Also ``load_dataset("folder:PATH?size=HxW&...", split)``: the options are these arguments.

    Args:
        path: the folder.
        split: ``"train"``, ``"test"`` or ``"val"``.
        image_size: ``(H, W)`` (or an int) to resize every image to; default: keep their size,
            which must be the same for all.
        channels: 1 (greyscale) or 3 (RGB); default: 1 if every training image is greyscale.
        mean, std: per-channel normalisation; default: computed from the training images.
        test_fraction, seed: the stratified split of a folder of class folders (20% test).
        name: the data set's name in messages and results; default: the folder's name.

    Returns:
        An :class:`ImageDataset`: images uint8 ``(N, C, H, W)``, labels int64 ``(N,)``.

    Raises:
        MissingFileError: no such folder.
        DatasetFormatError: no class folders or images, an undecodable file, images of different
            sizes (names two, and suggests ``image_size``), an empty split.
        InputError: a bad argument (names it and what is allowed).

    Example:
        >>> train = folder_dataset("pets", "train", image_size=64)  # doctest: +SKIP
        >>> train.images.shape, train.num_classes, len(train.mean)  # doctest: +SKIP
        (torch.Size([800, 3, 64, 64]), 2, 3)
    """
    options = FolderOptions(image_size=image_size, channels=channels,  # type: ignore[arg-type]
                            mean=mean, std=std, test_fraction=test_fraction, seed=seed)  # fmt: skip
    return load_folder(Path(path).expanduser(), split, options, name)


def load_folder(
    root: Path, split: str, options: FolderOptions, name: str | None = None
) -> ImageDataset:
    """:func:`folder_dataset` with its options already checked (``load_dataset`` uses it)."""
    _check_folder(root)
    check_choice(split, f"{_WHERE}: image folder {root} split", FOLDER_SPLITS)
    name = name or root.resolve().name or str(root)
    layout = _layout(root, options)
    train = layout.train
    if split == "train":
        channels = _channels(options, train)
        images = decode_images([p for p, _ in train], channels, options.image_size)
        profile = _train_profile(root, train, options, images)
        samples = train
    else:
        if layout.kind != "classes" and split not in layout.held_out:
            raise DatasetFormatError(
                f"{_WHERE}: image folder {root} has no {split} split: add val/ or test/ beside "
                "train/, or use one folder per class (split here)"
            )
        samples = layout.samples(split)
        if not samples:
            raise DatasetFormatError(
                f"{_WHERE}: image folder {root}: the {split} split is empty ({len(train)} "
                f"training images; test_fraction={options.test_fraction} holds none out); add "
                "images, or use train/ and test/ folders"
            )
        profile = _train_profile(root, train, options)
        images = decode_images([p for p, _ in samples], profile.channels, options.image_size,
                               reference=(profile.reference, profile.shape))  # fmt: skip
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    mean, std = profile.statistics
    return ImageDataset(torch.from_numpy(images), labels, name, layout.classes, mean, std, split)
