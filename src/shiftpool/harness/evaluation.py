"""Evaluation of trained models under one invariance protocol (``shiftpool.metrics``).

Every evaluation here runs in float32: the model's floating-point weights in float32 and
autocast off, whatever context the caller holds. Training's end-of-epoch test accuracy is
measured the same way, so a checkpoint has one test accuracy.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shiftpool.train import inputs
from shiftpool.train.checkpoint import load_trained_model
from shiftpool.train.config import TrainConfig
from shiftpool.train.runtime import Runtime, resolve_device

# What ``compare`` measures unless told otherwise: the TIPS paper's columns, MSB and the
# accuracy-vs-diagonal-shift curve (one forward pass per diagonal shift and mode).
COMPARE_METRICS: tuple[str, ...] = ("accuracy", "consistency", "fidelity", "msb", "diagonal")

#: The one precision of every evaluation in the harness.
EVAL_DTYPE = torch.float32


def evaluate_model(
    model: nn.Module,
    config: TrainConfig,
    *,
    metrics: str | list[str] | tuple[str, ...] | None = None,
    protocol: str | None = None,
    max_images: int | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    per_image: bool = False,
    **overrides: Any,
) -> Any:
    """Run :func:`shiftpool.metrics.evaluate` on the test split of ``config.dataset``.

    ``metrics`` may be ``"all"``. Arguments left as ``None`` come from ``config``
    (``eval_metrics``, ``eval_protocol``, ``eval_max_images``, ``device``, ``progress``), and
    the metrics then from the protocol; offsets are seeded with ``config.seed``, so every method
    of a comparison sees the same shifts of the same images (``per_image=True`` keeps each
    image's outcome, see :class:`shiftpool.metrics.PerImage`). The protocol alone decides the
    shifts, fill included: the same name gives the same numbers as
    ``shiftpool.metrics.evaluate`` on the same batches (the test set's mean and std are passed
    on for ``fill="black"``).

    Precision: float32. The model is moved to the device and its floating-point weights to
    float32 (a trained model's already are), and autocast is switched off for the evaluation
    even inside a caller's ``torch.autocast`` block. The model runs in eval mode and gets its
    train/eval modes back afterwards.

    Returns:
        A :class:`shiftpool.metrics.EvaluationResult`.

    Example:
        >>> import shiftpool
        >>> config = TrainConfig(model="simple_cnn", dataset="mnist5k", eval_max_images=100)
        >>> net = shiftpool.create_model("simple_cnn", in_channels=1)
        >>> evaluate_model(net, config, progress=False).n  # doctest: +SKIP
        100
    """
    import shiftpool.metrics as smetrics

    target = resolve_device(config.device) if device is None else torch.device(device)
    model = model.to(target, EVAL_DTYPE)
    limit = config.eval_max_images if max_images is None else max_images
    test_set = inputs.subset(inputs.load_split(config, "test"), limit, config.seed)
    loader = inputs.eval_loader(test_set, config, Runtime(target), sharded=False)
    chosen = metrics if metrics is not None else config.eval_metrics
    with _without_autocast(target):
        return smetrics.evaluate(
            model,
            loader,
            metrics=None if not chosen else chosen if isinstance(chosen, str) else tuple(chosen),
            protocol=protocol or config.eval_protocol,
            device=target,
            seed=config.seed,
            progress=config.progress if progress is None else progress,
            per_image=per_image,
            normalization=(test_set.mean, test_set.std),
            **overrides,
        )


def _without_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``device``'s type (and on CPU, where inputs start)."""
    stack = contextlib.ExitStack()
    for kind in dict.fromkeys(("cpu", device.type)):
        if kind in ("cpu", "cuda"):
            stack.enter_context(torch.autocast(device_type=kind, enabled=False))
    return stack


def evaluate_checkpoint(
    path: str | Path, *, data_dir: str | None = None, **kwargs: Any
) -> tuple[Any, TrainConfig]:
    """Load the model of checkpoint ``path`` and evaluate it (see :func:`evaluate_model`).

    Returns:
        ``(EvaluationResult, the run's TrainConfig)``.
    """
    model, config, _ = load_trained_model(path)
    if data_dir is not None:
        config = config.replace(data_dir=data_dir)
    return evaluate_model(model, config, **kwargs), config
