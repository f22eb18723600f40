"""Segmentation metrics (metrics/segmentation.py) on hand-made label maps: confusion, mIoU,
pixel accuracy, bootstrap intervals, consistency under each shift mode, equivariance error."""

from __future__ import annotations

import math

import pytest
import torch

from shiftpool.core.errors import InputError
from shiftpool.core.shifts import shift_images
from shiftpool.metrics.segmentation import (
    SegmentationMeter,
    confusion_matrices,
    consistency_from_labels,
    equivariance_error,
    scores_from_confusion,
    segmentation_consistency,
    undo_shift,
)
from shiftpool.models.layers import DownsampleSpec
from shiftpool.models.segmentation import UNet

pytestmark = pytest.mark.usefixtures("one_thread")

TARGET = torch.tensor([[[0, 0, 1, 1],
                        [0, 0, 1, 1],
                        [2, 2, 255, 255]]])  # fmt: skip
PRED = torch.tensor([[[0, 1, 1, 1],
                      [0, 0, 1, 2],
                      [2, 0, 0, 1]]])  # fmt: skip


def test_confusion_matrix_by_hand():
    confusion = confusion_matrices(PRED, TARGET, 3)[0]
    # target 0: pred 0,1,0,0 ; target 1: 1,1,1,2 ; target 2: 2,0 ; 255 ignored
    assert confusion.tolist() == [[3, 1, 0], [0, 3, 1], [1, 0, 1]]


def test_miou_and_pixel_accuracy_by_hand():
    miou, accuracy, iou = scores_from_confusion(confusion_matrices(PRED, TARGET, 3)[0])
    # IoU_0 = 3 / (4 + 4 - 3) ; IoU_1 = 3 / (4 + 4 - 3) ; IoU_2 = 1 / (2 + 2 - 1)
    expected = [3 / 5, 3 / 5, 1 / 3]
    assert iou.tolist() == pytest.approx(expected)
    assert miou.item() == pytest.approx(sum(expected) / 3)
    assert accuracy.item() == pytest.approx(7 / 10)


def test_an_absent_class_is_left_out_of_the_mean():
    target = torch.tensor([[[0, 1]]])
    miou, _, iou = scores_from_confusion(confusion_matrices(target, target, 4)[0])
    assert miou.item() == 1.0
    assert math.isnan(iou[2]) and math.isnan(iou[3])


def test_meter_sums_over_images_as_voc_does():
    meter = SegmentationMeter(3)
    meter.update(PRED, TARGET)
    logits = torch.nn.functional.one_hot(TARGET.clamp(max=2), 3).permute(0, 3, 1, 2).float()
    meter.update(logits, TARGET)  # a perfect second image, given as logits
    scores = meter.compute(resamples=200)
    total = confusion_matrices(PRED, TARGET, 3)[0] + confusion_matrices(TARGET.clamp(max=2),
                                                                         TARGET, 3)[0]
    miou, accuracy, _ = scores_from_confusion(total)
    assert scores.miou.value == pytest.approx(miou.item())
    assert scores.pixel_accuracy.value == pytest.approx(accuracy.item()) == pytest.approx(17 / 20)
    assert scores.miou.n == 2 and scores.miou.method == "bootstrap"
    assert scores.miou.low <= scores.miou.value <= scores.miou.high


def test_bootstrap_equals_a_loop_over_the_same_draws():
    generator = torch.Generator().manual_seed(1)
    targets = torch.randint(0, 3, (6, 5, 5), generator=generator)
    preds = torch.where(torch.rand(6, 5, 5, generator=generator) < 0.7, targets,
                        torch.randint(0, 3, (6, 5, 5), generator=generator))
    meter = SegmentationMeter(3)
    meter.update(preds[:4], targets[:4])
    meter.update(preds[4:], targets[4:])
    scores = meter.compute(resamples=50, seed=7)
    per_image = confusion_matrices(preds, targets, 3)
    draws = torch.randint(0, 6, (50, 6), generator=torch.Generator().manual_seed(7))
    values = torch.stack([scores_from_confusion(per_image[d].sum(0))[0] for d in draws])
    low, high = torch.quantile(values, torch.tensor([0.025, 0.975], dtype=values.dtype))
    assert scores.miou.low == pytest.approx(low.item())
    assert scores.miou.high == pytest.approx(high.item())
    assert meter.compute(resamples=50, seed=7) == scores  # seeded: reproducible


def test_one_image_has_no_interval_and_identical_images_a_point_interval():
    meter = SegmentationMeter(3)
    meter.update(PRED, TARGET)
    assert math.isnan(meter.compute().miou.low)
    meter.update(PRED, TARGET)
    scores = meter.compute(resamples=100)
    assert scores.miou.low == pytest.approx(scores.miou.value)
    assert scores.miou.high == pytest.approx(scores.miou.value)


def test_bad_labels_are_one_line_input_errors():
    bad = [
        lambda: confusion_matrices(PRED.float(), TARGET, 3),
        lambda: confusion_matrices(PRED[0], TARGET[0], 3),
        lambda: confusion_matrices(PRED, TARGET, 2),  # label 2 out of range
        lambda: SegmentationMeter(0),
        lambda: SegmentationMeter(3).compute(),
        lambda: undo_shift(PRED, torch.tensor([0, 1]), "crop"),
        lambda: undo_shift(PRED, torch.tensor([0, 1]), "wrap"),
    ]
    for call in bad:
        with pytest.raises(InputError) as info:
            call()
        assert "\n" not in str(info.value)


# --- undoing shifts and consistency -------------------------------------------------------

MAP = torch.tensor([[[1, 2, 3, 4],
                     [5, 6, 7, 8],
                     [9, 10, 11, 12]]])  # fmt: skip


@pytest.mark.parametrize("mode", ["circular", "zero", "reflect"])
def test_undo_shift_inverts_the_shift_where_defined(mode):
    offsets = torch.tensor([[1, -2]])
    shifted = shift_images(MAP[:, None], offsets, mode)[:, 0]
    back, defined = undo_shift(shifted, offsets, mode)
    assert torch.equal(back[defined], MAP[defined])
    if mode == "circular":
        assert bool(defined.all())
    else:  # content moved down 1 and left 2: rows 0..1 and columns 2..3 of the original stay
        expected = torch.zeros(3, 4, dtype=torch.bool)
        expected[:2, 2:] = True
        assert torch.equal(defined[0], expected)


def test_undo_crop_places_the_window_back():
    window = MAP[:, 1:3, 1:4]  # corner (1, 1), size (2, 3)
    back, defined = undo_shift(window, torch.tensor([[1, 1]]), "crop", image_size=(3, 4))
    expected = torch.zeros(3, 4, dtype=torch.bool)
    expected[1:3, 1:4] = True
    assert torch.equal(defined[0], expected)
    assert torch.equal(back[defined], MAP[defined])


def test_consistency_by_hand_zero_shift():
    # two predictions of one map, shifted right by 1 and by 0; one pixel disagrees in the overlap
    first = torch.tensor([[[0, 1, 2, 3]]])  # original 1 2 3 (right-shifted), col 0 undefined
    second = torch.tensor([[[1, 2, 9, 7]]])  # original 1 2 9 7
    value = consistency_from_labels(first, second, torch.tensor([[0, 1]]),
                                    torch.tensor([[0, 0]]), "zero")
    assert value.tolist() == [2 / 3]  # overlap: original columns 0..2; 1=1, 2=2, 3!=9


def test_consistency_by_hand_crop():
    a = torch.tensor([[[1, 2], [5, 6]]])  # window at (0, 0) of MAP
    b = torch.tensor([[[6, 0], [10, 11]]])  # window at (1, 1), one pixel wrong
    value = consistency_from_labels(a, b, torch.tensor([[0, 0]]), torch.tensor([[1, 1]]),
                                    "crop", image_size=(3, 4))
    assert value.tolist() == [1.0]  # the overlap is the one pixel (1, 1): 6 = 6
    b2 = torch.tensor([[[7, 0], [10, 11]]])
    value = consistency_from_labels(a, b2, torch.tensor([[0, 0]]), torch.tensor([[1, 1]]),
                                    "crop", image_size=(3, 4))
    assert value.tolist() == [0.0]


def _unet(name: str, circular: bool = True) -> UNet:
    torch.manual_seed(0)
    return UNet(DownsampleSpec(name, circular=circular), 3, 2, channels=(3, 4, 4)).double().eval()


def test_massc_of_an_aps_unet_is_one_under_circular_shifts():
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert segmentation_consistency(_unet("aps"), x, "circular", (7, 7)).value == 1.0
    assert segmentation_consistency(_unet("max"), x, "circular", (7, 7)).value < 1.0


@pytest.mark.parametrize("mode", ["circular", "zero", "reflect", "crop"])
def test_a_pointwise_model_is_consistent_and_equivariant_in_every_mode(mode):
    def model(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, -t], dim=1)  # labels: the sign of the pixel, a pointwise map

    x = torch.randn(5, 1, 9, 9, generator=torch.Generator().manual_seed(0))
    crop = (6, 6) if mode == "crop" else None
    shift = (3, 3)
    estimate = segmentation_consistency(model, [x[:3], x[3:]], mode, shift, crop_size=crop)
    assert estimate.value == 1.0 and estimate.n == 5
    offsets = torch.tensor([[1, 2], [2, 0], [0, 3], [3, 3], [1, 1]])
    error = equivariance_error(model, x, offsets, mode, crop_size=crop)
    assert error.logit_error.value == 0.0 and error.label_change.value == 0.0


def test_equivariance_error_of_aps_is_zero_and_of_max_is_not():
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    offsets = torch.tensor([[1, 3], [5, 2], [7, 7]])
    exact = equivariance_error(_unet("aps"), x, offsets)
    assert exact.logit_error.value < 1e-10 and exact.label_change.value == 0.0
    assert equivariance_error(_unet("max"), x, offsets).logit_error.value > 1e-3


def test_equivariance_error_by_hand_on_a_position_dependent_model():
    bias = torch.zeros(1, 2, 4, 4)
    bias[:, 1, 0, 0] = 10.0  # pixel (0, 0) always predicts class 1

    def model(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, torch.zeros_like(t)], 1) + bias

    x = torch.ones(1, 1, 4, 4)  # class 0 everywhere except (0, 0)
    error = equivariance_error(model, x, torch.tensor([1, 1]), "circular")
    # f(T x) has class 1 at (0, 0); T f(x) has it at (1, 1): two of 16 pixels differ
    assert error.label_change.value == pytest.approx(2 / 16)
    assert error.logit_error.value == pytest.approx(2 * 10 / 2 / 16)


def test_per_image_values_are_what_the_estimates_average() -> None:
    from shiftpool.metrics.segmentation import (
        consistency_per_image,
        equivariance_per_image,
        segmentation_consistency,
        shift_equivariance,
    )

    torch.manual_seed(0)
    net = UNet(DownsampleSpec("max"), 3, 1, channels=(2, 3)).eval()
    batches = [torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(i))
               for i in range(2)]
    for mode in ("circular", "zero", "crop"):
        crop = (6, 6) if mode == "crop" else None
        values = consistency_per_image(net, batches, mode, (2, 2), crop_size=crop, seed=3)
        estimate = segmentation_consistency(net, batches, mode, (2, 2), crop_size=crop, seed=3)
        assert values.shape == (6,) and estimate.n == int((~values.isnan()).sum())
        assert estimate.value == pytest.approx(values[~values.isnan()].mean().item(), abs=1e-6)
    errors, changes = equivariance_per_image(net, batches, max_shift=(3, 3), seed=1)
    whole = shift_equivariance(net, batches, max_shift=(3, 3), seed=1)
    assert whole.logit_error.value == pytest.approx(errors.mean().item(), rel=1e-5)
    assert whole.label_change.value == pytest.approx(changes.mean().item(), abs=1e-6)


def test_paired_score_difference_pairs_the_images() -> None:
    from shiftpool.metrics.segmentation import paired_score_difference

    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (20, 6, 6), generator=gen)
    good = torch.where(torch.rand(20, 6, 6, generator=gen) < 0.8, target, 0)
    bad = torch.where(torch.rand(20, 6, 6, generator=gen) < 0.5, target, 0)
    a, b = SegmentationMeter(3), SegmentationMeter(3)
    a.update(good, target)
    b.update(bad, target)
    d_miou, d_acc = paired_score_difference(a.per_image(), b.per_image(), 3)
    assert d_miou.value == pytest.approx(a.compute().miou.value - b.compute().miou.value)
    assert d_acc.value == pytest.approx(
        a.compute().pixel_accuracy.value - b.compute().pixel_accuracy.value)
    assert 0 < d_acc.low <= d_acc.value <= d_acc.high and d_miou.low > 0
    same, _ = paired_score_difference(a.per_image(), a.per_image(), 3)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    with pytest.raises(InputError, match="paired confusion matrices"):
        paired_score_difference(a.per_image(), b.per_image()[:5], 3)
