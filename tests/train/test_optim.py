"""Optimiser parameter groups, learning-rate schedules and the LPS temperature schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from shiftpool.train.config import TrainConfig
from shiftpool.train.optim import (
    WarmupCosine,
    build_optimizer,
    build_scheduler,
    lps_temperature,
    parameter_groups,
)


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def test_no_decay_on_biases_and_norm_weights() -> None:
    decayed, undecayed = parameter_groups(_net(), 0.1)
    assert [p.ndim for p in decayed["params"]] == [4, 2]
    assert all(p.ndim == 1 for p in undecayed["params"])
    assert (decayed["weight_decay"], undecayed["weight_decay"]) == (0.1, 0.0)
    everything, rest = parameter_groups(_net(), 0.1, decay_all=True)
    assert len(everything["params"]) == 6 and not rest["params"]


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_build_optimizer_kind(name: str) -> None:
    optimizer = build_optimizer(_net(), TrainConfig(optimizer=name, lr=0.2))
    kind = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}[name]
    assert isinstance(optimizer, kind)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2)


def test_warmup_cosine_values() -> None:
    f = WarmupCosine(total_steps=110, warmup_steps=10)
    assert [f(0), f(5), f(10)] == [0.0, 0.5, 1.0]
    assert f(60) == pytest.approx(0.5)
    assert f(110) == pytest.approx(0.0, abs=1e-12)


def _lrs(config: TrainConfig, steps_per_epoch: int) -> list[float]:
    optimizer = build_optimizer(_net(), config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    lrs = []
    for _ in range(config.epochs * steps_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_onecycle_peaks_at_lr_after_pct_start() -> None:
    lrs = _lrs(TrainConfig(epochs=4, lr=0.4, pct_start=0.25, schedule="onecycle"), 25)
    peak = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[peak] == pytest.approx(0.4)
    assert peak == 25  # after 25% of 100 steps
    assert lrs[0] == pytest.approx(0.4 / 25)
    assert lrs[:26] == sorted(lrs[:26]) and lrs[25:] == sorted(lrs[25:], reverse=True)
    assert lrs[-1] < 1e-3


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_onecycle_handles_very_short_runs(steps: int) -> None:
    lrs = _lrs(TrainConfig(epochs=1, lr=0.1, schedule="onecycle"), steps)
    assert len(lrs) == steps and all(0 < lr <= 0.1 for lr in lrs)


def test_cosine_schedule_warms_up_then_decays() -> None:
    lrs = _lrs(TrainConfig(epochs=2, lr=0.1, schedule="cosine", warmup_epochs=0.5), 10)
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.1)
    assert lrs[5:] == sorted(lrs[5:], reverse=True)


def test_lps_temperature_is_geometric() -> None:
    config = TrainConfig(epochs=5, lps_tau_start=1.0, lps_tau_end=0.0625)
    taus = [lps_temperature(config, e) for e in range(5)]
    assert taus == pytest.approx([1.0, 0.5, 0.25, 0.125, 0.0625])
    assert math.isclose(lps_temperature(TrainConfig(epochs=1, lps_tau_start=2.0), 0), 2.0)


def test_a_schedule_placed_at_a_step_continues_where_a_full_one_is() -> None:
    config = TrainConfig(epochs=3, lr=0.4, schedule="onecycle")
    expected = _lrs(config, 10)
    optimizer = build_optimizer(_net(), config)
    build_scheduler(optimizer, config, 10)  # as the checkpoint's optimizer: initial_lr set
    scheduler = build_scheduler(optimizer, config, 10, start_step=17)
    lrs = []
    for _ in range(13):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == expected[17:]
