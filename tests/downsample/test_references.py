"""Equivalence with the official implementations (``shiftpool.benchmarks.references``).

The official LPS and TIPS layers are imported from the anchors folder (``$SHIFTPOOL_ANCHORS``,
else ``../shared/anchors``); kornia and timm from the ``bench`` extra. A test whose reference is
absent is skipped with the reason. Blur and the selections are equal bit for bit; TIPS up to
float rounding (its region means and softmax sum in another order).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shiftpool.benchmarks.references import (
    REFERENCES,
    ReferenceMissing,
    copy_weights_to_shiftpool,
    load_lps_anchor,
    load_tips_anchor,
    reference_layer,
)
from shiftpool.core.errors import InputError
from shiftpool.downsample import APS, LPS, TIPS, create_downsample
from shiftpool.downsample.tips import REFERENCE_OPTIONS, reference_order

pytestmark = pytest.mark.usefixtures("one_thread")


def _need(loader):
    try:
        return loader()
    except ReferenceMissing as missing:
        pytest.skip(str(missing))


def _randn(*shape: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


SIZES = [(8, 8), (7, 9), (10, 5), (3, 4)]


# --- APS: the LPS repository's PolyphaseInvariantDown2D with max_p_norm -----------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_aps_selects_what_the_official_max_p_norm_selects(size, memory_format):
    layers = _need(load_lps_anchor)
    official = layers.PolyphaseInvariantDown2D(stride=2, component_selection=layers.max_p_norm)
    ours = APS(stride=2, padding="zero")  # the official code zero-pads odd sizes
    for seed in range(5):
        x = _randn(6, 5, *size, seed=seed).contiguous(memory_format=memory_format)
        expected, index = official(x, ret_prob=True)
        assert torch.equal(ours.select(x), index)
        assert torch.equal(ours(x), expected)


@pytest.mark.parametrize("filter_size", [2, 3])
def test_aps_with_low_pass_equals_the_official_antialiased_selection(filter_size):
    layers = _need(load_lps_anchor)
    from functools import partial

    low_pass = partial(layers.LowPassFilter, filter_size=filter_size, padding="same",
                       padding_mode="circular")
    official = layers.PolyphaseInvariantDown2D(stride=2, component_selection=layers.max_p_norm,
                                               in_channels=4, antialias_layer=low_pass)
    ours = APS(channels=4, stride=2, filter_size=filter_size, padding="circular")
    x = _randn(3, 4, 12, 10, seed=filter_size)
    torch.testing.assert_close(ours(x), official(x), rtol=0, atol=0)


# --- LPS: the official layer with its scoring net's weights copied ----------------------------


def _official_lps(layers, channels: int, hidden: int):
    return layers.PolyphaseInvariantDown2D(
        stride=2, component_selection=layers.LPS, pass_extras=True, in_channels=channels,
        hid_channels=hidden, get_logits=layers.LPSLogitLayersV2, logits_pad="circular")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_lps_eval_equals_the_official_layer_with_copied_weights(size, memory_format):
    layers = _need(load_lps_anchor)
    torch.manual_seed(0)
    official = _official_lps(layers, 4, 6).eval()
    ours = LPS(channels=4, hidden=6, padding="zero").eval()
    ours.load_reference_state_dict(official.state_dict(), prefix="component_selection.get_logits.")
    for seed in range(5):
        x = _randn(5, 4, *size, seed=seed).contiguous(memory_format=memory_format)
        expected, logits = official(x, ret_prob=True)
        torch.testing.assert_close(ours.scores(ours.prepare(x)), logits, rtol=1e-5, atol=1e-6)
        assert torch.equal(ours.select(x), logits.argmax(dim=1))
        with torch.no_grad():
            assert torch.equal(ours(x), expected)


def test_lps_training_equals_the_official_gumbel_softmax_with_the_same_noise():
    """Same RNG state, same Gumbel draws: the soft mixtures and the gradients agree."""
    layers = _need(load_lps_anchor)
    torch.manual_seed(1)
    official = _official_lps(layers, 3, 3).train()
    ours = LPS(channels=3, padding="zero").train()
    copy_weights_to_shiftpool(official, ours)
    x = _randn(4, 3, 8, 6, seed=3)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(7)
    expected = official(x1)
    torch.manual_seed(7)
    got = ours(x2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    grad = _randn(*got.shape, seed=9)
    expected.backward(grad)
    got.backward(grad)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-5, atol=1e-6)
    official_conv = official.component_selection.get_logits.conv1
    torch.testing.assert_close(ours.logits[0].weight.grad, official_conv.weight.grad,
                               rtol=1e-4, atol=1e-6)


def test_lps_refuses_reference_weights_of_another_shape():
    with pytest.raises(InputError, match=r"shiftpool\.lps: reference weight conv1\.weight"):
        LPS(channels=3).load_reference_state_dict({"conv1.weight": torch.zeros(2, 3, 3, 3)})


# --- TIPS: the reference's pairing and padding, weights copied --------------------------------


def test_reference_order_transposes_the_regions():
    tau = torch.arange(6.0).view(1, 1, 6)  # regions (i, j) of a 2 x 3 grid, row-major
    # region t weights component (t % sh, t // sh): component (i, j) gets region j * sh + i
    assert reference_order(tau, (2, 3)).tolist() == [[[0.0, 2.0, 4.0, 1.0, 3.0, 5.0]]]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("training", [True, False])
def test_tips_with_the_reference_options_equals_the_official_layer(size, training):
    module = _need(load_tips_anchor)
    torch.manual_seed(0)
    official = module.TIPS(5).double().train(training)
    with torch.no_grad():  # spread the per-channel scales: weights far from uniform
        official.conv2.weight.copy_(torch.linspace(-6, 8, 5).view(5, 1, 1, 1))
    ours = TIPS(channels=5, **REFERENCE_OPTIONS).double().train(training)
    ours.load_reference_state_dict(official.state_dict())
    x = _randn(3, 5, *size, seed=size[0], dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    np.random.seed(0)  # the official layer draws its L_undo shift with NumPy
    expected, psi, _ = official(x1)
    got = ours(x2)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    grad = _randn(*got.shape, seed=1, dtype=torch.float64)
    (expected * grad).sum().backward()
    (got * grad).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, official.conv1.weight.grad, rtol=1e-10,
                               atol=1e-12)
    if training:
        torch.testing.assert_close(ours._saved[1], psi, rtol=1e-12, atol=1e-12)


def test_tips_natural_pairing_differs_from_the_official_layer():
    """The default pairing is another function: the docstring no longer calls it equivalent."""
    module = _need(load_tips_anchor)
    torch.manual_seed(0)
    official = module.TIPS(4).eval()
    with torch.no_grad():
        official.conv2.weight.copy_(torch.linspace(-6, 8, 4).view(4, 1, 1, 1))
    natural = TIPS(channels=4, padding="reflect", pad_at="start").eval()
    natural.load_reference_state_dict(official.state_dict())
    x = _randn(2, 4, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(natural(x), official(x)[0], atol=1e-4)


def test_tips_refuses_reference_weights_of_another_shape():
    with pytest.raises(InputError, match=r"reference weight 'conv2\.weight' must have shape"):
        TIPS(channels=2).load_reference_state_dict({"conv1.weight": torch.zeros(2, 1, 3, 3)})


def test_tips_pad_at_start_pads_top_and_left():
    x = torch.ones(1, 1, 3, 3)
    uniform = TIPS(channels=1, padding="zero", pad_at="start")
    with torch.no_grad():
        uniform.scale.zero_()
        out = uniform(x)
    assert out[0, 0].tolist() == [[0.25, 0.5], [0.5, 1.0]]


# --- blur and maxblur against their packages --------------------------------------------------


@pytest.mark.parametrize("name", [n for n, (op, _, _) in REFERENCES.items()
                                  if op in ("blur", "maxblur")])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_blur_references_equal_shiftpool_bit_for_bit_on_even_sizes(name, memory_format):
    op, options, _ = REFERENCES[name]
    try:
        reference = reference_layer(name, channels=6)
    except ReferenceMissing as missing:
        pytest.skip(str(missing))
    ours = create_downsample(op, channels=6, **options)
    x = _randn(2, 6, 16, 12).contiguous(memory_format=memory_format)
    assert torch.equal(ours(x), reference(x))


@pytest.mark.parametrize("name", list(REFERENCES))
def test_every_reference_equals_its_shiftpool_options_in_eval(name):
    """What the benchmark pairs up computes the same function (weights copied)."""
    op, options, _ = REFERENCES[name]
    try:
        reference = reference_layer(name, channels=4).eval()
    except ReferenceMissing as missing:
        pytest.skip(str(missing))
    ours = create_downsample(op, channels=4, **options).eval()
    copy_weights_to_shiftpool(reference, ours)
    x = _randn(3, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-6, atol=1e-6)
