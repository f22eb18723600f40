"""Exact properties of the attacks (SPEC §7): FGSM = PGD-1, budgets and ranges, monotone curves,
PGD <= FGSM per image, the closed form of FGSM for a linear model, EOT, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shiftpool.core.errors import InputError
from shiftpool.metrics.adversarial import (
    Attack,
    RobustMeter,
    Space,
    attack,
    fgsm,
    parse_eps,
    pgd,
    robust_accuracy,
)

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.5, 0.2)
NORM = (MEAN, STD)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(6 * 4 * 4, 5)).eval()


def _data(n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(n, 3, 8, 8, generator=g)
    m, s = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return (pixels - m) / s, torch.randint(0, 5, (n,), generator=g)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("unit", ["pixel", "input"])
def test_pgd_one_step_equals_fgsm_exactly(norm: str, unit: str) -> None:
    net, (x, y) = _net(), _data()
    space = Space.pixels(NORM) if unit == "pixel" else Space.inputs(NORM)
    eps = 4 / 255 if norm == "linf" else 0.5
    a = fgsm(net, x, y, eps, norm, space)
    b = pgd(net, x, y, eps, Attack(norm=norm, steps=1, step_size=1.0, random_start=False), space)
    assert torch.equal(a, b)


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_budget_and_valid_range_in_pixel_units(method: str, norm: str) -> None:
    net, (x, y) = _net(), _data()
    eps = 8 / 255 if norm == "linf" else 0.3
    settings = Attack(method, norm, steps=4, restarts=2)
    adv = attack(net, x, y, eps, settings, Space.pixels(NORM))
    std = torch.tensor(STD).view(1, 3, 1, 1)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    delta_pixels = (adv - x) * std  # ε/std per channel in input space
    if norm == "linf":
        assert delta_pixels.abs().max() <= eps * (1 + 1e-5)
        assert delta_pixels.abs().max() > eps / 2  # the budget is used
    else:
        assert (delta_pixels.flatten(1).norm(dim=1) <= eps * (1 + 1e-5)).all()
    pixels = adv * std + mean
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6


def test_input_units_budget() -> None:
    net, (x, y) = _net(), _data()
    adv = attack(net, x, y, 0.1, Attack(steps=3), Space.inputs(NORM))
    assert (adv - x).abs().max() <= 0.1 + 1e-6


def test_pgd_at_most_fgsm_per_image_and_curve_non_increasing() -> None:
    net, (x, y) = _net(), _data(64)
    y = net(x).argmax(1)  # all clean-correct: the attacks have something to flip
    grid = (0.0, 1 / 255, 4 / 255, 16 / 255, 64 / 255)
    f = RobustMeter(grid, Attack("fgsm"), Space.pixels(NORM))
    p = RobustMeter(grid, Attack("pgd", steps=5, step_size=1.0, random_start=False),
                    Space.pixels(NORM))
    rf, rp = f.update(net, x, y), p.update(net, x, y)
    assert (rp <= rf).all()  # PGD's first step is FGSM; later steps stay in the ball
    for meter in (f, p):
        values = [a.value for a in meter.curve().accuracy]
        assert values == sorted(values, reverse=True) and values[0] == 1.0
    assert p.curve().accuracy[-1].value < 1.0


def test_fgsm_linear_two_class_closed_form() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    w = net[1].weight.detach()
    x = torch.full((3, 3, 2, 2), 0.5)
    y = torch.tensor([0, 1, 0])
    eps = 0.01  # x ± ε stays inside [0, 1]: no clamp
    adv = fgsm(net, x, y, eps)
    # ∇ CE = (1 − p_y)(w_ŷ − w_y), ŷ the other class: the step is ε·sign(w_ŷ − w_y),
    # i.e. −ε·sign(w_y − w_ŷ) (the loss rises: the step moves away from class y).
    expected = eps * torch.sign(w[1 - y] - w[y]).view(3, 3, 2, 2)
    assert torch.allclose(adv - x, expected, atol=1e-7)


def test_default_is_deterministic_and_eot_of_deterministic_model_equals_it() -> None:
    net, (x, y) = _net(), _data(4)
    a = fgsm(net, x, y, 0.05, space=Space.pixels(NORM))
    b = fgsm(net, x, y, 0.05, space=Space.pixels(NORM))
    assert torch.equal(a, b)  # eval mode, no EOT: deterministic
    c = fgsm(net, x, y, 0.05, space=Space.pixels(NORM), eot=3)
    assert torch.equal(a, c)  # no stochastic layers: EOT's mean of equal gradients


def test_eot_switches_shiftpool_downsamplers_to_training() -> None:
    from shiftpool.downsample import create_downsample

    pool = create_downsample("lps", channels=6, stride=2)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), pool, nn.Flatten(), nn.Linear(96, 5))
    net.eval()
    x, y = _data(4)
    seen = []
    pool.register_forward_hook(lambda m, i, o: seen.append(m.training))
    fgsm(net, x, y, 0.05, space=Space.pixels(NORM), eot=2)
    assert seen == [True, True] and not pool.training
    seen.clear()
    fgsm(net, x, y, 0.05, space=Space.pixels(NORM))
    assert seen == [False]


def test_robust_accuracy_restores_mode_and_counts() -> None:
    net, (x, y) = _net(), _data(8)
    net.train()
    curve = robust_accuracy(net, [(x, y)], "0,8/255", Attack(steps=2), Space.pixels(NORM))
    assert net.training and [a.n for a in curve.accuracy] == [8, 8]
    assert curve.accuracy[0].method == "wilson"
    assert list(curve.summary()) == ["rob_acc@0", "rob_acc@8/255"]


@pytest.mark.parametrize(
    "bad",
    [lambda: Attack("cw"), lambda: Attack(norm="l1"), lambda: Attack(steps=0),
     lambda: Attack(restarts=0), lambda: Attack(step_size=float("nan")),
     lambda: parse_eps("-1/255"), lambda: parse_eps("nan"), lambda: parse_eps("x"),
     lambda: Space.pixels(((0.5,), (0.0,)))],
)
def test_bad_input(bad) -> None:
    with pytest.raises(InputError) as info:
        bad()
    assert "\n" not in str(info.value)
