"""Maximum-sampling bias: pools, subsampling and strided convolutions, per layer and averaged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shiftpool.metrics import evaluate
from shiftpool.metrics.msb import block_max, msb_per_image, msb_probe


def test_block_max_handles_ragged_borders() -> None:
    x = torch.arange(15.0).view(1, 1, 3, 5)
    assert block_max(x, (2, 2))[0, 0].tolist() == [[6.0, 8.0, 9.0], [11.0, 13.0, 14.0]]


def test_max_pool_is_one_and_average_pool_below_one() -> None:
    x = torch.randn(4, 3, 8, 8)
    assert msb_per_image(x, F.max_pool2d(x, 2), (2, 2)).tolist() == [1.0] * 4
    avg = msb_per_image(x, F.avg_pool2d(x, 2), (2, 2))
    assert (avg < 1).all()
    constant = torch.ones(2, 3, 8, 8)
    assert msb_per_image(constant, F.avg_pool2d(constant, 2), (2, 2)).tolist() == [1.0, 1.0]


def test_subsample_by_hand() -> None:
    # increasing along rows and columns: the top-left of every block is its minimum
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert msb_per_image(x, x[..., ::2, ::2], (2, 2)).item() == 0.0
    assert msb_per_image(-x, -x[..., ::2, ::2], (2, 2)).item() == 1.0
    # one of the four blocks has its maximum at the top-left
    y = x.clone()
    y[0, 0, 0, 0] = 100.0
    assert msb_per_image(y, y[..., ::2, ::2], (2, 2)).item() == 0.25


def test_relative_tolerance() -> None:
    x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    near = torch.tensor([[[[0.9995]]]])
    assert msb_per_image(x, near, (2, 2), rtol=1e-3).item() == 1.0
    assert msb_per_image(x, near, (2, 2), rtol=1e-4).item() == 0.0
    assert msb_per_image(x, torch.tensor([[[[float("nan")]]]]), (2, 2)).item() == 0.0


def test_mismatched_channels_raise() -> None:
    with pytest.raises(ValueError, match="channels"):
        msb_per_image(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 2, 2), (2, 2))


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, padding_mode="circular"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


def test_strided_conv_is_measured_on_its_dense_output() -> None:
    conv = nn.Conv2d(1, 1, 1, stride=2, bias=False)
    conv.weight.data.fill_(1.0)  # the dense output is the input itself
    probe = msb_probe(conv)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    with probe, probe.recording():
        conv(x)
        conv(-x)
    assert probe.estimates()["<model>"]["msb"].value == 0.5  # 0 for x, 1 for -x


def test_evaluate_reports_msb_per_layer_and_the_mean() -> None:
    data = [(torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))) for _ in range(2)]
    result = evaluate(_net(), data, metrics=("msb",), progress=False)
    assert list(result.msb) == ["1", "3", "4", "mean"]
    assert result.msb["1"].value == 1.0
    assert result.msb["1"].n == 32
    assert result.msb["3"].value < 0.5
    assert 0.05 < result.msb["4"].value < 0.6  # fixed phase: about a quarter, no ties
    layers = [result.msb[k].value for k in ("1", "3", "4")]
    assert result.msb["mean"].value == pytest.approx(sum(layers) / 3, abs=1e-6)
    assert result.summary()["msb"] == result.msb["mean"].value
    assert result.accuracy is not None and not result.consistency
