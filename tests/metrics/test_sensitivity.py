"""Cosine translation sensitivity: the default layer, named layers, and exact cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shiftpool.metrics import evaluate
from shiftpool.metrics.sensitivity import FeatureHook, cosine_similarity


def _flatten_net(size: int = 6) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(size * size, 4))


def test_default_features_are_the_head_input() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(32, 3), nn.ReLU())
    with FeatureHook(net) as hook:
        net(torch.randn(5, 1, 6, 6))
    assert (hook.name, hook.where) == ("2", "input")
    assert hook.take().shape == (5, 32)


def test_named_layer_and_module_give_their_output() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(32, 3))
    for layer in ("0", net[0]):
        with FeatureHook(net, layer) as hook:
            net(torch.randn(5, 1, 6, 6))
        assert (hook.name, hook.where) == ("0", "output")
        assert hook.take().shape == (5, 2 * 4 * 4)


def test_unknown_layer_raises() -> None:
    net = _flatten_net()
    with pytest.raises(ValueError, match=r"no layer named 'head'.*layers: 0, 1"):
        FeatureHook(net, "head")
    with pytest.raises(ValueError, match="not part of the model"):
        FeatureHook(net, nn.Linear(2, 2))


def test_sensitivity_of_raw_pixels_by_hand() -> None:
    images = torch.rand(20, 1, 6, 6)
    result = evaluate(_flatten_net(), [(images, torch.zeros(20, dtype=torch.long))],
                      metrics=("sensitivity",), protocol="aps", max_shift=1, progress=False)
    sens = result.sensitivity["circular"]
    assert (sens.layer, sens.where, sens.n) == ("1", "input", 20)
    flat = images.flatten(1)
    for i, dy in enumerate(sens.dys):
        for j, dx in enumerate(sens.dxs):
            shifted = torch.roll(images, (dy, dx), dims=(2, 3)).flatten(1)
            expected = cosine_similarity(flat, shifted).mean().item()
            assert sens.mean[i][j] == pytest.approx(expected, abs=1e-6)
    assert sens.mean[1][1] == pytest.approx(1.0, abs=1e-6)
    assert sens.low[0][0] < sens.mean[0][0] < sens.high[0][0]
    assert result.summary()["c_sens"] == pytest.approx(sens.overall)


def test_global_average_pool_features_are_circularly_invariant() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    result = evaluate(net, [(torch.randn(8, 2, 8, 8), torch.zeros(8, dtype=torch.long))],
                      metrics=("sensitivity",), protocol="aps", max_shift=2, progress=False)
    cells = [v for row in result.sensitivity["circular"].mean for v in row]
    assert len(cells) == 25
    assert min(cells) == pytest.approx(1.0, abs=1e-5)
