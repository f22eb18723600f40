"""Local homogeneity of whole data sets (Mouton et al.), one row per data set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import shiftpool.data as sdata
from shiftpool.metrics import dataset_homogeneity
from shiftpool.train.inputs import subset


def homogeneity_rows(datasets: Sequence[str], *, split: str = "test", window: int = 2,
                     eps: float = 0.05, max_images: int | None = None,
                     data_dir: str | None = None, download: bool = True) -> list[dict[str, Any]]:
    """One row per data set: the homogeneity ``fraction`` and ``score`` with 95% intervals."""
    rows = []
    for name in datasets:
        dataset = sdata.load_dataset(name, split, root=data_dir, download=download)
        images = subset(dataset, max_images, seed=0).images
        batches = (images[i:i + 1000].float() for i in range(0, len(images), 1000))
        h = dataset_homogeneity(batches, window, eps)
        rows.append({"dataset": name, "images": len(images), "window": window, "eps": eps,
                     "fraction": h.fraction.to_dict(), "score": h.score.to_dict()})
    return rows
