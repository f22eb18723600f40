"""The robustness figures draw from results and their JSON, and refuse results without data."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from shiftpool.core.errors import InputError
from shiftpool.metrics import evaluate
from shiftpool.metrics.adversarial import Attack

pytest.importorskip("matplotlib")

from shiftpool.report.robustness import (
    mce_table,
    plot_accuracy_vs_eps,
    plot_corruption_heatmap,
    plot_mce,
)


def _result(seed: int):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    data = [(torch.rand(6, 3, 8, 8), torch.randint(0, 3, (6,)))]
    return evaluate(net, data, metrics=["adversarial", "corruption"], progress=False,
                    eps="4/255", attack=Attack("fgsm"), corruptions="contrast,fog")


def test_figures_from_results_and_json(tmp_path) -> None:
    results = {"a": _result(0), "b": json.loads(json.dumps(_result(1).to_dict()))}
    eps = plot_accuracy_vs_eps(results, tmp_path / "eps.png")
    heat = plot_corruption_heatmap(results, tmp_path / "heat.svg")
    assert eps.stat().st_size > 1000 and heat.read_text().startswith("<?xml")


def test_figures_need_the_metric(tmp_path) -> None:
    data = [(torch.rand(2, 3, 4, 4), torch.tensor([0, 1]))]
    r = evaluate(nn.Sequential(nn.Flatten(), nn.Linear(48, 2)), data, metrics="accuracy",
                 protocol="aps", progress=False, max_shift=1)
    with pytest.raises(InputError, match="adversarial"):
        plot_accuracy_vs_eps(r, tmp_path / "x.png")
    with pytest.raises(InputError, match="corruption"):
        plot_corruption_heatmap(r, tmp_path / "x.png")


def test_mce_table_and_bars(tmp_path) -> None:
    results = {"max": _result(0), "blur": _result(1)}
    table = mce_table(results, "max")
    assert table["max"]["mce"] == 1.0
    assert plot_mce(results, tmp_path / "mce.png").stat().st_size > 1000
    with pytest.raises(InputError, match="baseline 'tips'"):
        mce_table(results, "tips")
