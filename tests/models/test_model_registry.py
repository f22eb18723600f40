"""The model registry: names, options and errors of ``create_model`` (models/registry.py)."""

from __future__ import annotations

import pytest
import torch

from shiftpool.downsample import list_downsamples
from shiftpool.models import create_model, list_models, model_option_names, model_task

NAMES = [
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "resnet18_cifar", "resnet34_cifar", "resnet50_cifar",
    "resnet18", "resnet34", "resnet50", "vgg11_bn", "vgg16_bn", "simple_cnn",
]  # fmt: skip


SEGMENTATION = ["unet", *(f"fcn_{r}{stem}" for r in ("resnet18", "resnet34", "resnet50")
                           for stem in ("", "_cifar"))]


def test_list_models_names_every_model_of_the_spec():
    assert list_models("classification") == sorted(NAMES)
    assert list_models("segmentation") == sorted(SEGMENTATION)
    assert list_models() == sorted(NAMES + SEGMENTATION)


def test_model_task_and_segmentation_models_in_the_one_registry():
    assert {model_task(n) for n in NAMES} == {"classification"}
    assert {model_task(n) for n in SEGMENTATION} == {"segmentation"}
    net = create_model("unet", downsample="aps", num_classes=4, in_channels=1, channels=(2, 4))
    assert net(torch.randn(1, 1, 8, 8)).shape == (1, 4, 8, 8)
    with pytest.raises(ValueError, match="task must be one of classification, segmentation"):
        list_models("detection")
    with pytest.raises(ValueError, match="unknown model 'unet2'"):
        model_task("unet2")


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'; available: fcn_resnet18, "):
        create_model("resnet19")


def test_unknown_operator_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown downsampler 'blurpool'; available: " + ", ".join(
        list_downsamples()
    )):
        create_model("resnet20", downsample="blurpool")


def test_operator_option_it_does_not_take_is_an_error():
    with pytest.raises(TypeError, match=r"shiftpool\.aps: unknown option\(s\) kernel_size; "
                                        r"allowed: norm, filter_size, padding"):
        create_model("resnet20", downsample="aps", downsample_options={"kernel_size": 3})


def test_operator_options_reach_every_downsampler():
    net = create_model("resnet20", downsample="blur", downsample_options={"filter_size": 5})
    pools = [m for m in net.modules() if type(m).__name__ == "BlurDownsample"]
    assert len(pools) == 4  # two blocks downsample: main path and shortcut each
    assert all(m.filter_size == 5 for m in pools)


def test_unknown_model_option_lists_the_allowed_ones():
    with pytest.raises(TypeError, match=r"shiftpool\.resnet20: unknown model option\(s\) depth; "
                                        r"allowed: width"):
        create_model("resnet20", depth=3)


def test_model_option_names():
    assert model_option_names("resnet50") == ["width"]
    assert "pool_kernel" in model_option_names("simple_cnn")


def test_options_with_the_plain_network_are_an_error():
    with pytest.raises(ValueError, match=r"downsample_options were given but downsample=None"):
        create_model("resnet20", downsample=None, downsample_options={"filter_size": 3})


@pytest.mark.parametrize("value", [0, -1, 2.0, True])
def test_bad_num_classes(value):
    message = r"shiftpool\.vgg11_bn: num_classes must be an integer >= 1, got "
    with pytest.raises(ValueError, match=message):
        create_model("vgg11_bn", num_classes=value)


def test_num_classes_and_in_channels():
    net = create_model("resnet20", num_classes=7, in_channels=1, width=0.25)
    assert net(torch.randn(2, 1, 12, 12)).shape == (2, 7)


def test_lazy_access_from_the_package():
    import shiftpool

    assert shiftpool.list_models() == list_models()
    assert isinstance(shiftpool.create_model("simple_cnn"), torch.nn.Module)
