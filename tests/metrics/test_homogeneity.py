"""Local homogeneity: hand-computed maps, feature maps of layers, and the order on real data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shiftpool.metrics import dataset_homogeneity, evaluate, local_homogeneity
from shiftpool.metrics.homogeneity import homogeneity_probe


def _checkerboard(h: int = 6, w: int = 6) -> torch.Tensor:
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((i + j) % 2).float().view(1, 1, h, w)


def test_constant_image_is_fully_homogeneous() -> None:
    fraction, score = local_homogeneity(torch.full((2, 3, 5, 5), 7.0))
    assert fraction.tolist() == [1.0, 1.0] and score.tolist() == [1.0, 1.0]


def test_checkerboard_window_two_is_not_homogeneous() -> None:
    fraction, score = local_homogeneity(_checkerboard(), window=2)
    assert fraction.item() == 0.0 and score.item() == 0.0
    fraction, score = local_homogeneity(_checkerboard(), window=1)
    assert fraction.item() == 1.0 and score.item() == 1.0


def test_small_map_by_hand() -> None:
    x = torch.tensor([[[[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]]])  # windows: spread 0 and 1, range 1
    fraction, score = local_homogeneity(x, window=2)
    assert fraction.item() == 0.5 and score.item() == 0.5
    ramp = torch.tensor([[[[0.0, 0.25, 0.5, 0.75, 1.0]]]])  # spreads 0.25 with window (1, 2)
    fraction, score = local_homogeneity(ramp, window=(1, 2), eps=0.25)
    assert fraction.item() == 1.0 and score.item() == 0.75
    assert local_homogeneity(ramp, window=(1, 2), eps=0.2)[0].item() == 0.0


def test_channels_are_averaged() -> None:
    x = torch.cat([torch.zeros(1, 1, 6, 6), _checkerboard()], dim=1)
    fraction, score = local_homogeneity(x)
    assert fraction.item() == 0.5 and score.item() == 0.5


def test_dataset_homogeneity_accepts_pairs_and_tensors() -> None:
    pairs = [(torch.zeros(3, 1, 6, 6), torch.zeros(3)), (_checkerboard(), torch.zeros(1))]
    h = dataset_homogeneity(pairs)
    assert h.fraction.value == 0.75 and h.fraction.n == 4
    assert dataset_homogeneity([_checkerboard()]).score.value == 0.0
    with pytest.raises(ValueError, match="empty"):
        dataset_homogeneity([])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"window": 7}, "larger than the map"), ({"eps": -0.1}, "eps"), ({"window": 0}, "window")],
)
def test_bad_input_raises(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        local_homogeneity(torch.zeros(1, 1, 6, 6), **kwargs)


def test_layer_homogeneity_and_skipped_small_maps() -> None:
    net = nn.Sequential(nn.MaxPool2d(2), nn.MaxPool2d(2, ceil_mode=True), nn.Flatten())
    probe = homogeneity_probe(net)
    with probe, probe.recording():
        net(torch.ones(3, 1, 2, 2))
    assert probe.skipped == {"1"}  # its input is 1 × 1, smaller than its 2 × 2 window
    assert probe.estimates()["0"]["fraction"].value == 1.0


def test_evaluate_measures_input_and_layers() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 3))
    images = torch.cat([torch.zeros(5, 1, 8, 8), _checkerboard(8, 8).expand(5, 1, 8, 8)])
    result = evaluate(net, [(images, torch.zeros(10, dtype=torch.long))],
                      metrics=("homogeneity",), progress=False)
    assert result.homogeneity.fraction.value == 0.5
    assert set(result.layer_homogeneity) == {"1", "mean"}
    assert result.summary()["homogeneity"] == 0.5


def test_real_data_orders_mnist_fashion_cifar(real_images) -> None:
    results = {name: dataset_homogeneity([real_images(name)], window=2)
               for name in ("mnist", "fashionmnist", "cifar10")}
    mnist, fashion, cifar = (results[k].fraction for k in ("mnist", "fashionmnist", "cifar10"))
    assert mnist.low > fashion.high
    assert fashion.low > cifar.high
