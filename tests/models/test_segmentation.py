"""Segmentation models (models/segmentation.py): every operator at every downsampling point,
one training step, dense output sizes, exact equivariance of aps/lps models, the registry."""

from __future__ import annotations

import pytest
import torch

from shiftpool.core.errors import InputError
from shiftpool.downsample import list_downsamples
from shiftpool.downsample.upsample import InterpolateUpsample, PhaseUpsample, TransposedUpsample
from shiftpool.models.segmentation import (
    FCN,
    UNet,
    create_segmentation_model,
    list_segmentation_models,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"unet": {"channels": (3, 4, 4)}}
SIZE = {"fcn_resnet18": 32}  # the ImageNet stem's total stride is 32


def _options(name: str) -> dict:
    return SMALL.get(name, {"width": 0.0625})


def _randn(*shape: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_registry_names():
    names = list_segmentation_models()
    assert "unet" in names
    assert {"fcn_resnet18", "fcn_resnet18_cifar", "fcn_resnet50_cifar"} <= set(names)


@pytest.mark.parametrize("downsample", [None, *list_downsamples()])
@pytest.mark.parametrize("name", ["unet", "fcn_resnet18_cifar", "fcn_resnet18"])
def test_one_training_step(name, downsample):
    torch.manual_seed(0)
    net = create_segmentation_model(name, downsample=downsample, num_classes=3, **_options(name))
    size = SIZE.get(name, 8)
    x = _randn(2, 3, size, size)
    y = torch.randint(0, 3, (2, size, size), generator=torch.Generator().manual_seed(1))
    out = net(x)
    assert out.shape == (2, 3, size, size)
    loss = torch.nn.functional.cross_entropy(out, y)
    loss.backward()
    assert torch.isfinite(loss)
    missing = [k for k, p in net.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reached {missing}"


@pytest.mark.parametrize("downsample", ["aps", "lps", "tips", "max", None])
@pytest.mark.parametrize("size", [(7, 9), (5, 4), (1, 1)])
def test_unet_keeps_any_input_size(downsample, size):
    net = create_segmentation_model("unet", downsample=downsample, num_classes=2,
                                    channels=(2, 3, 3)).eval()
    with torch.no_grad():
        assert net(_randn(2, 3, *size)).shape == (2, 2, *size)


@pytest.mark.parametrize("name", ["fcn_resnet18_cifar", "fcn_resnet34_cifar", "fcn_resnet50_cifar"])
def test_fcn_keeps_odd_sizes(name):
    net = create_segmentation_model(name, downsample="aps", num_classes=2, width=0.0625).eval()
    with torch.no_grad():
        assert net(_randn(1, 3, 11, 6)).shape == (1, 2, 11, 6)


@pytest.mark.parametrize("name", ["aps", "lps"])
def test_fcn_is_exactly_equivariant_at_every_circular_shift(name, assert_shift_equivariant):
    torch.manual_seed(0)
    net = create_segmentation_model("fcn_resnet18_cifar", downsample=name, circular=True,
                                    num_classes=3, width=0.0625).double().eval()
    assert_shift_equivariant(net, _randn(2, 3, 8, 8, dtype=torch.float64))  # total stride 8


def test_fcn_with_the_imagenet_stem_is_exactly_equivariant(assert_shift_equivariant):
    torch.manual_seed(0)
    net = create_segmentation_model("fcn_resnet18", downsample="aps", circular=True,
                                    num_classes=2, width=0.0625).double().eval()
    assert_shift_equivariant(net, _randn(1, 3, 32, 32, dtype=torch.float64),
                             shifts=[(1, 0), (0, 3), (5, 17), (31, 31), (16, 8)])


def test_upsamplers_pair_with_the_operator():
    aps = create_segmentation_model("unet", downsample="aps", channels=(2, 3, 3))
    assert all(isinstance(up, PhaseUpsample) for up in aps.ups)
    assert [up.down for up in aps.ups] == list(aps.downs)[::-1]
    blur = create_segmentation_model("unet", downsample="blur", channels=(2, 3, 3))
    assert all(isinstance(up, InterpolateUpsample) for up in blur.ups)
    learned = create_segmentation_model("unet", downsample="aps", channels=(2, 3, 3),
                                        upsample="transposed")
    assert all(isinstance(up, TransposedUpsample) for up in learned.ups)
    fcn = create_segmentation_model("fcn_resnet18", downsample="lps", width=0.0625)
    assert isinstance(fcn, FCN) and len(fcn.ups) == 5  # stem conv, stem pool, 3 stages
    plain = create_segmentation_model("fcn_resnet18", downsample=None, width=0.0625)
    assert len(plain.ups) == 0  # bilinear resize to the input, as torchvision's FCN


def test_state_dict_round_trip_gives_the_same_outputs():
    torch.manual_seed(0)
    a = create_segmentation_model("unet", downsample="lps", num_classes=2, channels=(2, 3))
    torch.manual_seed(1)
    b = create_segmentation_model("unet", downsample="lps", num_classes=2, channels=(2, 3))
    b.load_state_dict(a.state_dict())
    x = _randn(2, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_errors_are_one_line_input_errors():
    bad = [
        lambda: create_segmentation_model("segnet"),
        lambda: create_segmentation_model("unet", depth=3),
        lambda: create_segmentation_model("unet", upsample="cubic"),
        lambda: create_segmentation_model("unet", channels="8 16"),
        lambda: create_segmentation_model("unet", num_classes=0),
        lambda: UNet.__call__(create_segmentation_model("unet"), torch.zeros(3, 8, 8)),
    ]
    for call in bad:
        with pytest.raises(InputError) as info:
            call()
        assert "\n" not in str(info.value)


# --- convert on torchvision's segmentation models (weights=None: nothing downloaded) -------

TORCHVISION_SEGMENTATION = ("fcn_resnet50", "deeplabv3_resnet50", "lraspp_mobilenet_v3_large")


def _torchvision_model(name: str) -> torch.nn.Module:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    builder = getattr(torchvision.models.segmentation, name)
    return builder(weights=None, weights_backbone=None, num_classes=3).eval()


@pytest.mark.parametrize("name", TORCHVISION_SEGMENTATION)
def test_convert_torchvision_segmentation_models(name):
    from shiftpool.convert import PAIRABLE_NOTE, convert

    original = _torchvision_model(name)
    converted, report = convert(original, "aps", return_report=True)
    converted.load_state_dict(original.state_dict())  # aps has no parameters: strict loads
    assert report.changes and report.upsampling
    assert all("interpolate" in where for where in report.upsampling)
    assert PAIRABLE_NOTE in str(report)
    with torch.no_grad():
        for size in ((32, 32), (29, 35)):  # the bilinear head keeps any size valid
            out = converted(_randn(1, 3, *size))["out"]
            assert out.shape == (1, 3, *size)
            assert torch.isfinite(out).all()


def test_convert_lps_on_a_segmentation_model_loads_with_only_lps_keys_missing():
    from shiftpool.convert import PAIRABLE_NOTE, convert

    original = _torchvision_model("lraspp_mobilenet_v3_large")
    converted, report = convert(original, "lps", return_report=True)
    result = converted.load_state_dict(original.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(".downsample." in key for key in result.missing_keys)
    blur = convert(original, "blur", return_report=True)[1]
    assert PAIRABLE_NOTE in str(report) and PAIRABLE_NOTE not in str(blur)


# --- per-layer metrics work unchanged on segmentation models ------------------------------


@pytest.mark.parametrize("name", ["unet", "fcn_resnet18_cifar"])
def test_msb_and_homogeneity_probes_see_exactly_the_downsamplers(name):
    from shiftpool.metrics import downsampling_layers, homogeneity_probe, msb_probe

    net = create_segmentation_model(name, downsample="max", num_classes=2,
                                    **_options(name)).eval()
    from shiftpool.downsample import Downsample
    from shiftpool.downsample.upsample import Upsample

    layers = downsampling_layers(net)
    found = {id(m) for _, m in layers}
    assert found == {id(m) for m in net.modules() if isinstance(m, Downsample)}
    assert not any(isinstance(m, Upsample) for _, m in layers)
    for make in (msb_probe, homogeneity_probe):
        probe = make(net)
        with probe, probe.recording(), torch.no_grad():
            net(_randn(2, 3, 8, 8))
        assert set(probe.estimates()) - {"mean"} == {n for n, _ in layers}  # and the mean
