"""Local homogeneity of whole data sets (Mouton et al.), one row per data set.

Every argument is checked before the first data set is loaded, so a bad window or tolerance
never costs a download. Works on in-memory data sets (``images`` tensor) and on image folders
decoded one image at a time alike.

Example:
    >>> rows = homogeneity_rows(["mnist5k"], max_images=200)  # doctest: +SKIP
    >>> rows[0].fraction.value  # doctest: +SKIP
    0.53
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

import shiftpool.data as sdata
from shiftpool.core.checks import check_choice, check_int, check_range
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.metrics import Estimate, dataset_homogeneity

SPLITS = ("train", "test")
BATCH = 1000
WHERE = "shiftpool.homogeneity"


class ImageSource(Protocol):
    """What :func:`homogeneity_rows` reads: ``len()`` and ``source[i] -> (image, label)``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]: ...


@dataclass(frozen=True)
class HomogeneityRow:
    """The homogeneity of one data set: both measures with 95% intervals, and the settings."""

    dataset: str
    images: int
    window: int
    eps: float
    fraction: Estimate
    score: Estimate

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (estimates as ``value``/``low``/``high`` dicts)."""
        return {"dataset": self.dataset, "images": self.images, "window": self.window,
                "eps": self.eps, "fraction": self.fraction.to_dict(),
                "score": self.score.to_dict()}


def check_dataset_names(datasets: Sequence[str]) -> list[str]:
    """``datasets`` as a list if it names at least one data set and every name is known."""
    if isinstance(datasets, str) or not isinstance(datasets, Sequence):
        raise InputTypeError(f"{WHERE}: datasets must be a list of names, got {datasets!r}")
    names = list(datasets)
    if not names:
        raise InputError(f"{WHERE}: give at least one data set; available: "
                         f"{', '.join(sdata.list_datasets())}")
    check_name = getattr(sdata, "check_dataset_name", None)
    for name in names:
        if check_name is not None:
            check_name(name)
        else:  # before shiftpool.data had a validator that also knows folder paths
            sdata.dataset_info(name)
    return names


def check_homogeneity_settings(datasets: Sequence[str], *, split: str = "test", window: int = 2,
                               eps: float = 0.05, max_images: int | None = None) -> list[str]:
    """Raise one :class:`InputError` line for the first bad argument; returns the names.

    ``window`` is an integer >= 1, ``eps`` a tolerance in ``[0, 1]`` (relative to the image's
    range), ``max_images`` None or an integer >= 1, ``split`` ``train`` or ``test``.
    """
    check_choice(split, f"{WHERE}: split", SPLITS)
    check_int(window, f"{WHERE}: window", minimum=1)
    check_range(eps, f"{WHERE}: eps", 0.0, 1.0)
    if max_images is not None:
        check_int(max_images, f"{WHERE}: max_images", minimum=1)
    return check_dataset_names(datasets)


def chosen_indices(size: int, max_images: int | None, seed: int = 0) -> torch.Tensor:
    """Indices of a seeded random subset of ``max_images`` of ``size`` images, in order (all of
    them when ``max_images`` is None or not smaller)."""
    if max_images is None or max_images >= size:
        return torch.arange(size)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(size, generator=generator)[:max_images].sort().values


def image_batches(dataset: ImageSource, indices: torch.Tensor,
                  batch: int = BATCH) -> Iterator[torch.Tensor]:
    """Float batches ``(N, C, H, W)`` of the images at ``indices``.

    In-memory data sets are sliced; others are decoded image by image. Images of different
    sizes go to different batches (each batch is stacked from equal-sized images).
    """
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):
        for start in range(0, len(indices), batch):
            yield images[indices[start:start + batch]].float()
        return
    pending: list[torch.Tensor] = []
    for index in indices.tolist():
        image = dataset[index][0]
        if pending and (len(pending) == batch or image.shape != pending[0].shape):
            yield torch.stack(pending).float()
            pending = []
        pending.append(image)
    if pending:
        yield torch.stack(pending).float()


def homogeneity_rows(datasets: Sequence[str], *, split: str = "test", window: int = 2,
                     eps: float = 0.05, max_images: int | None = None,
                     data_dir: str | None = None, download: bool = True) -> list[HomogeneityRow]:
    """One row per data set: the homogeneity ``fraction`` and ``score`` with 95% intervals.

    Args:
        datasets: data-set names (see :func:`shiftpool.data.list_datasets`).
        split: ``"train"`` or ``"test"``.
        window: window size k (2 matches a stride of 2).
        eps: tolerance relative to the image's range, in ``[0, 1]``.
        max_images: a seeded random subset of this many images of each set (default: all).
        data_dir, download: where data sets live and whether missing ones are downloaded.

    Raises:
        InputError: a bad argument, before any data set is loaded.
    """
    names = check_homogeneity_settings(datasets, split=split, window=window, eps=eps,
                                       max_images=max_images)
    rows = []
    for name in names:
        dataset = sdata.load_dataset(name, split, root=data_dir, download=download)
        indices = chosen_indices(len(dataset), max_images)
        h = dataset_homogeneity(image_batches(dataset, indices), window, eps)
        rows.append(HomogeneityRow(name, len(indices), window, eps, h.fraction, h.score))
    return rows


def interval_text(estimate: Estimate) -> str:
    """``0.5312 [0.5201, 0.5423]``; ``n/a`` for an undefined bound."""
    def number(value: float) -> str:
        return "n/a" if not math.isfinite(value) else f"{value:.4f}"

    return f"{number(estimate.value)} [{number(estimate.low)}, {number(estimate.high)}]"


def markdown_table(rows: Sequence[HomogeneityRow]) -> str:
    """The rows as a Markdown table (what ``shiftpool homogeneity`` prints)."""
    lines = ["| data set | images | fraction (95% CI) | score (95% CI) |", "|---|---|---|---|"]
    lines += [f"| {row.dataset} | {row.images} | {interval_text(row.fraction)} | "
              f"{interval_text(row.score)} |" for row in rows]
    return "\n".join(lines)
