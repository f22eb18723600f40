"""Image files on disk, decoded lazily with Pillow (``pip install shiftpool[vision]``).

Two layouts:

- a folder per class: ``root/<class>/**/<image>`` (classes sorted by name, files found
  recursively, so Tiny ImageNet's ``train/<wnid>/images/*.JPEG`` works as is);
- Tiny ImageNet's validation layout: ``val/images/*.JPEG`` with ``val/val_annotations.txt``
  (tab-separated: file name, class id, box).

:class:`ImageFolderDataset` returns ``(uint8 (C, H, W), label)`` per index, so that a
``torch.utils.data.DataLoader`` with workers decodes in parallel; :class:`BatchLoader` does that
for you and then augments and normalises whole batches as it does for in-memory data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from shiftpool.core.errors import InputError, MissingExtraError, MissingFileError
from shiftpool.data.formats import DatasetFormatError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "image_folder",
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
            "shiftpool.data.ImageFolderDataset decodes images with Pillow, which is not "
            "installed: pip install 'shiftpool[vision]' (or pip install pillow)"
        ) from err
    return Image


class ImageFolderDataset(Dataset):
    """Labelled image files, decoded on access to uint8 ``(C, H, W)`` tensors.

    Args:
        samples: ``(path, label)`` pairs.
        classes: class names, index = label.
        name: a name for messages and results.
        channels: 3 decodes as RGB, 1 as greyscale.
        size: ``(H, W)`` (or an int) to resize every image to; ``None`` keeps each file's size,
            which must then agree within a batch.
        mean, std: per-channel statistics used by :class:`BatchLoader` to normalise.

    Example:
        >>> ds = image_folder("tiny-imagenet-200/train")  # doctest: +SKIP
        >>> image, label = ds[0]; image.shape, image.dtype  # doctest: +SKIP
        (torch.Size([3, 64, 64]), torch.uint8)
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        classes: Sequence[str],
        *,
        name: str = "folder",
        channels: int = 3,
        size: int | tuple[int, int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if channels not in (1, 3):
            raise InputError(f"shiftpool.data.{name}: channels must be 1 or 3, got {channels}")
        if len(mean) != channels or len(std) != channels:
            raise InputError(
                f"shiftpool.data.{name}: mean and std need {channels} values, "
                f"got {len(mean)} and {len(std)}"
            )
        self.paths = [Path(p) for p, _ in samples]
        self.labels = torch.tensor([int(label) for _, label in samples], dtype=torch.int64)
        self.classes = tuple(classes)
        self.name = name
        self.channels = channels
        self.size = (size, size) if isinstance(size, int) else size
        self.mean, self.std = tuple(mean), tuple(std)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.decode(index), int(self.labels[index])

    def decode(self, index: int) -> torch.Tensor:
        """Image ``index`` as uint8 ``(C, H, W)``."""
        image_module = _pil_image()
        path = self.paths[index]
        try:
            with image_module.open(path) as image:
                image = image.convert("RGB" if self.channels == 3 else "L")
                if self.size is not None and image.size != (self.size[1], self.size[0]):
                    image = image.resize((self.size[1], self.size[0]), image_module.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
        except OSError as err:
            raise DatasetFormatError(f"{path}: cannot decode image ({err})") from err
        if array.ndim == 2:
            array = array[:, :, None]
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


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
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> ImageFolderDataset:
    """An :class:`ImageFolderDataset` over ``path``, layout detected.

    A folder holding ``val_annotations.txt`` is read with it; any other as a folder per class.
    Pass ``classes`` to fix the label order (e.g. the training set's) for a validation folder.

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
