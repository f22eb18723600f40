"""Maximum-sampling bias (MSB) of downsampling layers — our reading of the TIPS paper's metric.

Our reading: for a downsampling layer of stride ``(sh, sw)`` applied to real feature maps, MSB is
the fraction of its outputs that equal, within a relative tolerance, the maximum of the
``sh × sw`` block of the *sampled map* that the output position covers: output ``(oi, oj)``
covers rows ``[oi·sh, oi·sh + sh)`` and columns ``[oj·sw, oj·sw + sw)`` (blocks cut short at
the bottom and right border hold only the pixels that exist).

- Pools and shiftpool operators: the sampled map is the layer's input. A max pool with kernel
  equal to its stride has MSB 1; average pooling is below 1 unless the blocks are constant;
  a fixed-phase subsample picks the block maximum about ``1 / (sh·sw)`` of the time on maps
  without ties. An overlapping max pool (kernel > stride) can exceed its block's maximum and so
  score below 1.
- Strided ``Conv2d``: a strided convolution is the stride-1 convolution followed by keeping
  the pixel at phase ``(0, 0)`` of each block; the sampled map is that dense stride-1 output
  (computed again in the hook), and MSB measures how often the kept pixel is its block's maximum.

A value is per image (fraction over channels and positions); a layer's MSB is the mean over
images with a t interval; the model's MSB is the per-image mean over layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shiftpool.core.errors import InputError
from shiftpool.downsample.geometry import pad_to_multiple
from shiftpool.metrics.layers import layer_stride, sampled_map
from shiftpool.metrics.probe import LayerProbe

DEFAULT_RTOL = 1e-3


def block_max(x: Tensor, stride: tuple[int, int]) -> Tensor:
    """Maximum of each ``sh × sw`` block of ``x``, blocks starting at multiples of the stride.

    Args:
        x: ``(N, C, H, W)``.

    Returns:
        ``(N, C, ceil(H / sh), ceil(W / sw))`` in float32 (float64 kept).

    Example:
        >>> block_max(torch.arange(9.).view(1, 1, 3, 3), (2, 2))[0, 0]
        tensor([[4., 5.],
                [7., 8.]])
    """
    x = x if x.dtype == torch.float64 else x.float()
    return F.max_pool2d(pad_to_multiple(x, stride, "zero", value=float("-inf")), stride, stride)


def msb_per_image(
    sampled: Tensor, output: Tensor, stride: tuple[int, int], rtol: float = DEFAULT_RTOL
) -> Tensor:
    """Fraction of each image's outputs equal to the maximum of the block they cover.

    Args:
        sampled: the layer's sampled map ``(N, C, H, W)`` (see the module docstring).
        output: the layer's output ``(N, C, Ho, Wo)``; positions beyond
            ``ceil(H / sh) × ceil(W / sw)`` (from a pool's own padding) are ignored.
        stride: ``(sh, sw)``.
        rtol: ``|output − max| <= rtol · |max|`` counts as equal.

    Returns:
        ``(N,)`` float32 in ``[0, 1]``; a NaN output never counts as equal.

    Example:
        >>> x = torch.randn(2, 3, 8, 8)
        >>> msb_per_image(x, F.max_pool2d(x, 2), (2, 2))
        tensor([1., 1.])
    """
    if sampled.shape[:2] != output.shape[:2]:
        raise InputError(
            "shiftpool.metrics.msb: the layer's output and its sampled map differ in batch or "
            f"channels: {tuple(output.shape)} vs {tuple(sampled.shape)}"
        )
    maxima = block_max(sampled, stride)
    h = min(maxima.shape[-2], output.shape[-2])
    w = min(maxima.shape[-1], output.shape[-1])
    maxima = maxima[..., :h, :w]
    out = output[..., :h, :w].to(maxima.dtype)
    hits = (out - maxima).abs() <= rtol * maxima.abs()
    return hits.flatten(1).float().mean(1)


def msb_probe(model: nn.Module, rtol: float = DEFAULT_RTOL) -> LayerProbe:
    """A :class:`~shiftpool.metrics.probe.LayerProbe` measuring MSB (quantity ``"msb"``).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2))
        >>> probe = msb_probe(net)
        >>> with probe, probe.recording():
        ...     _ = net(torch.randn(2, 3, 8, 8))
        >>> probe.estimates()["1"]["msb"].value
        1.0
    """

    def measure(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> dict[str, Tensor]:
        sampled = sampled_map(module, inputs)
        return {"msb": msb_per_image(sampled, output, layer_stride(module), rtol)}

    return LayerProbe(model, measure)
