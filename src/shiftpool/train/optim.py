"""Optimisers and learning-rate schedules of the training loop (stepped once per batch)."""

from __future__ import annotations

import math

import torch
from torch import nn

from shiftpool.train.config import TrainConfig


def parameter_groups(model: nn.Module, weight_decay: float, decay_all: bool = False) -> list[dict]:
    """Split trainable parameters into a decayed group and an undecayed one.

    Weights of convolutions and linear layers (``ndim >= 2``) are decayed; biases and
    normalisation scales (``ndim <= 1``) are not, unless ``decay_all``.

    Example:
        >>> groups = parameter_groups(nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2)), 5e-4)
        >>> [len(g["params"]) for g in groups]
        [1, 3]
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decayed = [p for p in params if decay_all or p.ndim >= 2]
    decayed_ids = {id(p) for p in decayed}
    undecayed = [p for p in params if id(p) not in decayed_ids]
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": undecayed, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW, as ``config.optimizer`` says."""
    groups = parameter_groups(model, config.weight_decay, config.decay_norm_and_bias)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
        )
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.momentum, 0.999))


def _cosine(start: float, end: float, progress: float) -> float:
    """Half a cosine from ``start`` (progress 0) to ``end`` (progress 1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


class WarmupCosine:
    """Learning-rate factor: linear warm-up from 0, then a cosine from 1 down to 0.

    A small class (not a closure) so that ``LambdaLR.state_dict`` records its settings.

    Example:
        >>> f = WarmupCosine(total_steps=100, warmup_steps=10)
        >>> round(f(5), 2), f(10), round(f(100), 6)
        (0.5, 1.0, 0.0)
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0) -> None:
        self.total_steps = max(1, total_steps)
        self.warmup_steps = max(0, min(warmup_steps, self.total_steps - 1))

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return step / self.warmup_steps
        span = self.total_steps - self.warmup_steps
        return _cosine(1.0, 0.0, (step - self.warmup_steps) / span)


class OneCycle:
    """Learning-rate factor of the one-cycle policy: a cosine rise from ``1/div`` to 1 over the
    first ``pct_start`` of the steps, then a cosine fall to ``1/(div * final_div)``.

    Well defined for any number of steps (at least one step rises).

    Example:
        >>> f = OneCycle(total_steps=100, pct_start=0.25)
        >>> round(f(0), 6), f(25), round(f(100), 6)
        (0.04, 1.0, 4e-06)
    """

    def __init__(self, total_steps: int, pct_start: float = 0.25, div: float = 25.0,
                 final_div: float = 1e4) -> None:
        self.total_steps = max(1, total_steps)
        self.rise_steps = max(1, round(pct_start * self.total_steps))
        self.start, self.end = 1.0 / div, 1.0 / (div * final_div)

    def __call__(self, step: int) -> float:
        if step < self.rise_steps:
            return _cosine(self.start, 1.0, step / self.rise_steps)
        fall = max(1, self.total_steps - self.rise_steps)
        return _cosine(1.0, self.end, (step - self.rise_steps) / fall)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int,
    start_step: int = 0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-step schedule (a ``LambdaLR`` whose peak is ``config.lr``): one-cycle,
    warm-up + cosine, or constant.

    ``start_step > 0`` places a new schedule at that step (its learning rate set), for an
    optimizer restored from a checkpoint (its groups hold ``initial_lr``): how a run resumed
    with another number of steps per epoch continues.
    """
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "onecycle":
        factor = OneCycle(total, config.pct_start)
    elif config.schedule == "cosine":
        factor = WarmupCosine(total, round(config.warmup_epochs * steps_per_epoch))
    else:
        factor = _constant
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=start_step - 1)


def _constant(step: int) -> float:
    return 1.0


def lps_temperature(config: TrainConfig, epoch: int) -> float:
    """LPS Gumbel-softmax temperature at ``epoch``: geometric from start to end.

    Example:
        >>> lps_temperature(TrainConfig(epochs=3, lps_tau_start=1.0, lps_tau_end=0.25), 1)
        0.5
    """
    if config.epochs <= 1:
        return config.lps_tau_start
    fraction = min(1.0, epoch / (config.epochs - 1))
    return config.lps_tau_start * (config.lps_tau_end / config.lps_tau_start) ** fraction
