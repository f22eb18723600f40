"""The robustness metrics inside ``evaluate``: options, results, JSON, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from shiftpool.core.errors import InputError
from shiftpool.metrics import evaluate
from shiftpool.metrics.adversarial import Attack
from shiftpool.metrics.protocols import METRICS, check_metrics

NORM = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 4))


def _data(n: int = 12) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(n, 3, 8, 8, generator=g) - 0.5) / 0.25
    return [(x[: n // 2], torch.randint(0, 4, (n // 2,), generator=g)),
            (x[n // 2:], torch.randint(0, 4, (n - n // 2,), generator=g))]


def test_adversarial_in_evaluate_matches_clean_accuracy_and_serialises() -> None:
    net = _net()
    r = evaluate(net, _data(), metrics=["accuracy", "adversarial"], protocol="aps",
                 progress=False, normalization=NORM, eps="2/255,8/255",
                 attack=Attack(steps=3))
    curve = r.robustness.adversarial
    assert curve.eps == (0.0, 2 / 255, 8 / 255) and curve.unit == "pixel"
    assert curve.accuracy[0].value == r.accuracy.value  # ε = 0 is the clean accuracy
    values = [a.value for a in curve.accuracy]
    assert values == sorted(values, reverse=True)
    assert r.metrics == ("accuracy", "adversarial")
    d = json.loads(json.dumps(r.to_dict()))
    assert d["robustness"]["adversarial"]["attack"]["steps"] == 3
    assert d["summary"]["rob_acc@8/255"] == values[-1]
    assert net.training  # the mode the caller had


def test_input_units_without_normalisation_and_pixel_needs_it() -> None:
    r = evaluate(_net(), _data(), metrics="adversarial", progress=False, eps=[0.1],
                 attack=Attack("fgsm"))
    assert r.robustness.adversarial.unit == "input"
    with pytest.raises(InputError, match="normalization"):
        evaluate(_net(), _data(), metrics="adversarial", progress=False, eps_unit="pixel")


def test_robustness_metrics_are_named_not_in_all() -> None:
    assert check_metrics("all") == METRICS
    assert check_metrics(["adversarial", "corruption", "flip_rate"])
    with pytest.raises(InputError, match="adversarial"):
        check_metrics(["nosuch"])


@pytest.mark.parametrize("eps", ["-1/255", "nan", "a"])
def test_bad_eps(eps: str) -> None:
    with pytest.raises(InputError, match="ε"):
        evaluate(_net(), _data(), metrics="adversarial", progress=False, eps=eps)
