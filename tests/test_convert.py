"""convert: surgery on real torchvision and timm models, keys kept, placements, shared phases."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from shiftpool.convert import DownsampleAfter, DownsampledConv2d, convert
from shiftpool.downsample import Downsample, PhaseFollower, list_downsamples
from shiftpool.models import create_model

# model -> number of strided layers converted
EXPECTED = {
    "torchvision/resnet18": 8,
    "torchvision/resnet50": 8,
    "torchvision/vgg11_bn": 5,
    "torchvision/mobilenet_v2": 5,
    "torchvision/mobilenet_v3_small": 5,
    "torchvision/densenet121": 5,
    "torchvision/efficientnet_b0": 5,
    "torchvision/regnet_x_400mf": 9,
    "timm/resnet18": 8,
    "timm/efficientnet_b0": 5,
    "timm/mobilenetv3_small_100": 5,
}
SHIFTS = [(1, 0), (0, 1), (1, 1), (5, -3), (17, 30)]
EXTRA = "pip install shiftpool[vision]"


pytestmark = pytest.mark.usefixtures("one_thread")  # small batches (tests/conftest.py)


@functools.cache
def _original(key: str) -> nn.Module:
    """A real model with random weights (no download), in eval mode; never modified."""
    library, name = key.split("/")
    torch.manual_seed(0)
    if library == "torchvision":
        reason = f"torchvision not installed ({EXTRA})"
        models = pytest.importorskip("torchvision.models", reason=reason)
        model = getattr(models, name)(weights=None, num_classes=10)
    else:
        timm = pytest.importorskip("timm", reason=f"timm not installed ({EXTRA})")
        model = timm.create_model(name, pretrained=False, num_classes=10)
    return model.eval()


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _downsampler_keys(model: nn.Module) -> set[str]:
    return {
        f"{name}.{key}"
        for name, module in model.named_modules()
        if isinstance(module, Downsample)
        for key in module.state_dict()
    }


def _downsampler_parameters(model: nn.Module) -> int:
    return sum(_count(m) for m in model.modules() if isinstance(m, Downsample))


def _strides(model: nn.Module) -> dict[str, tuple]:
    return {n: m.stride for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


# --- real models ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", EXPECTED)
def test_subsample_conversion_keeps_the_network_exactly(key):
    """A strided conv/pool is its stride-1 form subsampled, and BN (eval) and the activations
    commute with subsampling: converting with ``subsample`` must not change the outputs. This
    checks each placement; then forward and backward in training mode, sizes, keys and counts."""
    original = _original(key)
    converted, report = convert(original, "subsample", return_report=True)
    assert len(report.changes) == EXPECTED[key] and report.skipped == [], str(report)
    converted.load_state_dict(original.state_dict(), strict=True)
    assert _count(converted) == _count(original)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), original(x), rtol=1e-4, atol=1e-4)
    converted.train()
    out = converted(x)
    out.square().mean().backward()
    assert out.shape == (2, 10)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in converted.parameters())


@pytest.mark.parametrize("key", EXPECTED)
def test_tips_adds_only_its_own_parameters(key):
    original = _original(key)
    converted = convert(original, "tips")
    result = converted.load_state_dict(original.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert set(result.missing_keys) == _downsampler_keys(converted) != set()
    assert _count(converted) - _count(original) == _downsampler_parameters(converted) > 0
    converted.train()
    out = converted(torch.randn(2, 3, 64, 64))
    out.sum().backward()
    assert out.shape == (2, 10)


def test_blur_loads_strictly_and_adds_no_parameters():
    original = _original("torchvision/resnet18")
    converted = convert(original, "blur", filter_size=5)
    converted.load_state_dict(original.state_dict(), strict=True)
    assert _count(converted) == _count(original)
    assert converted(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_lps_adds_parameters_on_the_main_path_only():
    original = _original("torchvision/resnet18")
    converted = convert(original, "lps", hidden=4)
    selectors = [m for m in converted.modules() if type(m).__name__ == "LPS"]
    followers = [m for m in converted.modules() if isinstance(m, PhaseFollower)]
    assert len(selectors) == 5 and len(followers) == 3  # stem conv, stem pool, 3 blocks
    assert _count(converted) - _count(original) == sum(_count(m) for m in selectors)
    result = converted.load_state_dict(original.state_dict(), strict=False)
    assert result.unexpected_keys == [] and set(result.missing_keys) == _downsampler_keys(converted)


# --- placement ----------------------------------------------------------------------------------


def test_resnet_placement():
    converted, report = convert(_original("torchvision/resnet18"), "blur", return_report=True)
    assert isinstance(converted.relu, DownsampleAfter)  # stem: conv1 -> bn1 -> relu -> blur
    assert converted.conv1.stride == (1, 1)
    pool = converted.maxpool
    assert isinstance(pool, DownsampleAfter) and pool.module.stride == 1
    assert pool.module.kernel_size == 3 and pool.module.padding == 1
    block = converted.layer2[0]
    # the block's relu runs twice, so the downsampler sits at the input of conv2 instead
    assert isinstance(block.relu, nn.ReLU)
    assert block.conv1.stride == (1, 1) and block.conv2.downsample_before.channels == 128
    shortcut = block.downsample[0]
    assert isinstance(shortcut, DownsampledConv2d) and shortcut.stride == (1, 1)
    assert shortcut.downsample_before.channels == 64
    placements = {c.layer: c.placement for c in report.changes}
    assert placements["layer2.0.conv1"] == "after bn1 → relu, at the input of conv2"
    assert placements["layer2.0.downsample.0"] == "before the 1x1 conv"
    assert placements["conv1"] == "after bn1 → relu"


@pytest.mark.parametrize(("key", "leader", "follower"), [
    ("torchvision/resnet18", "layer3.0.conv2.downsample_before",
     "layer3.0.downsample.0.downsample_before"),
    # RegNet runs the shortcut before the main path: the shortcut leads
    ("torchvision/regnet_x_400mf", "trunk_output.block2.block2-0.proj.0.downsample_before",
     "trunk_output.block2.block2-0.f.b.2.downsample"),
])  # fmt: skip
def test_residual_branches_share_the_phase(key, leader, follower):
    converted = convert(_original(key), "aps")
    assert converted.get_submodule(follower).selector is converted.get_submodule(leader)


def test_without_phase_selection_the_shortcut_gets_its_own_downsampler():
    converted = convert(_original("torchvision/resnet18"), "tips")
    block = converted.layer2[0]
    main, shortcut = block.conv2.downsample_before, block.downsample[0].downsample_before
    assert main.name == shortcut.name == "tips" and (main.channels, shortcut.channels) == (128, 64)


class PooledShortcut(nn.Module):
    """A residual block whose shortcut downsamples with an average pool."""

    def __init__(self, pool: nn.AvgPool2d):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()
        self.pool = pool
        self.proj = nn.Conv2d(4, 8, 1)

    def forward(self, x):
        return self.act(self.bn(self.conv(x))) + self.proj(self.pool(x))


@pytest.mark.parametrize(("pool", "shared"), [
    (nn.AvgPool2d(3, 2, padding=1), True),
    (nn.AvgPool2d(2, 2), False),  # at stride 1 it shrinks the map: no follower can take it
])  # fmt: skip
def test_phase_is_shared_only_where_both_branches_keep_the_input_size(pool, shared):
    model = PooledShortcut(pool).eval()
    converted, report = convert(model, "aps", return_report=True)
    assert [c.phase for c in report.changes] == (
        ["leads pool", "follows conv"] if shared else ["", ""]
    )
    x = torch.randn(2, 4, 16, 16)
    assert converted(x).shape == model(x).shape == (2, 8, 8, 8)


class PadInForward(nn.Conv2d):
    """A convolution subclass with a forward of its own (as TF-style 'same' convolutions)."""

    def forward(self, x):
        return super().forward(nn.functional.pad(x, (1, 1, 1, 1)))


def test_conv_subclass_keeps_its_class_and_forward():
    model = nn.Sequential(PadInForward(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU()).eval()
    converted, report = convert(model, "subsample", return_report=True)
    assert type(converted[0]) is PadInForward and converted[0].stride == (1, 1)
    assert report.changes[0].placement == "after 1 → 2"
    x = torch.randn(2, 3, 15, 15)
    torch.testing.assert_close(converted(x), model(x))


def test_fallback_placement_when_the_model_cannot_be_traced():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.act = nn.ReLU()
            self.pool = nn.MaxPool2d(2)
            self.head = nn.Conv2d(8, 4, 1, stride=2)

        def forward(self, x):
            x = self.pool(self.act(self.conv(x)))
            return self.head(x) if x.sum() > 0 else -self.head(x)  # data-dependent: no fx

    model = Branchy().eval()
    converted, report = convert(model, "subsample", return_report=True)
    assert not report.traced and "not traceable by torch.fx" in report.note
    assert [c.placement for c in report.changes] == [
        "right after the conv", "stride-1 pool, then the downsampler", "before the 1x1 conv"
    ]
    assert report.changes[1].channels == 8
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(converted(x), model(x))
    assert "no phase sharing" in str(report)
    model.conv = PadInForward(3, 8, 3, stride=2)  # without the graph, no safe place for it
    _, report = convert(model, "subsample", return_report=True)
    assert report.skipped == [("conv", "PadInForward is not a plain Conv2d")]


# --- exact invariance ---------------------------------------------------------------------------


def test_torchvision_resnet18_with_aps_and_circular_padding_is_exactly_shift_invariant():
    original = _original("torchvision/resnet18")
    converted = convert(original, "aps", circular=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, plain = converted(x), original(x)
        tolerance = 1e-5 * logits.abs().max()
        for shift in SHIFTS:
            rolled = torch.roll(x, shift, dims=(2, 3))
            torch.testing.assert_close(converted(rolled), logits, rtol=0, atol=tolerance)
        assert (original(torch.roll(x, (1, 1), dims=(2, 3))) - plain).abs().max() > 1e-2


@pytest.mark.parametrize("method", ["aps", "lps"])
def test_converted_shiftpool_resnet20_is_exactly_shift_invariant(method):
    torch.manual_seed(0)
    converted = convert(create_model("resnet20", downsample=None), method, circular=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = converted(x)
        for shift in SHIFTS:
            shifted = converted(torch.roll(x, shift, dims=(2, 3)))
            torch.testing.assert_close(shifted, logits, rtol=0, atol=1e-5 * logits.abs().max())


def test_circular_padding_everywhere_outside_the_downsamplers():
    converted, report = convert(
        _original("torchvision/densenet121"), "tips", circular=True, return_report=True
    )
    convs = [m for n, m in converted.named_modules() if isinstance(m, nn.Conv2d) and
             ".downsample" not in n and m.padding != (0, 0)]
    assert convs and all(m.padding_mode == "circular" for m in convs)
    assert report.options["padding"] == "circular"
    tips = [m for m in converted.modules() if getattr(m, "name", "") == "tips"]
    assert len(tips) == 5 and all(m.padding == "circular" for m in tips)
    assert len(report.circular) == len(convs)


# --- options --------------------------------------------------------------------------------------


def test_skip_stem_keeps_the_stem_convolution():
    converted, report = convert(
        _original("torchvision/resnet18"), "blur", skip_stem=True, return_report=True
    )
    assert converted.conv1.stride == (2, 2) and isinstance(converted.relu, nn.ReLU)
    assert report.skipped == [("conv1", "stem (skip_stem=True)")]
    assert report.changes[0].layer == "maxpool"


def test_min_channels_skips_narrow_layers():
    converted, report = convert(
        _original("torchvision/resnet18"), "aps", min_channels=128, return_report=True
    )
    assert [layer for layer, _ in report.skipped] == [
        "conv1", "maxpool", "layer2.0.downsample.0"
    ]
    assert converted.layer2[0].downsample[0].stride == (2, 2)
    assert len(report.changes) == 5
    assert converted(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_inplace_modifies_the_model_and_copy_does_not():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    copied = convert(model, "blur")
    assert copied is not model and model[0].stride == (2, 2)
    assert convert(model, "blur", inplace=True) is model
    assert model[0].stride == (1, 1) and isinstance(model[2], DownsampleAfter)


def test_new_modules_follow_the_model_dtype_and_mode():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU()).double().eval()
    converted = convert(model, "lps")
    lps = converted[1].downsample
    assert not lps.training and all(p.dtype == torch.float64 for p in lps.parameters())
    assert converted(torch.randn(1, 3, 8, 8, dtype=torch.float64)).shape == (1, 4, 4, 4)


def test_report_reads_well_and_verbose_prints_it(capsys):
    _, report = convert(_original("torchvision/mobilenet_v2"), "blur", verbose=True,
                        return_report=True)
    printed = capsys.readouterr().out
    assert printed.strip() == str(report)
    assert printed.startswith("shiftpool.convert: MobileNetV2, 5 layer(s) → blur(")
    assert "features.0.0" in printed and "after 1 → 2" in printed


# --- errors ---------------------------------------------------------------------------------------


def test_converting_twice_is_an_error():
    once = convert(_original("torchvision/resnet18"), "blur")
    with pytest.raises(ValueError, match=r"already has a shiftpool downsampler at 'relu' "
                                         r"\(DownsampleAfter\); convert the original model"):
        convert(once, "blur")


def test_a_model_built_with_an_operator_is_not_converted_again():
    with pytest.raises(ValueError, match=r"has a shiftpool downsampler at 'layer2\.0\.pool'"):
        convert(create_model("resnet20", downsample="aps"), "aps")


def test_nothing_to_convert():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    with pytest.raises(ValueError, match=r"nothing to convert in Sequential: it has no Conv2d, "
                                         r"MaxPool2d or AvgPool2d with stride > 1"):
        convert(model, "blur")


def test_everything_skipped_is_nothing_to_convert():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2, ceil_mode=True))
    with pytest.raises(ValueError, match=r"every strided layer was skipped \(1: ceil_mode=True"):
        convert(model, "blur")


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown downsampler 'blurpool'; available: "
                                         + ", ".join(list_downsamples())):
        convert(nn.Conv2d(3, 3, 3, stride=2), "blurpool")


def test_option_the_operator_does_not_take():
    with pytest.raises(TypeError, match=r"shiftpool\.blur: unknown option\(s\) norm; allowed: "):
        convert(nn.Conv2d(3, 3, 3, stride=2), "blur", norm="l1")


def test_not_a_module():
    with pytest.raises(TypeError, match=r"shiftpool.convert: expected an nn.Module, got function"):
        convert(lambda x: x, "blur")


@pytest.mark.parametrize("value", [-1, 2.5, True])
def test_bad_min_channels(value):
    with pytest.raises(ValueError, match=r"min_channels must be an integer >= 0, got "):
        convert(nn.Conv2d(3, 3, 3, stride=2), "blur", min_channels=value)
