"""VGG-BN: the operator takes each pool's place; torchvision's feature weights load."""

from __future__ import annotations

import pytest
import torch

from shiftpool.core.errors import InputError
from shiftpool.models import VGG, DownsampleSpec, create_model


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(("name", "params"), [("vgg11_bn", 9_231_114), ("vgg16_bn", 14_728_266)])
def test_parameter_counts(name, params):
    # torchvision's features (9 225 984 and 14 723 136) + a 512 x 10 linear head
    assert _count(create_model(name, downsample=None)) == params


@pytest.mark.parametrize("downsample", ["max", "maxblur", "tips"])
def test_each_pool_becomes_the_operator(downsample):
    net = create_model("vgg11_bn", downsample=downsample)
    pools = [m for m in net.features if getattr(m, "name", None) == downsample]
    assert [m.stride for m in pools] == [(2, 2)] * 5
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())


def test_max_reproduces_torchvision_features():
    torchvision = pytest.importorskip("torchvision", reason="torchvision not installed")
    vgg = torchvision.models.vgg
    reference = vgg.make_layers(vgg.cfgs["A"], batch_norm=True).eval()  # vgg11_bn's features
    net = create_model("vgg11_bn", downsample="max").eval()
    net.features.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net.features(x), reference(x))


def test_width_and_output_shape():
    net = create_model("vgg16_bn", downsample="blur", width=0.25, num_classes=4)
    assert net.classifier.in_features == 128
    assert net(torch.randn(2, 3, 40, 24)).shape == (2, 4)


def test_circular_convolutions():
    net = create_model("vgg11_bn", downsample="aps", circular=True, width=0.125)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.padding_mode == "circular" for m in convs)


@pytest.mark.parametrize(("config", "message"), [
    ("64 M", r"config must be a non-empty list of channel counts and 'M', got '64 M'"),
    ((), r"config must be a non-empty list"),
    ((8, "M", -4), r"config\[2\] \(or 'M'\) must be an integer >= 1, got -4"),
    ((8, "m"), r"config\[1\] \(or 'M'\) must be an integer >= 1, got 'm'"),
])  # fmt: skip
def test_config_is_checked_when_built(config, message):
    with pytest.raises(InputError, match=r"shiftpool\.vgg: " + message):
        VGG(config, DownsampleSpec("max"))


@pytest.mark.parametrize("width", ["2", -1.0, float("nan"), True])
def test_width_must_be_a_positive_number(width):
    with pytest.raises(InputError, match=rf"shiftpool\.models: width must be .*got {width!r}"):
        create_model("vgg11_bn", width=width)
