"""Image files on disk, decoded with Pillow (``pip install shiftpool[vision]``).

This module reads files; :mod:`shiftpool.data.folder_sets` turns a whole folder into a named
data set in memory (``load_dataset("folder:PATH", split)``). Two file layouts:

- a folder per class: ``root/<class>/**/<image>`` (classes sorted by name, files found
  recursively, so Tiny ImageNet's ``train/<wnid>/images/*.JPEG`` works as is);
- Tiny ImageNet's validation layout: ``val/images/*.JPEG`` with ``val/val_annotations.txt``
  (tab-separated: file name, class id, box).

:class:`ImageFolderDataset` returns ``(uint8 (C, H, W), label)`` per index, so that a
``torch.utils.data.DataLoader`` with workers decodes in parallel; :class:`BatchLoader` does that
for you and then augments and normalises whole batches as it does for in-memory data. It is the
lazy form: for the in-memory interface (``images``, ``subset``...) call
:meth:`ImageFolderDataset.to_memory` or use :func:`shiftpool.data.load_dataset` with the folder.

Normalisation statistics that are not given are computed from the folder's own images (per
channel, on the [0, 1] scale), never taken from another data set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from shiftpool.core.checks import check_choice, check_finite, check_int, check_range, is_int
from shiftpool.core.errors import InputError, InputTypeError, MissingExtraError, MissingFileError
from shiftpool.data.formats import DatasetFormatError
from shiftpool.data.image_dataset import ImageDataset

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "channel_statistics",
    "decode_image",
    "image_folder",
    "mixed_sizes_error",
    "read_val_annotations",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VAL_ANNOTATIONS = "val_annotations.txt"


def _pil_image():
    try:
        from PIL import Image
    except ImportError as err:
        raise MissingExtraError(
            "shiftpool.data decodes image files with Pillow, which is not "
            "installed: pip install 'shiftpool[vision]' (or pip install pillow)"
        ) from err
    return Image


Statistics = tuple[tuple[float, ...], tuple[float, ...]]


def check_image_size(size: object, what: str) -> tuple[int, int] | None:
    """``size`` as ``(H, W)``: ``None``, an int ``>= 1`` (square) or a pair of them.

    Example:
        >>> check_image_size(32, "size"), check_image_size((24, 32), "size")
        ((32, 32), (24, 32))
    """
    if size is None:
        return None
    if is_int(size):
        size = (size, size)
    if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(map(is_int, size)):
        raise InputTypeError(f"{what} must be an integer or a pair (height, width), got {size!r}")
    for value in size:
        check_int(value, what, minimum=1)
    return int(size[0]), int(size[1])


def check_statistics(
    mean: Sequence[float] | None, std: Sequence[float] | None, channels: int | None, what: str
) -> Statistics | None:
    """``(mean, std)`` as tuples after checking them, or ``None`` when neither is given.

    Both or neither; finite values, ``std > 0``; one value per channel when ``channels`` is
    known, and the same number of values in both.

    Example:
        >>> check_statistics([0.5], [0.25], 1, "folder")
        ((0.5,), (0.25,))
    """
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise InputError(f"{what}: give both mean and std, or neither")
    for values, name in ((mean, "mean"), (std, "std")):
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise InputTypeError(f"{what}: {name} must be a list of numbers, got {values!r}")
    mean_t = tuple(check_finite(v, f"{what}: mean") for v in mean)
    std_t = tuple(check_range(v, f"{what}: std", 0, None, low_open=True) for v in std)
    count = channels if channels is not None else len(mean_t)
    if len(mean_t) != count or len(std_t) != count:
        raise InputError(
            f"{what}: mean and std need {count} values (one per channel), got {len(mean_t)} "
            f"and {len(std_t)}"
        )
    return mean_t, std_t


def decode_image(path: Path, channels: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """The image at ``path`` as uint8 ``(C, H, W)``: RGB for 3 channels, greyscale for 1.

    ``size`` ``(H, W)`` resizes (bilinear) when the file has another size.

    Raises:
        DatasetFormatError: the file cannot be decoded (names it).
    """
    image_module = _pil_image()
    try:
        with image_module.open(path) as image:
            image = image.convert("RGB" if channels == 3 else "L")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), image_module.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise DatasetFormatError(f"{path}: cannot decode image ({err})") from err
    if array.ndim == 2:
        array = array[:, :, None]
    return array.transpose(2, 0, 1).copy()  # a writable, contiguous (C, H, W)


def decode_images(
    paths: Sequence[Path],
    channels: int,
    size: tuple[int, int] | None = None,
    *,
    reference: tuple[Path, tuple[int, ...]] | None = None,
) -> np.ndarray:
    """Decode every file into one uint8 array ``(N, C, H, W)``, with a few threads.

    Args:
        paths: image files (at least one).
        channels: 1 (greyscale) or 3 (RGB).
        size: ``(H, W)`` to resize every image to; ``None`` requires one size for all.
        reference: ``(path, (C, H, W))`` of an image the others must match when ``size`` is
            None (e.g. a training image, for a test split); default: the first of ``paths``.

    Raises:
        DatasetFormatError: a file cannot be decoded, or two images differ in size (the message
            names both files and their sizes, and how to resize).

    Example:
        >>> decode_images([Path("cat.png"), Path("dog.png")], 3).shape  # doctest: +SKIP
        (2, 3, 64, 64)
    """
    if not paths:
        raise DatasetFormatError("shiftpool.data: no images to decode")
    first = decode_image(paths[0], channels, size)
    ref_path, ref_shape = reference if reference is not None else (paths[0], first.shape)
    if first.shape != tuple(ref_shape):
        raise mixed_sizes_error(ref_path, ref_shape, paths[0], first.shape)
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    out[0] = first

    def decode_into(i: int) -> None:
        image = decode_image(paths[i], channels, size)
        if image.shape != first.shape:
            raise mixed_sizes_error(ref_path, ref_shape, paths[i], image.shape)
        out[i] = image

    workers = max(1, min(8, os.cpu_count() or 1))  # Pillow decodes without holding the GIL
    pool = ThreadPoolExecutor(workers, thread_name_prefix="shiftpool-decode")
    try:
        for _ in pool.map(decode_into, range(1, len(paths))):
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def image_mode(path: Path) -> tuple[str, tuple[int, int]]:
    """``(Pillow mode, (H, W))`` of an image file, from its header (no pixels decoded)."""
    image_module = _pil_image()
    try:
        with image_module.open(path) as image:
            return image.mode, (image.size[1], image.size[0])
    except (OSError, ValueError) as err:
        raise DatasetFormatError(f"{path}: cannot decode image ({err})") from err


def mixed_sizes_error(
    first: Path, first_shape: Sequence[int], other: Path, other_shape: Sequence[int]
) -> DatasetFormatError:
    """The error for two images of different sizes, naming both and the remedy."""
    def text(shape: Sequence[int]) -> str:
        return f"{shape[-2]}x{shape[-1]}"

    return DatasetFormatError(
        f"shiftpool.data: images of different sizes (height x width): {first} is "
        f"{text(first_shape)}, {other} is {text(other_shape)}; resize them all by passing "
        f"image_size=(h, w) (or size= to image_folder), or add ?size=HxW to the data-set name "
        f"(e.g. 'folder:PATH?size={text(first_shape)}')"
    )


def channel_statistics(batches: Iterable[np.ndarray]) -> Statistics:
    """Per-channel mean and standard deviation of uint8 images, on the [0, 1] scale.

    Exact (from a 256-bin histogram per channel). A channel without variation gets std 1.0, so
    that normalising it gives 0 rather than a division by zero.

    Args:
        batches: uint8 arrays ``(N, C, H, W)`` (or single images ``(C, H, W)``), all with the
            same number of channels.

    Example:
        >>> x = np.array([[[[0, 255]]], [[[255, 255]]]], dtype=np.uint8)  # (2, 1, 1, 2)
        >>> mean, std = channel_statistics([x])
        >>> mean, [round(s, 4) for s in std]
        ((0.75,), [0.433])
    """
    histogram: np.ndarray | None = None
    for batch in batches:
        batch = batch[None] if batch.ndim == 3 else batch
        channels = batch.shape[1]
        if histogram is None:
            histogram = np.zeros((channels, 256), dtype=np.int64)
        for c in range(channels):
            histogram[c] += np.bincount(batch[:, c].ravel(), minlength=256)
    if histogram is None or int(histogram[0].sum()) == 0:
        raise DatasetFormatError("shiftpool.data: no pixels to compute mean and std from")
    values = np.arange(256, dtype=np.float64) / 255.0
    count = histogram.sum(axis=1).astype(np.float64)
    mean = (histogram * values).sum(axis=1) / count
    var = np.maximum((histogram * values**2).sum(axis=1) / count - mean**2, 0.0)
    std = np.sqrt(var)
    return tuple(float(m) for m in mean), tuple(float(s) if s > 0 else 1.0 for s in std)


class ImageFolderDataset(Dataset):
    """Labelled image files, decoded on access to uint8 ``(C, H, W)`` tensors (the lazy form).

    Args:
        samples: ``(path, label)`` pairs.
        classes: class names, index = label.
        name: a name for messages and results.
        channels: 3 decodes as RGB, 1 as greyscale.
        size: ``(H, W)`` (or an int) to resize every image to; ``None`` keeps each file's size,
            which must then agree within a batch.
        mean, std: per-channel statistics used by :class:`BatchLoader` to normalise, one value
            per channel; ``None`` computes them from these images the first time they are read
            (one pass that decodes every image).

    Example:
        >>> ds = image_folder("tiny-imagenet-200/train")  # doctest: +SKIP
        >>> image, label = ds[0]; image.shape, image.dtype  # doctest: +SKIP
        (torch.Size([3, 64, 64]), torch.uint8)
        >>> ds.to_memory().images.shape  # doctest: +SKIP
        torch.Size([100000, 3, 64, 64])
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        classes: Sequence[str],
        *,
        name: str = "folder",
        channels: int = 3,
        size: int | tuple[int, int] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        where = f"shiftpool.data.{name}"
        check_int(channels, f"{where}: channels", minimum=1, maximum=3)
        check_choice(channels, f"{where}: channels", (1, 3))
        self.size = check_image_size(size, f"{where}: size")
        self._stats = check_statistics(mean, std, channels, where)
        self.paths = [Path(p) for p, _ in samples]
        self.labels = torch.tensor([int(label) for _, label in samples], dtype=torch.int64)
        self.classes = tuple(classes)
        self.name = name
        self.channels = channels

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean on the [0, 1] scale (computed from the images if not given)."""
        return self._statistics()[0]

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation on the [0, 1] scale (computed if not given)."""
        return self._statistics()[1]

    def _statistics(self) -> Statistics:
        if self._stats is None:
            self._stats = channel_statistics(self.decode(i) for i in range(len(self)))
        return self._stats

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.decode(index), int(self.labels[index])

    def decode(self, index: int) -> torch.Tensor:
        """Image ``index`` as uint8 ``(C, H, W)``."""
        return torch.from_numpy(decode_image(self.paths[index], self.channels, self.size))

    def subset(self, indices: Sequence[int] | torch.Tensor) -> ImageFolderDataset:
        """The images at ``indices``, same classes and normalisation (computed first if needed).

        Example:
            >>> first_ten = ds.subset(range(10))  # doctest: +SKIP
        """
        index = torch.as_tensor(indices, dtype=torch.int64).tolist()
        samples = [(self.paths[i], int(self.labels[i])) for i in index]
        return ImageFolderDataset(
            samples, self.classes, name=self.name, channels=self.channels, size=self.size,
            mean=self.mean, std=self.std,
        )

    def to_memory(self, split: str = "") -> ImageDataset:
        """Every image decoded into an in-memory :class:`~shiftpool.data.ImageDataset`.

        Raises:
            DatasetFormatError: images of different sizes (names two of them; pass ``size``).
        """
        images = torch.from_numpy(decode_images(self.paths, self.channels, self.size))
        if self._stats is None:
            self._stats = channel_statistics([images.numpy()])
        return ImageDataset(
            images, self.labels.clone(), self.name, self.classes, self.mean, self.std, split
        )


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def class_folder_samples(
    root: Path, classes: Sequence[str] | None = None
) -> tuple[list[tuple[Path, int]], tuple[str, ...]]:
    """``(samples, classes)`` of a folder-per-class tree; classes default to the sorted folders."""
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0] != ".")
    if not classes:
        raise DatasetFormatError(f"{root}: no class folders found")
    samples = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise DatasetFormatError(f"{root}: class folder {name!r} is missing")
        samples += [(p, label) for p in sorted(folder.rglob("*")) if _is_image(p)]
    if not samples:
        raise DatasetFormatError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return samples, tuple(classes)


def read_val_annotations(path: str | Path) -> dict[str, str]:
    """``{file name: class id}`` from a Tiny ImageNet ``val_annotations.txt``."""
    path = Path(path)
    mapping = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DatasetFormatError(f"{path}:{number}: expected 'file<TAB>class...', got {line!r}")
        mapping[fields[0]] = fields[1]
    return mapping


def annotated_samples(
    folder: Path, classes: Sequence[str] | None = None
) -> tuple[list[tuple[Path, int]], tuple[str, ...]]:
    """``(samples, classes)`` of a ``val_annotations.txt`` folder (images under ``images/``)."""
    annotations = read_val_annotations(folder / VAL_ANNOTATIONS)
    classes = tuple(classes) if classes is not None else tuple(sorted(set(annotations.values())))
    index = {name: label for label, name in enumerate(classes)}
    images_dir = folder / "images" if (folder / "images").is_dir() else folder
    samples = []
    for filename, wnid in sorted(annotations.items()):
        if wnid not in index:
            raise DatasetFormatError(f"{folder / VAL_ANNOTATIONS}: unknown class {wnid!r}")
        path = images_dir / filename
        if not path.is_file():
            raise DatasetFormatError(f"{folder / VAL_ANNOTATIONS}: listed image {path} is missing")
        samples.append((path, index[wnid]))
    return samples, classes


def image_folder(
    path: str | Path,
    *,
    classes: Sequence[str] | None = None,
    name: str | None = None,
    channels: int = 3,
    size: int | tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ImageFolderDataset:
    """An :class:`ImageFolderDataset` over ``path`` (decoded lazily), layout detected.

    A folder holding ``val_annotations.txt`` is read with it; any other as a folder per class.
    Pass ``classes`` to fix the label order (e.g. the training set's) for a validation folder,
    and the training set's ``mean``/``std`` (they default to this folder's own statistics).
    For a whole data set in memory with train/test splits see :func:`load_dataset`
    (``"folder:PATH"``).

    Example:
        >>> val = image_folder("tiny-imagenet-200/val", classes=train.classes)  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_dir():
        raise MissingFileError(f"shiftpool.data: image folder {path} does not exist")
    if (path / VAL_ANNOTATIONS).is_file():
        samples, classes = annotated_samples(path, classes)
    else:
        samples, classes = class_folder_samples(path, classes)
    return ImageFolderDataset(
        samples,
        classes,
        name=name or path.name,
        channels=channels,
        size=size,
        mean=mean,
        std=std,
    )
