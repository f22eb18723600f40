"""The small CNN of Mouton et al.: pooling kernel and stride set independently, GAP or FC head."""

from __future__ import annotations

import pytest
import torch

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
    ("head", "mlp", r"unknown head 'mlp'; allowed: gap, fc"),
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
