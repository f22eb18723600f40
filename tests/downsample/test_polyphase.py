"""aps and lps: the component they keep, exact shift invariance and equivariance, followers.

Exactness: inputs are multiples of 1/256 below 16 in magnitude, so the sums in the checks
(global average pooling, the convolutions of the residual test) are exact in float32 whatever
the summation order, and outputs can be compared with ``torch.equal``; the fine grid makes tied
norms unlikely, and each test checks that the best component is unique. Tests that compute take
the ``device`` of ``tests/conftest.py`` (``--device``); inputs are drawn on the CPU and moved.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from shiftpool.downsample import (
    APS,
    LPS,
    PhaseFollower,
    PhaseSelector,
    create_downsample,
    geometry,
    set_lps_temperature,
)
from shiftpool.downsample.geometry import PAD_MODES, GradientSlot, polyphase_components
from shiftpool.downsample.polyphase import NORMS, _small_circular_conv, take_components

STRIDES = [2, 3, (2, 3)]
SHIFTS = [(1, 0), (0, 1), (1, 2), (3, -1), (-2, 5)]


def _pair(stride):
    return (stride, stride) if isinstance(stride, int) else stride


def _dyadic(*shape: int, seed: int = 0, device="cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(-4096, 4097, shape, generator=generator).float() / 256).to(device)


def _randn(*shape: int, device, seed: int | None = None) -> torch.Tensor:
    """``torch.randn`` drawn on the CPU (the same values on every device), moved to ``device``."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator).to(device)


def _lps(channels: int = 3, stride=2, seed: int = 0, device="cpu", **options) -> LPS:
    torch.manual_seed(seed)
    return LPS(channels=channels, stride=stride, **options).to(device)


def _assert_unique_best(scores: torch.Tensor) -> None:
    """Precondition of the exactness tests: no tie for the best component."""
    top2 = scores.topk(2, dim=1).values
    assert (top2[:, 0] > top2[:, 1]).all(), "test input has tied components; pick another seed"


def _norms_loop(x: torch.Tensor, stride, norm: str) -> torch.Tensor:
    components = polyphase_components(x.double(), _pair(stride)).flatten(2)
    if norm == "l2":
        return components.norm(dim=2)
    if norm == "l1":
        return components.abs().sum(dim=2)
    return components.abs().amax(dim=2)


def _selectors(stride, channels: int, device):
    selectors = [APS(stride=stride), APS(stride=stride, norm="l1"),
                 APS(stride=stride, norm="linf"), APS(stride=stride, filter_size=3),
                 _lps(channels, stride=stride).eval()]
    return [selector.to(device) for selector in selectors]


# --- which component ---------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [*STRIDES, (3, 1)])
def test_take_components_follows_the_geometry_order(stride, device):
    sh, sw = _pair(stride)
    x = _randn(4, 3, 2 * sh, 3 * sw, device=device)
    index = torch.tensor([0, sh * sw - 1, 1 % (sh * sw), (sh * sw) // 2], device=device)
    expected = polyphase_components(x, (sh, sw))[torch.arange(4, device=device), index]
    assert torch.equal(take_components(x, index, (sh, sw)), expected)
    one_hot = nn.functional.one_hot(index, sh * sw).float()
    assert torch.equal(take_components(x, one_hot, (sh, sw)), expected)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("stride", STRIDES)
def test_aps_keeps_the_component_of_largest_norm(norm, stride, device):
    x = _randn(5, 3, 6, 6, device=device)
    aps = APS(stride=stride, norm=norm)
    norms = _norms_loop(x, stride, norm)
    _assert_unique_best(norms)
    index = norms.argmax(dim=1)
    assert torch.equal(aps.select(x), index)
    expected = polyphase_components(x, _pair(stride))[torch.arange(5, device=device), index]
    assert torch.equal(aps(x), expected)


def test_ties_go_to_the_lowest_index_even_in_float(device):
    small = _randn(3, 2, 4, 5, device=device)
    upsampled = small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # 4 equal parts
    assert APS(stride=2).select(upsampled).tolist() == [0, 0, 0]
    assert _lps(channels=2, device=device).eval().select(upsampled).tolist() == [0, 0, 0]
    x = torch.zeros(2, 3, 6, 6, device=device)
    x[:, :, 1::2, 0::2] = 1.0  # component 2 and component 3 hold the same values
    x[:, :, 1::2, 1::2] = 1.0
    assert APS(stride=2).select(x).tolist() == [2, 2]


def test_stride_one_is_the_identity(device, dtype):
    x = _randn(2, 3, 5, 4, device=device).to(dtype)
    assert torch.equal(APS(stride=1)(x), x)
    assert torch.equal(_lps(stride=1, device=device).to(dtype).eval()(x), x)


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (4, 9), (2, 1)])
@pytest.mark.parametrize("padding", PAD_MODES)
def test_odd_sizes_are_padded_to_the_stride(size, padding, device, dtype):
    strides = [2, 3, (2, 4), (1, 3)]  # each stride meets each size and each mode once
    stride = strides[(size[0] + PAD_MODES.index(padding)) % len(strides)]
    sh, sw = _pair(stride)
    x = _randn(2, 3, *size, device=device).to(dtype)
    expected = (2, 3, -(-size[0] // sh), -(-size[1] // sw))
    aps = APS(stride=stride, padding=padding, filter_size=2).to(device, dtype)
    assert aps(x).shape == expected
    lps = _lps(stride=stride, padding=padding, device=device).to(dtype)
    assert lps.train()(x).shape == expected


# --- exact invariance and equivariance ----------------------------------------------------------


def _rolled_output(out: torch.Tensor, index: torch.Tensor, stride, shift) -> torch.Tensor:
    """``out`` of each sample rolled by how far its kept component moves under ``shift``."""
    (sh, sw), (dy, dx) = _pair(stride), shift
    rows, cols = index // sw, index % sw
    return torch.stack([
        out[n].roll(((int(rows[n]) + dy) // sh, (int(cols[n]) + dx) // sw), dims=(1, 2))
        for n in range(out.shape[0])
    ])


@pytest.mark.parametrize("stride", STRIDES)
def test_circular_shifts_move_the_choice_and_roll_the_output_exactly(stride, device):
    sh, sw = _pair(stride)
    x = _dyadic(4, 3, 4 * sh, 3 * sw, seed=sh * 10 + sw, device=device)
    for selector in _selectors(stride, channels=3, device=device):
        prepared = selector.prepare(x)
        _assert_unique_best(selector.scores(prepared))
        index, out = selector.select(x), selector(x)
        for dy, dx in SHIFTS:
            shifted = x.roll((dy, dx), dims=(2, 3))
            moved = ((index // sw + dy) % sh) * sw + (index % sw + dx) % sw
            assert torch.equal(selector.select(shifted), moved), (selector, (dy, dx))
            assert torch.equal(selector(shifted), _rolled_output(out, index, stride, (dy, dx)))


@pytest.mark.parametrize("stride", STRIDES)
def test_global_average_pooling_after_aps_and_lps_is_exactly_shift_invariant(stride, device):
    sh, sw = _pair(stride)
    x = _dyadic(3, 4, 3 * sh, 4 * sw, seed=7, device=device)
    for selector in _selectors(stride, channels=4, device=device):
        pooled = selector(x).mean(dim=(2, 3))
        for dy, dx in SHIFTS:
            assert torch.equal(selector(x.roll((dy, dx), dims=(2, 3))).mean(dim=(2, 3)), pooled)


def test_float_inputs_keep_the_shifted_component(device):
    """With ordinary float data the choice still moves with the shift (no near-ties)."""
    x = _randn(8, 16, 16, 16, device=device, seed=3)
    for selector in _selectors(2, channels=16, device=device):
        index, out = selector.select(x), selector(x)
        shifted = x.roll((1, 3), dims=(2, 3))
        assert torch.equal(selector(shifted), _rolled_output(out, index, 2, (1, 3)))


# --- followers --------------------------------------------------------------------------------


class _Residual(nn.Module):
    """conv -> selector on the main path, 1x1 conv -> follower on the shortcut, then the sum."""

    def __init__(self, selector: PhaseSelector, channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, 3, padding=1, padding_mode="circular",
                              bias=False)
        self.down = selector
        self.shortcut = nn.Conv2d(channels, 2 * channels, 1, bias=False)
        self.follow = selector.follower()
        for conv in (self.conv, self.shortcut):  # multiples of 1/8: exact sums
            weight = torch.randint(-4, 5, conv.weight.shape, generator=torch.Generator()
                                   .manual_seed(conv.weight.numel()))
            conv.weight.data = weight.float() / 8

    def forward(self, x):
        return self.down(self.conv(x)) + self.follow(self.shortcut(x))


@pytest.mark.parametrize("stride", [2, (2, 3)])
@pytest.mark.parametrize("kind", ["aps", "aps-filtered", "lps"])
def test_residual_sum_is_exactly_equivariant_when_the_shortcut_follows(stride, kind, device):
    sh, sw = _pair(stride)
    selector = {"aps": lambda: APS(stride=stride),
                "aps-filtered": lambda: APS(stride=stride, filter_size=3),
                "lps": lambda: _lps(channels=6, stride=stride)}[kind]()
    block = _Residual(selector).to(device).eval()
    x = _dyadic(3, 3, 4 * sh, 4 * sw, seed=11, device=device)
    out = block(x)
    index = selector.select(block.conv(x))
    for dy, dx in SHIFTS:
        shifted = block(x.roll((dy, dx), dims=(2, 3)))
        assert torch.equal(shifted, _rolled_output(out, index, stride, (dy, dx)))
        assert torch.equal(shifted.mean(dim=(2, 3)), out.mean(dim=(2, 3)))


def test_residual_with_an_independent_shortcut_is_not_equivariant(device):
    """Why followers exist: a shortcut subsampling at a fixed phase breaks the sum."""
    block = _Residual(APS(stride=2)).to(device).eval()
    block.follow = create_downsample("subsample", stride=2)
    x = _dyadic(3, 3, 8, 8, seed=11, device=device)
    pooled = block(x).mean(dim=(2, 3))
    assert not all(torch.equal(block(x.roll(s, dims=(2, 3))).mean(dim=(2, 3)), pooled)
                   for s in SHIFTS)


def test_follower_uses_the_latest_choice_in_training_too(device):
    lps = _lps(channels=3, device=device).train()
    follower = lps.follower()
    x = _randn(4, 3, 8, 8, device=device)
    torch.manual_seed(5)
    out = lps(x)
    assert torch.equal(follower(x), out)  # the same Gumbel mixture weights
    aps = APS(stride=(2, 3), filter_size=3).to(device)
    follow = aps.follower()
    x = _randn(2, 3, 7, 8, device=device)
    out = aps(x)
    assert torch.equal(follow(x), out)
    wide = _randn(2, 5, 7, 8, device=device)  # another channel count: the filter is broadcast
    assert follow(wide).shape == (2, 5, 4, 3)


def test_follower_before_the_selector_ran_raises():
    with pytest.raises(RuntimeError, match=r"shiftpool\.phase_follower: the aps selector it "
                                           r"follows has not run a forward pass yet"):
        APS().follower()(torch.zeros(1, 1, 4, 4))


def test_follower_refuses_another_batch_or_spatial_size():
    aps = APS()
    follower = aps.follower()
    aps(torch.randn(2, 3, 8, 8))
    for shape in [(3, 3, 8, 8), (2, 3, 8, 6)]:
        with pytest.raises(ValueError, match=r"shiftpool\.phase_follower: input of batch and "
                                             r"spatial size"):
            follower(torch.randn(shape))


def test_follower_holds_nothing_and_copies_with_its_model():
    lps = _lps(channels=3)
    follower = lps.follower()
    assert isinstance(follower, PhaseFollower) and follower.selector is lps
    assert list(follower.children()) == [] and list(follower.parameters()) == []
    assert follower.state_dict() == {}
    model = nn.ModuleDict({"down": lps, "follow": follower})
    assert set(model.state_dict()) == {f"down.{k}" for k in lps.state_dict()}
    clone = copy.deepcopy(model)
    assert clone["follow"].selector is clone["down"]


def test_selectors_store_their_choice_only_for_followers():
    aps = APS()
    aps(torch.randn(2, 3, 4, 4))
    assert aps._choice is None
    aps.follower()
    aps(torch.randn(2, 3, 4, 4))
    assert aps._choice is not None


# --- LPS training -----------------------------------------------------------------------------


def test_lps_training_is_random_and_eval_is_deterministic(device):
    lps = _lps(channels=3, device=device)
    x = _randn(4, 3, 8, 8, device=device)
    lps.train()
    assert not torch.equal(lps(x), lps(x))
    torch.manual_seed(1)
    first = lps(x)
    torch.manual_seed(1)
    assert torch.equal(lps(x), first)
    lps.eval()
    assert torch.equal(lps(x), lps(x))
    assert torch.equal(lps(x), take_components(x, lps.select(x), (2, 2)))


def test_soft_training_mixes_and_hard_training_keeps_one_component(device):
    x = _randn(6, 3, 8, 8, device=device)
    components = polyphase_components(x, (2, 2))
    soft = _lps(channels=3, device=device).train()(x)
    assert (soft >= components.amin(1) - 1e-6).all() and (soft <= components.amax(1) + 1e-6).all()
    hard_lps = _lps(channels=3, hard=True, device=device).train()
    hard = hard_lps(x)
    matches = (components == hard.unsqueeze(1)).flatten(2).all(dim=2)
    assert matches.any(dim=1).all()
    hard.square().sum().backward()  # straight-through: the scoring net gets a gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in hard_lps.parameters())


def test_temperature_is_a_buffer_that_set_lps_temperature_updates():
    lps = _lps(channels=3, temperature=2.0)
    assert lps.temperature.item() == 2.0 and "temperature" in lps.state_dict()
    model = nn.Sequential(lps, nn.ReLU(), _lps(channels=3), APS())
    assert set_lps_temperature(model, 0.25) == 2
    assert all(m.temperature.item() == 0.25 for m in model if isinstance(m, LPS))
    assert set_lps_temperature(nn.Conv2d(1, 1, 1), 1.0) == 0


def test_low_temperature_approaches_a_single_component(device):
    x = _randn(4, 3, 8, 8, device=device)
    lps = _lps(channels=3, device=device).train()
    components = polyphase_components(x, (2, 2))
    set_lps_temperature(lps, 1e-4)
    nearest = (components - lps(x).unsqueeze(1)).abs().flatten(2).amax(2).amin(1)
    assert (nearest < 1e-3).all()
    set_lps_temperature(lps, 100.0)
    nearest = (components - lps(x).unsqueeze(1)).abs().flatten(2).amax(2).amin(1)
    assert (nearest > 1e-2).all()


@pytest.mark.parametrize("tau", [0, -1.0, float("inf"), float("nan"), "1", True])
def test_bad_temperature_is_refused(tau):
    with pytest.raises(ValueError, match=r"shiftpool\.lps: temperature must be a finite number"):
        set_lps_temperature(_lps(), tau)
    with pytest.raises(ValueError, match=r"shiftpool\.lps: temperature must be a finite number"):
        LPS(channels=3, temperature=tau)


# --- precision, memory format, gradients ------------------------------------------------------


@pytest.mark.parametrize("kind", ["aps", "lps"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("size", [(8, 8), (7, 5)])
def test_half_precision_and_channels_last(kind, dtype, size, device):
    module = create_downsample(kind, channels=4).to(device, dtype)
    x = _randn(2, 4, *size, device=device).to(dtype).to(memory_format=torch.channels_last)
    for training in (False, True):
        y = module.train(training)(x)
        assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
        assert y.shape == (2, 4, -(-size[0] // 2), -(-size[1] // 2))


def _distinct(*shape: int, device) -> torch.Tensor:
    numel = torch.Size(shape).numel()
    values = torch.randperm(numel, generator=torch.Generator().manual_seed(0)).double() / numel
    return values.view(shape).to(device).requires_grad_()


def test_gradcheck_aps_float64(device):
    x = _distinct(2, 2, 5, 6, device=device)
    for aps in (APS(stride=2), APS(stride=(2, 3), norm="l1", filter_size=3)):
        assert torch.autograd.gradcheck(aps.to(device, torch.float64), (x,), fast_mode=True)


@pytest.mark.parametrize("training", [False, True])
def test_gradcheck_lps_float64(training, device):
    """Soft Gumbel mixture in training (hard=True's straight-through gradient is biased on
    purpose, so finite differences cannot check it), argmax in eval."""
    lps = _lps(channels=2, hidden=3, device=device).double().train(training)
    names = [name for name, _ in lps.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in lps.parameters()]

    def call(x, *weights):
        torch.manual_seed(0)  # one fixed Gumbel draw
        return torch.func.functional_call(lps, dict(zip(names, weights, strict=True)), (x,))

    x = _distinct(2, 2, 4, 6, device=device)
    assert torch.autograd.gradcheck(call, (x, *params), fast_mode=True)


# --- bad options ------------------------------------------------------------------------------


def test_bad_options_are_refused_with_the_allowed_values():
    with pytest.raises(ValueError, match=r"shiftpool\.aps: unknown norm 'l3'; allowed: l2, l1, "
                                         r"linf"):
        create_downsample("aps", channels=3, norm="l3")
    for name in ("aps", "lps"):
        with pytest.raises(ValueError, match=rf"shiftpool\.{name}: unknown padding mode 'wrap'"):
            create_downsample(name, channels=3, padding="wrap")
        with pytest.raises(ValueError, match=rf"shiftpool\.{name}: this module was built for 3 "):
            create_downsample(name, channels=3)(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"shiftpool\.aps: filter_size must be an integer >= 1"):
        create_downsample("aps", filter_size=0)
    with pytest.raises(ValueError, match=r"shiftpool\.lps: channels is required"):
        create_downsample("lps", channels=None)
    with pytest.raises(ValueError, match=r"shiftpool\.lps: hidden must be an integer >= 1"):
        create_downsample("lps", channels=3, hidden=0)


# --- LPS: the folded scoring equals the scoring net as written -------------------------------


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (2, 1), (1, 4), (4, 4), (3, 5), (2, 9), (5, 2)])
def test_small_map_circular_convolution_equals_the_sum_over_rolled_maps(size):
    """Folded taps (sides under 3) and the matrix product (16 pixels or fewer) against the
    definition: ``sum over taps of W[:, :, a + 1, b + 1] @ roll(x, (-a, -b))``."""
    x = torch.randn(3, 4, *size, dtype=torch.float64)
    weight = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    bias = torch.randn(5, dtype=torch.float64)
    expected = bias.view(1, -1, 1, 1).expand(3, 5, *size).clone()
    for a in (-1, 0, 1):
        for b in (-1, 0, 1):
            rolled = torch.roll(x, (-a, -b), dims=(2, 3))
            expected += torch.einsum("oc,nchw->nohw", weight[:, :, a + 1, b + 1], rolled)
    torch.testing.assert_close(_small_circular_conv(x, weight, bias), expected,
                               rtol=1e-12, atol=1e-12)



@pytest.mark.parametrize("stride", [2, 3, (2, 3), (1, 2)])
# components of 3 or more pixels a side, of 2 or 1 along either side (the filter folded), of
# 16 pixels or fewer (one matrix product) and more (a convolution)
@pytest.mark.parametrize("size", [(6, 6), (12, 9), (3, 2), (4, 4), (4, 10), (8, 8)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_lps_scores_and_gradients_equal_the_scoring_net_as_written(stride, size, memory_format,
                                                                   device):
    """``LPS.scores`` (one padded copy, second convolution folded into its mean, hand-written
    backward passes) against ``logits(components).mean((1, 2, 3))`` in float64."""
    lps = _lps(channels=3, stride=stride, hidden=5, device=device).double()
    x = torch.randn(2, 3, *size, dtype=torch.float64, device=device)
    x = x.contiguous(memory_format=memory_format).requires_grad_()
    prepared = lps.prepare(x)
    got = lps.scores(prepared)
    components = polyphase_components(prepared, _pair(stride)).flatten(0, 1)
    expected = lps.logits(components).mean(dim=(1, 2, 3)).view(2, -1)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn(expected.shape, dtype=torch.float64, device=device)
    inputs = (x, *lps.parameters())
    for g, e in zip(torch.autograd.grad((got * weights).sum(), inputs, retain_graph=True),
                    torch.autograd.grad((expected * weights).sum(), inputs), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    torch.manual_seed(3)
    with torch.no_grad():
        torch.testing.assert_close(lps.scores(prepared), expected, rtol=1e-12, atol=1e-12)


def test_lps_training_step_gradcheck_channels_last():
    lps = _lps(channels=2, stride=(2, 3), hidden=3).double().train()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)

    def seeded(t):
        torch.manual_seed(5)
        return lps(t)

    assert torch.autograd.gradcheck(seeded, (x.requires_grad_(),), fast_mode=True)


# --- LPS training: one input gradient for the scoring net and the mixing -----------------------


def _lps_training_as_written(lps: LPS, x: torch.Tensor, seed: int) -> torch.Tensor:
    """The soft Gumbel mixture written plainly (sizes divisible by the stride, hard=False)."""
    components = polyphase_components(x, lps.stride)  # (N, K, C, h, w)
    logits = lps.logits(components.flatten(0, 1)).mean(dim=(1, 2, 3)).view(x.shape[0], -1)
    torch.manual_seed(seed)  # the layer's one random draw, the same way
    gumbel = -torch.empty_like(logits).exponential_().log()
    soft = ((logits + gumbel) / lps.temperature).softmax(dim=1)
    return (soft[:, :, None, None, None] * components).sum(dim=1)


# components larger than 16 pixels with sides of 3 or more: the stacked, padded copy whose
# backward takes the mixing's gradient
@pytest.mark.parametrize(("stride", "size"), [(2, (12, 10)), ((2, 3), (10, 15)), (3, (12, 18))])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_lps_training_output_and_gradients_equal_the_plain_operations(stride, size,
                                                                      memory_format, device):
    lps = _lps(channels=3, stride=stride, hidden=4, device=device).double().train()
    x = torch.randn(2, 3, *size, dtype=torch.float64, device=device)
    x = x.contiguous(memory_format=memory_format).requires_grad_()
    torch.manual_seed(7)
    got = lps(x)
    expected = _lps_training_as_written(lps, x, seed=7)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn(expected.shape, dtype=torch.float64, device=device)
    inputs = (x, *lps.parameters())
    for g, e in zip(torch.autograd.grad((got * weights).sum(), inputs),
                    torch.autograd.grad((expected * weights).sum(), inputs), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def _full_size_additions(loss: torch.Tensor, x: torch.Tensor) -> int:
    """How many additions with an output of ``x``'s shape ``loss``'s backward runs."""

    class Count(TorchDispatchMode):
        found = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.__name__.startswith("add") and getattr(out, "shape", None) == x.shape:
                Count.found += 1
            return out

    with Count():
        loss.backward()
    return Count.found


def test_lps_training_backward_adds_no_second_input_gradient(monkeypatch):
    """The mixing leaves its input gradient for the stacked components' backward, which adds
    to it in place: autograd has no two full-size gradients of the input to add."""
    lps = _lps(channels=3, hidden=4).train()
    x = torch.randn(2, 3, 12, 12, requires_grad=True)
    assert _full_size_additions(lps(x.relu()).square().sum(), x) == 0
    monkeypatch.setattr(GradientSlot, "arm", lambda self: None)  # the two gradients, added
    assert _full_size_additions(lps(x.relu()).square().sum(), x) >= 1


def test_lps_training_without_autograds_graph_task_id_lets_autograd_add(monkeypatch):
    """A torch without the (private) graph task id: the slot is never armed, autograd adds the
    two input gradients, and the gradient is the same."""
    lps = _lps(channels=3, hidden=4).double().train()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(2)
    (expected,) = torch.autograd.grad(lps(x).square().sum(), x)
    monkeypatch.setattr(geometry, "_graph_task_id", None)
    slot = GradientSlot()
    slot.arm()
    assert not slot.armed
    torch.manual_seed(2)
    assert _full_size_additions(lps(x.relu()).square().sum(), x) >= 1
    torch.manual_seed(2)
    (got,) = torch.autograd.grad(lps(x).square().sum(), x)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_lps_gradient_left_by_a_pass_that_did_not_need_the_input_is_not_taken_later(device):
    """A pass for a parameter alone runs the mixing's backward but not the stacked components'
    one; a later pass through the follower only must not add what the first pass left."""
    def build():
        lps = _lps(channels=3, hidden=4, device=device).double().train()
        return lps, lps.follower()

    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, device=device, requires_grad=True)
    y = torch.randn(2, 3, 12, 12, dtype=torch.float64, device=device)
    lps, follower = build()
    torch.manual_seed(1)
    main = lps(x)
    short = follower(y)
    torch.autograd.grad(main.sum(), lps.logits[0].weight, retain_graph=True)
    (got,) = torch.autograd.grad(short.square().sum(), x)
    lps, follower = build()
    torch.manual_seed(1)
    lps(x)
    (expected,) = torch.autograd.grad(follower(y).square().sum(), x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
