"""Tests of TIPS: learned mixing of polyphase components, and its two regularisers.

The operator and loss tests take the ``device`` of ``tests/conftest.py`` (``--device``).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shiftpool.downsample import TIPS, TipsObjective, create_downsample, has_tips, tips_losses
from shiftpool.downsample.geometry import PAD_MODES, pad_to_multiple, polyphase_components

STRIDES = [2, (2, 3), 3, (1, 2)]
SIZES = [(8, 8), (7, 9), (1, 1), (5, 2)]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


def _tips(channels: int = 3, seed: int = 0, device="cpu", **options) -> TIPS:
    torch.manual_seed(seed)
    layer = TIPS(channels=channels, **options).to(device, torch.float64)
    with torch.no_grad():  # a spread of scales, so that the weights are far from uniform
        layer.scale.copy_(torch.linspace(-4.0, 6.0, channels, dtype=torch.float64))
    return layer


def _reference(layer: TIPS, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The definition, written plainly: padded input, psi, tau and output."""
    xp = pad_to_multiple(x, layer.stride, layer.padding)
    psi = F.relu(F.conv2d(xp, layer.weight, padding=1, groups=x.shape[1]))
    logits = F.adaptive_avg_pool2d(psi, layer.stride) * layer.scale.view(-1, 1, 1)
    tau = torch.softmax(logits.flatten(2), dim=-1)  # (N, C, K), k = i * sw + j
    components = polyphase_components(xp, layer.stride)  # (N, K, C, H', W')
    out = (tau.transpose(1, 2)[..., None, None] * components).sum(dim=1)
    return out, psi, tau


Tensor = torch.Tensor


# --- the operator -------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_forward_and_gradients_match_the_plain_definition(
    stride, size, channels_last, training, device
):
    layer = _tips(channels=3, stride=stride, device=device).train(training)
    x = torch.randn(2, 3, *size, dtype=torch.float64, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    out = layer(x)
    expected, _, _ = _reference(layer, x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad_out = torch.randn_like(out)
    inputs = (x, layer.weight, layer.scale)
    got = torch.autograd.grad(out, inputs, grad_out)
    want = torch.autograd.grad(expected, inputs, grad_out)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("padding", PAD_MODES)
def test_outputs_lie_between_min_and_max_of_their_padded_block(stride, padding, device):
    layer = _tips(channels=4, stride=stride, padding=padding, device=device)
    x = torch.randn(3, 4, 7, 10, dtype=torch.float64, device=device)
    with torch.no_grad():
        out = layer(x)
    blocks = polyphase_components(pad_to_multiple(x, layer.stride, padding), layer.stride)
    low, high = blocks.amin(dim=1), blocks.amax(dim=1)
    # a convex combination, up to the rounding of a sum of sh*sw float64 products
    ulp = 8 * torch.finfo(torch.float64).eps * x.abs().max()
    assert bool((out >= low - ulp).all()) and bool((out <= high + ulp).all())
    spread = (high - low) > 1e-3
    # and a real mixture: strictly inside for some blocks (not max, not min pooling)
    assert bool(((out < high - 1e-6) & (out > low + 1e-6) & spread).any())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_mixing_weights_are_positive_and_sum_to_one(dtype, device):
    layer = _tips(channels=5, stride=(2, 3), device=device).to(dtype)
    weights = layer.mixing_weights(torch.randn(4, 5, 9, 9, dtype=dtype, device=device))
    assert weights.shape == (4, 5, 6)
    assert weights.dtype == torch.promote_types(dtype, torch.float32)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    ones = torch.ones(4, 5, dtype=weights.dtype, device=device)
    torch.testing.assert_close(weights.sum(-1), ones, rtol=0, atol=tol)
    assert bool((weights > 0).all())


def test_pooled_region_i_j_weights_component_i_j(device):
    # identity filter: psi = relu(x); a large scale makes the softmax pick the largest region
    layer = _tips(channels=1, stride=(2, 3), device=device)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:, :, 1, 1] = 1.0
        layer.scale.fill_(50.0)
    for i in range(2):
        for j in range(3):
            x = torch.zeros(1, 1, 8, 12, dtype=torch.float64, device=device)
            x[..., 4 * i : 4 * i + 4, 4 * j : 4 * j + 4] = 1.0 + torch.rand(4, 4).to(device)
            k = i * 3 + j
            weights = layer.mixing_weights(x)[0, 0]
            assert int(weights.argmax()) == k and float(weights[k].detach()) > 0.999
            component = polyphase_components(x, (2, 3))[0, k, 0]
            torch.testing.assert_close(layer(x)[0, 0], component, atol=1e-3, rtol=0)


@pytest.mark.parametrize("stride", [2, (2, 3), 4])
def test_ten_parameters_per_channel(stride):
    layer = TIPS(channels=7, stride=stride)
    assert sum(p.numel() for p in layer.parameters()) == 70
    assert layer.weight.shape == (7, 1, 3, 3) and layer.scale.shape == (7,)


def test_initialisation_is_documented_conv_default_and_unit_scale():
    layer = TIPS(channels=64)
    assert float(layer.weight.detach().abs().max()) <= 1 / 3
    assert torch.equal(layer.scale, torch.ones(64))


def test_same_computation_in_training_and_evaluation(device):
    layer = _tips(channels=3, device=device)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, device=device)
    torch.testing.assert_close(layer.train()(x), layer.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_dtype_and_memory_format_are_kept(dtype, channels_last, device):
    layer = TIPS(channels=6).to(device, dtype)
    x = torch.randn(2, 6, 9, 10, dtype=dtype, device=device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=fmt).requires_grad_()
    out = layer(x)
    assert out.dtype == dtype and out.shape == (2, 6, 5, 5)
    assert out.is_contiguous(memory_format=fmt)
    out.float().sum().backward()
    assert x.grad.dtype == dtype and x.grad.is_contiguous(memory_format=fmt)


def test_forward_returns_one_tensor_and_fits_in_sequential(device):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), TIPS(channels=4), nn.ReLU()).to(device)
    out = model(torch.randn(2, 3, 8, 8, device=device))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4, 4, 4)
    assert has_tips(model) and not has_tips(nn.Sequential(nn.Conv2d(3, 4, 3)))


def test_gradcheck_float64(device):
    layer = _tips(channels=2, stride=(2, 3), device=device)
    x = torch.randn(1, 2, 3, 5, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    weight, scale = layer.weight.detach().clone(), layer.scale.detach().clone()

    def by_parameters(w: Tensor, s: Tensor) -> Tensor:
        return torch.func.functional_call(layer, {"weight": w, "scale": s}, (x.detach(),))

    assert torch.autograd.gradcheck(
        by_parameters, (weight.requires_grad_(), scale.requires_grad_())
    )


def test_bad_options_raise_clear_errors():
    with pytest.raises(ValueError, match=r"shiftpool\.tips: channels is required"):
        TIPS()
    message = r"shiftpool\.tips: undo_max_shift must be an integer >= 0"
    with pytest.raises(ValueError, match=message):
        TIPS(channels=2, undo_max_shift=-1)
    with pytest.raises(ValueError, match=r"shiftpool\.tips: unknown padding mode 'wrap'"):
        create_downsample("tips", channels=2, padding="wrap")
    with pytest.raises(ValueError, match=r"shiftpool\.tips: this module was built for 2 channels"):
        TIPS(channels=2)(torch.randn(1, 3, 4, 4))


def test_deepcopy_after_a_training_step_drops_the_recorded_tensors():
    layer = TIPS(channels=2).train()
    layer(torch.randn(1, 2, 4, 4))
    clone = copy.deepcopy(layer)
    assert layer.has_regularizers and not clone.has_regularizers
    assert torch.equal(clone.weight, layer.weight)


# --- regularisers -------------------------------------------------------------------------------


def _expected_undo(layer: TIPS, x: Tensor, seed: int) -> Tensor:
    """``MSE(psi, roll(x~, (dy, dx)))`` with the shift a generator seeded ``seed`` draws."""
    m = layer.undo_max_shift
    dy, dx = torch.randint(-m, m + 1, (2,), generator=torch.Generator().manual_seed(seed)).tolist()
    _, psi, _ = _reference(layer, x)
    xp = pad_to_multiple(x, layer.stride, layer.padding)
    return ((psi - torch.roll(xp, (dy, dx), dims=(2, 3))) ** 2).mean()


def test_losses_match_a_hand_computation_averaged_over_layers(device):
    layers = [_tips(channels=3, seed=1, device=device),
              _tips(channels=3, seed=2, stride=(1, 2), device=device)]
    for layer, seed in zip(layers, (10, 11), strict=True):
        layer.generator = torch.Generator().manual_seed(seed)
        layer.undo_max_shift = 2
    model = nn.Sequential(*layers).train()
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64, device=device)
    model(x)
    losses = tips_losses(model)
    x1 = layers[0](x)  # the second layer's input, recomputed (same values)
    fm = [(1 - _reference(layer, inp)[2].norm(dim=-1)).mean()
          for layer, inp in zip(layers, (x, x1), strict=True)]
    undo = [_expected_undo(layer, inp, seed)
            for layer, inp, seed in zip(layers, (x, x1), (10, 11), strict=True)]
    torch.testing.assert_close(losses["fm"], (fm[0] + fm[1]) / 2)
    torch.testing.assert_close(losses["undo"].double(), (undo[0] + undo[1]) / 2)


def test_fm_is_zero_for_one_hot_weights_and_largest_for_uniform():
    layer = _tips(channels=2)
    with torch.no_grad():
        layer.weight.zero_()  # psi = 0: uniform weights
    layer.train()(torch.randn(2, 2, 6, 6, dtype=torch.float64))
    torch.testing.assert_close(layer.fm_loss(), torch.tensor(0.5, dtype=torch.float64))
    with torch.no_grad():
        layer.weight[:, :, 1, 1] = 1.0
        layer.scale.fill_(1e4)
    x = torch.zeros(1, 2, 6, 6, dtype=torch.float64)
    x[..., :3, :3] = 1.0
    layer(x)
    torch.testing.assert_close(layer.fm_loss(), torch.tensor(0.0, dtype=torch.float64))


def test_objective_combines_the_terms_and_starts_undo_at_its_epoch():
    layer = _tips(channels=3, generator=torch.Generator().manual_seed(5))
    model = nn.Sequential(layer).train()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    model(x)
    ce = torch.tensor(1.7, dtype=torch.float64)
    objective = TipsObjective(alpha=0.35, undo_start_epoch=3)
    fm = (1 - _reference(layer, x)[2].norm(dim=-1)).mean()

    state = layer.generator.get_state()
    before = objective(ce, model, epoch=2)
    assert torch.equal(layer.generator.get_state(), state)  # L_undo not even computed
    torch.testing.assert_close(before, fm + 0.65 * ce)
    assert float(objective.last_terms["undo"]) == 0.0

    after = objective(ce, model, epoch=3)
    undo = _expected_undo(layer, x, seed=5)
    torch.testing.assert_close(after, fm + 0.65 * ce + 0.35 * undo)
    torch.testing.assert_close(objective.last_terms["undo"].double(), undo)


def test_undo_target_is_detached_and_gradients_reach_the_filter(device):
    layer = _tips(channels=2, generator=torch.Generator().manual_seed(0), device=device)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, device=device, requires_grad=True)
    layer.train()(x)
    grad_x, grad_w = torch.autograd.grad(layer.undo_loss(), (x, layer.weight))
    _, psi, _ = _reference(layer, x)
    dy, dx = torch.randint(-1, 2, (2,), generator=torch.Generator().manual_seed(0)).tolist()
    target = torch.roll(x.detach(), (dy, dx), dims=(2, 3))
    want_x, want_w = torch.autograd.grad(F.mse_loss(psi, target), (x, layer.weight))
    torch.testing.assert_close(grad_x, want_x)
    torch.testing.assert_close(grad_w, want_w)
    assert float(grad_w.abs().sum()) > 0


def test_undo_shifts_stay_within_the_maximum_and_cover_it():
    layer = _tips(channels=1, undo_max_shift=1, generator=torch.Generator().manual_seed(3))
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    layer.train()(x)
    with torch.no_grad():
        _, psi, _ = _reference(layer, x)
    by_shift = {
        (dy, dx): float(F.mse_loss(psi, torch.roll(x, (dy, dx), dims=(2, 3))))
        for dy in range(-2, 3) for dx in range(-2, 3)
    }
    assert len(set(by_shift.values())) == len(by_shift)  # every shift identifiable
    seen = set()
    for _ in range(80):
        value = layer.undo_loss().item()
        seen |= {shift for shift, v in by_shift.items() if abs(v - value) < 1e-12}
    assert seen == {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}


def test_generator_makes_undo_reproducible():
    def draws(seed: int) -> list[float]:
        layer = _tips(channels=2, undo_max_shift=3, generator=torch.Generator().manual_seed(seed))
        layer.train()(torch.ones(1, 2, 8, 8, dtype=torch.float64).cumsum(-1))
        return [layer.undo_loss().item() for _ in range(6)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_regularisers_are_recorded_in_training_only(device):
    model = nn.Sequential(TIPS(channels=2), TIPS(channels=2)).to(device)
    x = torch.randn(1, 2, 8, 8, device=device)
    model.eval()(x)
    losses = tips_losses(model)
    assert float(losses["fm"]) == 0.0 and float(losses["undo"]) == 0.0
    assert losses["fm"].device == x.device
    model.train()(x)
    assert all(layer.has_regularizers for layer in model)
    assert tips_losses(model)["fm"].item() > 0
    assert float(tips_losses(model, undo=False)["undo"]) == 0.0
    model.eval()
    assert not any(layer.has_regularizers for layer in model)
    with pytest.raises(RuntimeError, match=r"shiftpool\.tips: no regularisers recorded"):
        model[0].fm_loss()


@pytest.mark.parametrize("fm_weight", [0.0, 2.5])
def test_objective_weighs_fm_and_keeps_it_in_the_log(fm_weight):
    layer = _tips(channels=3, generator=torch.Generator().manual_seed(5))
    model = nn.Sequential(layer).train()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    model(x)
    ce = torch.tensor(1.7, dtype=torch.float64)
    fm = (1 - _reference(layer, x)[2].norm(dim=-1)).mean()
    objective = TipsObjective(alpha=0.35, undo_start_epoch=3, fm_weight=fm_weight)
    torch.testing.assert_close(objective(ce, model, epoch=0), fm_weight * fm + 0.65 * ce)
    torch.testing.assert_close(objective.last_terms["fm"], fm)


@pytest.mark.parametrize("weight", [-0.5, float("inf"), float("nan")])
def test_objective_rejects_fm_weight_that_is_negative_or_not_finite(weight):
    with pytest.raises(ValueError, match=r"shiftpool\.tips: fm_weight must be"):
        TipsObjective(fm_weight=weight)


def test_no_tips_layers_gives_zeros():
    losses = tips_losses(nn.Linear(2, 2))
    assert set(losses) == {"fm", "undo"}
    assert all(v.shape == () and float(v) == 0.0 for v in losses.values())


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_objective_rejects_alpha_outside_unit_interval(alpha):
    with pytest.raises(ValueError, match=r"shiftpool\.tips: alpha must be in \[0, 1\]"):
        TipsObjective(alpha=alpha)


@pytest.mark.parametrize("alpha", [float("nan"), True, "0.3"])
def test_objective_rejects_alpha_that_is_not_a_finite_number(alpha):
    with pytest.raises(ValueError, match=r"shiftpool\.tips: alpha must be a finite number"):
        TipsObjective(alpha=alpha)


@pytest.mark.parametrize("epoch", [-1, 1.0, True])
def test_objective_rejects_undo_start_epoch_that_is_not_an_integer_from_0(epoch):
    message = r"shiftpool\.tips: undo_start_epoch must be an integer >= 0, got "
    with pytest.raises(ValueError, match=message):
        TipsObjective(undo_start_epoch=epoch)


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (5, 2)])
@pytest.mark.parametrize("pairing", ["natural", "reference"])
@pytest.mark.parametrize("terms", ["out", "out+fm+undo", "undo", "fm+undo"])
def test_training_function_equals_the_plain_operations(stride, size, pairing, terms,
                                                       monkeypatch):
    """The eager training path (one autograd function for the layer, one for ``L_undo``) has
    the values and gradients of the plain operations that compile/export trace, for any mix
    of the output and the two regularisers."""
    from shiftpool.downsample import tips as tips_module

    x0 = torch.randn(2, 3, *size, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    grad_out = None
    results = []
    for plain in (False, True):
        if plain:
            monkeypatch.setattr(tips_module, "is_traced", lambda: True)
        layer = _tips(channels=3, stride=stride, pairing=pairing, pad_at="start",
                      generator=torch.Generator().manual_seed(7)).train()
        x = x0.clone().requires_grad_()
        out = layer(x)
        grad_out = torch.randn_like(out) if grad_out is None else grad_out
        loss = (out * grad_out).sum() if "out" in terms else 0.0
        if "fm" in terms:
            loss = loss + 3.0 * layer.fm_loss()
        if "undo" in terms:
            loss = loss + 5.0 * layer.undo_loss()
        inputs = (x, layer.weight, layer.scale)
        results.append((out, torch.autograd.grad(loss, inputs, allow_unused=True)))
    (out, grads), (expected, expected_grads) = results
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, expected_grads, strict=True):
        if want is None:
            assert got is None or not got.any()
        else:
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_training_function_under_bf16_autocast_is_close_to_the_plain_operations(monkeypatch):
    from shiftpool.downsample import tips as tips_module

    x0 = torch.randn(4, 8, 12, 12).bfloat16().contiguous(memory_format=torch.channels_last)
    results = []
    for plain in (False, True):
        if plain:
            monkeypatch.setattr(tips_module, "is_traced", lambda: True)
        torch.manual_seed(0)
        layer = TIPS(channels=8, generator=torch.Generator().manual_seed(1)).train()
        x = x0.clone().requires_grad_()
        with torch.autocast("cpu", torch.bfloat16):
            out = layer(x)
        loss = out.float().square().mean() + layer.fm_loss() + layer.undo_loss()
        grads = torch.autograd.grad(loss, (x, layer.weight, layer.scale))
        assert out.dtype == torch.bfloat16 and grads[0].dtype == torch.bfloat16
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert grads[1].dtype == torch.float32 and grads[2].dtype == torch.float32
        results.append((out, loss, grads))
    (out, loss, grads), (expected, expected_loss, expected_grads) = results
    torch.testing.assert_close(out.float(), expected.float(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-2, atol=1e-3)
    for got, want in zip(grads, expected_grads, strict=True):
        scale = float(want.float().abs().max())
        torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=0.02 * scale)


def _undo_gradients(plain: bool, monkeypatch, calls: int, retain: bool = False):
    """Gradients of ``out + sum of `calls` L_undo draws`` (the eager token route, or the plain
    operations), and with ``retain`` those of a second backward through the same graph."""
    from shiftpool.downsample import tips as tips_module

    if plain:
        monkeypatch.setattr(tips_module, "is_traced", lambda: True)
    layer = _tips(channels=3, undo_max_shift=2,
                  generator=torch.Generator().manual_seed(4)).train()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x.requires_grad_()
    out = layer(x)
    loss = out.square().mean()
    for i in range(calls):
        loss = loss + (i + 2.0) * layer.undo_loss()
    inputs = (x, layer.weight, layer.scale)
    first = torch.autograd.grad(loss, inputs, retain_graph=retain)
    second = torch.autograd.grad(loss, inputs) if retain else None
    monkeypatch.undo()
    return first, second


@pytest.mark.parametrize("calls", [1, 3])
def test_undo_gradient_through_the_layer_equals_the_plain_operations(calls, monkeypatch):
    # several draws of one forward each add their own term; a retained graph gives the same
    # gradients twice (each backward hands its terms over afresh)
    got, again = _undo_gradients(False, monkeypatch, calls, retain=True)
    want, _ = _undo_gradients(True, monkeypatch, calls)
    for g, a, w in zip(got, again, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(a, w, rtol=1e-10, atol=1e-12)


def test_an_undo_loss_left_out_of_the_loss_adds_no_gradient():
    layer = _tips(channels=3, generator=torch.Generator().manual_seed(4)).train()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    unused = layer.undo_loss()  # computed (e.g. for a log), not part of the loss
    grads = torch.autograd.grad(out.square().mean(), (x, layer.weight))
    layer2 = _tips(channels=3).train()
    layer2.load_state_dict(layer.state_dict())
    want = torch.autograd.grad(layer2(x).square().mean(), (x, layer2.weight))
    assert unused.requires_grad
    for g, w in zip(grads, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("amp", [False, True])
def test_input_gradient_comes_back_in_the_input_layout(layout, amp, input_gradient):
    # the layer works in channels_last inside; a contiguous network must get a contiguous
    # gradient
    layer = _tips(channels=4, generator=torch.Generator().manual_seed(0)).float().train()
    x = torch.randn(2, 4, 8, 6).contiguous(memory_format=layout)
    outputs = []

    def backward(t: torch.Tensor) -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=amp):
            outputs.append(layer(t))
        (outputs[0].float().square().mean() + layer.undo_loss()).backward()

    assert input_gradient(x, backward).is_contiguous(memory_format=layout)
    assert outputs[0].is_contiguous(memory_format=layout)
