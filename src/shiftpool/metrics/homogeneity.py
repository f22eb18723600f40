"""Local homogeneity of images and feature maps — our reading of Mouton et al.

Our reading: for a window of ``k × k`` pixels (default: the stride of the layer that follows,
2 for a data set) slid at stride 1 over each channel of an image or feature map (only windows
fully inside the map), with ``spread = max − min`` of a window and ``range = max − min`` of the
whole channel map:

- ``fraction``: the fraction of windows with ``spread <= eps · range``;
- ``score``: ``1 − mean(spread / range)``.

A channel whose map is constant counts as fully homogeneous (both 1). Values are averaged over
channels to one value per image; a data set's value is the mean over images with a t interval.
If every ``s × s`` window is constant, subsampling at any phase gives the same result — the
mechanism by which stride can be shift invariant. Expected order on real data:
MNIST > Fashion-MNIST > CIFAR-10.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shiftpool.core.errors import InputError
from shiftpool.downsample.geometry import pair
from shiftpool.metrics.layers import layer_stride, sampled_map
from shiftpool.metrics.probe import LayerProbe
from shiftpool.metrics.stats import Estimate, MeanMeter

DEFAULT_WINDOW = 2
DEFAULT_EPS = 0.05
QUANTITIES = ("fraction", "score")


@dataclass(frozen=True)
class Homogeneity:
    """Local homogeneity of a set of images: both measures with their intervals."""

    fraction: Estimate
    score: Estimate
    window: tuple[int, int]
    eps: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction.to_dict(),
            "score": self.score.to_dict(),
            "window": list(self.window),
            "eps": self.eps,
        }


def local_homogeneity(
    x: Tensor, window: int | tuple[int, int] = DEFAULT_WINDOW, eps: float = DEFAULT_EPS
) -> tuple[Tensor, Tensor]:
    """Per-image local homogeneity ``(fraction, score)`` (see the module docstring).

    Args:
        x: ``(N, C, H, W)`` images or feature maps, any real dtype.
        window: ``k`` or ``(kh, kw)``, at most the map size.
        eps: tolerance relative to each channel's range, ``>= 0``.

    Returns:
        Two ``(N,)`` float32 tensors in ``[0, 1]``.

    Example:
        >>> fraction, score = local_homogeneity(torch.ones(1, 1, 4, 4))
        >>> fraction.item(), score.item()
        (1.0, 1.0)
    """
    kh, kw = pair(window, "window", "metrics.homogeneity")
    if eps < 0:
        raise InputError(f"shiftpool.metrics.homogeneity: eps must be >= 0, got {eps}")
    if x.dim() != 4 or x.numel() == 0:
        raise InputError(
            f"shiftpool.metrics.homogeneity: expected non-empty (N, C, H, W), got {tuple(x.shape)}"
        )
    if kh > x.shape[-2] or kw > x.shape[-1]:
        raise InputError(
            f"shiftpool.metrics.homogeneity: window {(kh, kw)} is larger than the map "
            f"{tuple(x.shape[-2:])}"
        )
    x = x if x.dtype == torch.float64 else x.float()
    spread = F.max_pool2d(x, (kh, kw), stride=1) + F.max_pool2d(-x, (kh, kw), stride=1)
    value_range = (x.amax((-2, -1)) - x.amin((-2, -1)))[..., None, None]
    fraction = (spread <= eps * value_range).float().mean((1, 2, 3))
    relative = torch.where(value_range > 0, spread / value_range.clamp_min(1e-30), 0.0)
    return fraction, (1 - relative.mean((1, 2, 3))).float()


def dataset_homogeneity(
    batches: Iterable[Any],
    window: int | tuple[int, int] = DEFAULT_WINDOW,
    eps: float = DEFAULT_EPS,
    confidence: float = 0.95,
) -> Homogeneity:
    """Local homogeneity of a data set.

    Args:
        batches: iterable of image tensors ``(N, C, H, W)`` or of ``(images, labels)`` pairs.

    Example:
        >>> h = dataset_homogeneity([torch.zeros(3, 1, 8, 8)])
        >>> h.fraction.value
        1.0
    """
    meters = {q: MeanMeter() for q in QUANTITIES}
    for batch in batches:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        if images.numel() == 0:
            continue
        for q, values in zip(QUANTITIES, local_homogeneity(images, window, eps), strict=True):
            meters[q].update(values)
    if meters["fraction"].n == 0:
        raise InputError("shiftpool.metrics.homogeneity: the data set is empty")
    fraction, score = (meters[q].estimate(confidence) for q in QUANTITIES)
    return Homogeneity(fraction, score, pair(window, "window", "metrics.homogeneity"), eps)


def homogeneity_probe(
    model: nn.Module, eps: float = DEFAULT_EPS, window: int | tuple[int, int] | None = None
) -> LayerProbe:
    """A probe measuring the homogeneity of the map each downsampling layer samples from.

    The window defaults to each layer's stride. A map smaller than the window is skipped (the
    layer is listed in ``probe.skipped``).
    """

    def measure(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor):
        k = layer_stride(module) if window is None else pair(window, "window", "homogeneity")
        sampled = sampled_map(module, inputs)
        if k[0] > sampled.shape[-2] or k[1] > sampled.shape[-1]:
            return None
        return dict(zip(QUANTITIES, local_homogeneity(sampled, k, eps), strict=True))

    return LayerProbe(model, measure)
