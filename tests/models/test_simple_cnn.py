"""The small CNN of Mouton et al.: pooling kernel and stride set independently, GAP or FC head."""

from __future__ import annotations

import pytest
import torch

from shiftpool.core.errors import InputError
from shiftpool.models import create_model


@pytest.mark.parametrize(("kernel", "stride"), [(2, 2), (3, 2), (5, 2), (2, 3), (1, 2)])
def test_pooling_kernel_and_stride_are_independent(kernel, stride):
    net = create_model("simple_cnn", channels=(4, 8), pool_kernel=kernel, pool_stride=stride)
    pools = net.features[3::4]
    assert [(m.kernel_size, m.stride) for m in pools] == [((kernel, kernel), (stride, stride))] * 2
    assert net(torch.randn(2, 3, 20, 20)).shape == (2, 10)


def test_fc_head_size_follows_the_size_contract():
    net = create_model("simple_cnn", head="fc", channels=(4, 8, 16), input_size=28, pool_stride=3,
                       in_channels=1)
    # 28 -> 10 -> 4 -> 2 (ceil division at every stage)
    assert net.classifier.in_features == 16 * 2 * 2
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_gap_head_is_size_agnostic():
    net = create_model("simple_cnn", channels=(4, 8))
    assert net.classifier.in_features == 8
    assert net(torch.randn(2, 3, 13, 31)).shape == (2, 10)


def test_pool_kernel_needs_an_operator_with_a_kernel():
    with pytest.raises(ValueError, match=r"simple_cnn: pool_kernel needs an operator with a "
                                         r"pooling kernel \(.*max.*\); .blur. has none"):
        create_model("simple_cnn", downsample="blur", pool_kernel=3)


def test_without_batch_norm_convolutions_have_bias():
    net = create_model("simple_cnn", channels=(4,), batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert net.features[0].bias is not None


@pytest.mark.parametrize(("option", "value", "message"), [
    ("head", "mlp", r"head must be one of gap, fc; got 'mlp'"),
    ("channels", (), r"channels must name at least one stage"),
])  # fmt: skip
def test_bad_options(option, value, message):
    with pytest.raises(ValueError, match=message):
        create_model("simple_cnn", **{option: value})


def test_aps_with_circular_padding_is_exactly_shift_invariant():
    torch.manual_seed(0)
    net = create_model("simple_cnn", downsample="aps", circular=True, channels=(8, 16)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        logits = net(x)
        shifted = net(torch.roll(x, (3, 2), dims=(2, 3)))
    torch.testing.assert_close(shifted, logits, rtol=0, atol=1e-5 * logits.abs().max())


@pytest.mark.parametrize(("channels", "message"), [
    ("16 32 64", r"channels must be a list of integers >= 1, e\.g\. \[16, 32, 64\]; "
                 r"got '16 32 64'"),
    (16, r"channels must be a list of integers >= 1.*got 16"),
    ([16, -3], r"channels\[1\] must be an integer >= 1, got -3"),
    ([16, 0], r"channels\[1\] must be an integer >= 1, got 0"),
    ([16, 2.5], r"channels\[1\] must be an integer >= 1, got 2\.5"),
    ([True, 8], r"channels\[0\] must be an integer >= 1, got True"),
    (["16", "32"], r"channels\[0\] must be an integer >= 1, got '16'"),
    ([], r"channels must name at least one stage"),
])  # fmt: skip
def test_channels_are_checked_when_the_model_is_built(channels, message):
    with pytest.raises(InputError, match=r"shiftpool\.simple_cnn: " + message):
        create_model("simple_cnn", channels=channels)


@pytest.mark.parametrize(("option", "value"), [
    ("pool_stride", 0), ("pool_stride", -2), ("pool_stride", 2.0), ("pool_stride", True),
    ("pool_kernel", 0), ("pool_kernel", "3"), ("input_size", 0), ("input_size", "28"),
])  # fmt: skip
def test_sizes_are_positive_integers(option, value):
    with pytest.raises(InputError, match=rf"simple_cnn: {option} must be an integer >= 1, "
                                         rf"got {value!r}"):
        create_model("simple_cnn", channels=(4,), **{option: value})


def test_fc_head_refuses_a_stride_beyond_its_input_size_at_build_time():
    with pytest.raises(InputError, match=r"pool_stride must be <= input_size \(28\) for the fc "
                                         r"head, got 1000000"):
        create_model("simple_cnn", head="fc", input_size=28, pool_stride=10**6)


def test_fc_head_refuses_inputs_of_another_size_before_running():
    net = create_model("simple_cnn", head="fc", channels=(4, 8), input_size=28, in_channels=1)
    assert net(torch.randn(1, 1, 28, 28)).shape == (1, 10)
    with pytest.raises(InputError, match=r"fc head was built for 28x28 inputs \(input_size=28\), "
                                         r"got 32x32; build it with that input_size"):
        net(torch.randn(1, 1, 32, 32))


def test_huge_stride_is_refused_before_anything_is_allocated():
    # 32x32 input at stride 10**6 would pad each map to 10**6 x 10**6 (128 TB for 32 channels)
    net = create_model("simple_cnn", channels=(4,), pool_stride=10**6)
    seen = []
    net.features[0].register_forward_hook(lambda *args: seen.append(1))
    with pytest.raises(InputError, match=r"pool_stride must be <= the input's height and width "
                                         r"\(32x32\), got 1000000"):
        net(torch.randn(1, 3, 32, 32))
    assert not seen  # refused before the first layer ran


def test_stride_equal_to_the_input_size_runs():
    net = create_model("simple_cnn", channels=(4, 8), pool_stride=8)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)
