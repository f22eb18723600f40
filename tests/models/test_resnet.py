"""ResNets: placement of the downsamplers, parameter counts, torchvision parity, invariance."""

from __future__ import annotations

import copy

import pytest
import torch

from shiftpool.core.errors import InputError
from shiftpool.downsample import Downsample, PhaseFollower
from shiftpool.models import BasicBlock, DownsampleSpec, ResNet, create_model

SHIFTS = [(1, 0), (0, 1), (1, 1), (3, -5), (17, 9)]


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_resnet20_has_0_27_million_parameters():
    # He et al.'s 0.27 M with 1x1 projection shortcuts: + 16*32 + 32*64 weights + 2*(32 + 64) BN
    assert _count(create_model("resnet20", downsample=None)) == 272_474


@pytest.mark.parametrize(("name", "params"), [
    ("resnet32", 466_906), ("resnet44", 661_338), ("resnet56", 855_770), ("resnet110", 1_730_714),
    ("resnet18_cifar", 11_173_962), ("resnet34_cifar", 21_282_122), ("resnet50_cifar", 23_520_842),
])  # fmt: skip
def test_parameter_counts(name, params):
    assert _count(create_model(name, downsample=None)) == params


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_imagenet_form_has_torchvision_keys_and_shapes(name):
    torchvision = pytest.importorskip("torchvision", reason="torchvision not installed")
    reference = getattr(torchvision.models, name)(weights=None).state_dict()
    plain = create_model(name, downsample=None, num_classes=1000).state_dict()
    assert {k: v.shape for k, v in plain.items()} == {k: v.shape for k, v in reference.items()}


def test_torchvision_weights_load_with_only_the_operators_parameters_missing():
    torchvision = pytest.importorskip("torchvision", reason="torchvision not installed")
    state = torchvision.models.resnet50(weights=None).state_dict()
    create_model("resnet50", downsample="blur", num_classes=1000).load_state_dict(state)
    tips = create_model("resnet50", downsample="tips", num_classes=1000)
    result = tips.load_state_dict(state, strict=False)
    own = {
        f"{name}.{key}"
        for name, module in tips.named_modules()
        if isinstance(module, Downsample)
        for key in module.state_dict()
    }
    assert result.unexpected_keys == []
    assert own and set(result.missing_keys) == own


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "resnet50_cifar"])
def test_subsample_after_stride_one_conv_equals_the_strided_network_in_eval(name):
    """conv(stride 2) = subsample(conv(stride 1)), and BN (eval) and ReLU commute with
    subsampling: the plain network's weights give the same outputs in the converted one. This
    checks every placement (block, shortcut, both stems) exactly."""
    torch.manual_seed(0)
    plain = create_model(name, downsample=None, width=0.25).eval()
    for module in plain.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    sampled = create_model(name, downsample="subsample", width=0.25).eval()
    sampled.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(sampled(x), plain(x), rtol=1e-4, atol=1e-5)


def test_block_places_conv_bn_relu_then_downsampler_and_shortcut_downsampler_first():
    net = create_model("resnet20", downsample="blur")
    block = net.layer2[0]
    assert block.conv1.stride == (1, 1) and block.downsample[0].stride == (1, 1)
    assert block.pool.name == "blur" and block.pool.channels == 32
    assert block.shortcut_pool.name == "blur" and block.shortcut_pool.channels == 16
    assert block.shortcut_pool is not block.pool
    calls = []
    for name in ("conv1", "bn1", "pool", "conv2", "shortcut_pool", "downsample"):
        getattr(block, name).register_forward_hook(lambda *_, name=name: calls.append(name))
    block(torch.randn(1, 16, 8, 8))
    assert calls == ["conv1", "bn1", "pool", "conv2", "shortcut_pool", "downsample"]


def test_plain_network_uses_strided_convolutions():
    net = create_model("resnet18", downsample=None)
    assert net.conv1.stride == (2, 2) and net.layer3[0].conv1.stride == (2, 2)
    assert net.layer3[0].downsample[0].stride == (2, 2)
    assert net.stem_pool is None and net.layer3[0].pool is None
    assert isinstance(net.maxpool, torch.nn.MaxPool2d) and net.maxpool.stride == 2


@pytest.mark.parametrize("downsample", ["aps", "lps"])
def test_shortcut_follows_the_phase_chosen_on_the_main_path(downsample):
    net = create_model("resnet50_cifar", downsample=downsample, width=0.125)
    for stage in (net.layer2, net.layer3, net.layer4):
        block = stage[0]
        assert isinstance(block.shortcut_pool, PhaseFollower)
        assert block.shortcut_pool.selector is block.pool
    lps_parameters = sum(p.numel() for n, p in net.named_parameters() if "pool" in n)
    assert (lps_parameters > 0) == (downsample == "lps")


def test_tips_shortcut_has_parameters_of_its_own():
    net = create_model("resnet20", downsample="tips")
    block = net.layer3[0]
    assert block.shortcut_pool.channels == 32 and block.pool.channels == 64
    own = sum(p.numel() for p in block.shortcut_pool.parameters())
    assert own == 10 * 32  # TIPS: 10 C parameters at stride 2


@pytest.mark.parametrize("downsample", ["aps", "lps"])
def test_resnet20_circular_is_exactly_invariant_to_circular_shifts(downsample):
    torch.manual_seed(0)
    net = create_model("resnet20", downsample=downsample, circular=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = net(x)
        scale = logits.abs().max()
        for shift in SHIFTS:
            shifted = net(torch.roll(x, shift, dims=(2, 3)))
            torch.testing.assert_close(shifted, logits, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("downsample", ["aps", "max"])
def test_without_circular_padding_or_adaptive_phase_it_is_not(downsample):
    torch.manual_seed(0)
    circular = downsample == "max"  # max: circular padding alone is not enough
    net = create_model("resnet20", downsample=downsample, circular=circular).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = net(x)
        gap = (net(torch.roll(x, (1, 1), dims=(2, 3))) - logits).abs().max()
    assert gap > 1e-3 * logits.abs().max()


def test_circular_pads_every_convolution_circularly():
    net = create_model("resnet18", downsample="aps", circular=True, width=0.25)
    padded = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.padding != (0, 0)]
    assert padded and all(m.padding_mode == "circular" for m in padded)


@pytest.mark.parametrize("width", [0.25, 0.75])
def test_width_multiplies_every_stage(width):
    net = create_model("resnet18_cifar", downsample=None, width=width)
    assert [net.layer1[0].conv1.out_channels, net.layer4[0].conv1.out_channels] == [
        round(64 * width), round(512 * width)
    ]


def test_width_must_be_positive():
    with pytest.raises(ValueError, match=r"width must be in \(0, inf\], got 0"):
        create_model("resnet20", width=0)


@pytest.mark.parametrize(("depths", "widths", "message"), [
    ([2, 2], "16 32", r"widths must be a list of integers >= 1, e\.g\. .*got '16 32'"),
    ([2, -1], [16, 32], r"depths\[1\] must be an integer >= 1, got -1"),
    ([2, 2], [16, 0], r"widths\[1\] must be an integer >= 1, got 0"),
    ([], [], r"depths must name at least one stage"),
])  # fmt: skip
def test_stages_are_checked_when_built(depths, widths, message):
    with pytest.raises(InputError, match=r"shiftpool\.models: ResNet " + message):
        ResNet(BasicBlock, depths, widths, DownsampleSpec(None))


@pytest.mark.parametrize("size", [(17, 23), (9, 9), (1, 1)])
def test_any_input_size(size):
    net = create_model("resnet20", downsample="aps", width=0.25).eval()
    assert net(torch.randn(2, 3, *size)).shape == (2, 10)


def test_copies_keep_the_shortcut_following_their_own_main_path():
    net = create_model("resnet20", downsample="aps", width=0.25)
    copied = copy.deepcopy(net)
    follower = copied.layer3[0].shortcut_pool
    assert follower.selector is copied.layer3[0].pool is not net.layer3[0].pool
