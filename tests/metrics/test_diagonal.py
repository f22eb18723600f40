"""The accuracy-vs-diagonal-shift curve (Zhang's figure): exact on a model read by hand, one
forward pass per shift, Wilson intervals per shift, and per-image outcomes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shiftpool.metrics import evaluate
from shiftpool.metrics.consistency import DiagonalCurve
from shiftpool.metrics.stats import wilson_interval


class PixelReader(nn.Module):
    """Class 0 if pixel (0, 0) of channel 0 is above 0.5, else class 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, 0, 0, 0]
        return torch.stack([v - 0.5, 0.5 - v], dim=1)


def test_circular_curve_is_the_hand_count() -> None:
    image = torch.zeros(1, 8, 8)
    for i in (0, 1, 6):  # T_(d,d) brings pixel (-d, -d) mod 8 to the corner: d = 0, -1, 2
        image[0, i, i] = 1.0
    images = image.expand(30, 1, 8, 8).clone()
    labels = torch.zeros(30, dtype=torch.long)
    result = evaluate(PixelReader(), [(images[:16], labels[:16]), (images[16:], labels[16:])],
                      ("diagonal",), protocol="aps", progress=False)
    curve = result.diagonal["circular"]
    assert curve.shifts == [-3, -2, -1, 0, 1, 2, 3] and curve.reference == (0, 0)
    expected = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    assert [e.value for e in curve.accuracy] == expected
    assert [e.value for e in curve.agreement] == expected  # ŷ(x) is class 0 = the label
    assert curve.n == 30
    # one forward pass per shift and batch; d = 0 reuses the unshifted pass
    assert result.forward_passes == 2 * (1 + 6)


def test_crop_curve_reaches_the_last_corner_and_reads_the_centre_crop() -> None:
    # zhang's geometry scaled down: 8 of 12 (max_shift 4), corners d = 0 .. 4, centre (2, 2)
    images = torch.zeros(10, 1, 12, 12)
    images[:, 0, 2, 2] = images[:, 0, 4, 4] = 1.0
    labels = torch.zeros(10, dtype=torch.long)
    result = evaluate(PixelReader(), [(images, labels)], ("accuracy", "diagonal"),
                      protocol="zhang", max_shift=4, progress=False)
    curve = result.diagonal["crop"]
    assert curve.shifts == [0, 1, 2, 3, 4] and curve.reference == (2, 2)
    assert [e.value for e in curve.accuracy] == [0.0, 0.0, 1.0, 0.0, 1.0]
    assert result.accuracy.value == 1.0
    assert result.forward_passes == 1 + 4


def test_intervals_are_wilson_per_shift_and_per_image_outcomes_add_up() -> None:
    g = torch.Generator().manual_seed(3)
    images = (torch.rand(500, 1, 8, 8, generator=g) > 0.5).float()
    labels = torch.randint(0, 2, (500,), generator=g)
    batches = list(zip(images.split(128), labels.split(128), strict=True))
    result = evaluate(PixelReader(), batches, ("diagonal",), protocol="tips", per_image=True,
                      progress=False)
    outcomes = result.per_image
    for mode in ("zero", "circular"):
        curve = result.diagonal[mode]
        assert outcomes.diagonal[mode] == curve.shifts == list(range(-2, 3))
        correct, agree = outcomes.diagonal_correct[mode], outcomes.diagonal_agree[mode]
        assert correct.shape == agree.shape == (500, 5)
        for i, d in enumerate(curve.shifts):
            assert curve.accuracy[i] == wilson_interval(int(correct[:, i].sum()), 500)
            assert curve.agreement[i] == wilson_interval(int(agree[:, i].sum()), 500)
            # the reader at shift (d, d) sees pixel (-d, -d), wrapped or filled with 0
            rows = torch.tensor(-d)
            if mode == "circular" or d <= 0:
                seen = images[:, 0, rows % 8, rows % 8]
            else:
                seen = torch.zeros(500)
            assert np.array_equal(correct[:, i], ((seen <= 0.5).long() == labels).numpy())
        assert np.all(agree[:, curve.shifts.index(0)])  # the unshifted image agrees with itself


def test_curve_round_trips_through_its_dict() -> None:
    images, labels = torch.rand(20, 1, 8, 8), torch.zeros(20, dtype=torch.long)
    curve = evaluate(PixelReader(), [(images, labels)], ("diagonal",), protocol="aps",
                     progress=False).diagonal["circular"]
    assert DiagonalCurve.from_dict(curve.to_dict()) == curve


def test_default_cost_of_tips_at_32_is_37_passes_per_batch() -> None:
    # as documented in shiftpool.metrics.evaluate: 1 + 2 modes × (2 random views + 16 diagonal
    # shifts, d = -8 .. 8 less the reused d = 0)
    images, labels = torch.rand(4, 1, 32, 32), torch.zeros(4, dtype=torch.long)
    result = evaluate(PixelReader(), [(images, labels)] * 2, protocol="tips", progress=False)
    assert result.forward_passes == 2 * 37
