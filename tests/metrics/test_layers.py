"""Which layers the metrics hook: downsampling layers, the classifier head, named layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shiftpool.downsample.base import Downsample
from shiftpool.metrics.layers import (
    classifier_head,
    downsampling_layers,
    find_layer,
    layer_stride,
    sampled_map,
)


class NestedPool(Downsample):
    """A shiftpool operator built from a torch max pool (not registered)."""

    name = "nested_pool_for_tests"

    def __init__(self, stride: int = 2, channels: int | None = None) -> None:
        super().__init__(stride, channels)
        self.pool = nn.MaxPool2d(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


def test_downsampling_layers_are_outermost_and_strided() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),            # stride 1: not downsampling
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        NestedPool(2),                            # its inner MaxPool2d is not listed again
        nn.MaxPool2d(3, stride=1, padding=1),     # stride 1
        nn.AvgPool2d(2),
        nn.Sequential(nn.MaxPool2d((1, 2))),
    )
    names = [name for name, _ in downsampling_layers(net)]
    assert names == ["1", "2", "4", "5.0"]
    assert [layer_stride(m) for _, m in downsampling_layers(net)] == [(2, 2)] * 3 + [(1, 2)]
    assert layer_stride(nn.ReLU()) == (1, 1)


@pytest.mark.parametrize("padding_mode", ["zeros", "circular", "reflect"])
def test_strided_conv_output_samples_its_dense_map(padding_mode: str) -> None:
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, padding_mode=padding_mode)
    x = torch.randn(2, 3, 9, 9)
    dense = sampled_map(conv, (x,))
    assert dense.shape == (2, 5, 9, 9)
    torch.testing.assert_close(conv(x), dense[..., ::2, ::2])


def test_pool_samples_its_input() -> None:
    x = torch.randn(1, 2, 4, 4)
    assert sampled_map(nn.MaxPool2d(2), (x,)) is x
    assert torch.equal(F.max_pool2d(x, 2), nn.MaxPool2d(2)(x))


def test_classifier_head_is_the_last_linear_else_the_last_leaf() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.Linear(4, 2)), nn.Softmax(1))
    assert classifier_head(net)[0] == "1.1"
    conv_head = nn.Sequential(nn.Conv2d(3, 10, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert classifier_head(conv_head)[0] == "2"


def test_find_layer() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
    assert find_layer(net, "1")[1] is net[1]
    assert find_layer(net, net[0])[0] == "0"
    with pytest.raises(ValueError, match="no layer named 'fc'"):
        find_layer(net, "fc")
    with pytest.raises(ValueError, match="no layer named ''"):
        find_layer(net, "")
