"""The common corruptions of Hendrycks & Dietterich (ImageNet-C), in torch (numpy for the two
sequential ones), for any image size, at severities 1–5; and the corruption error (CE, mCE).

Each corruption follows the formula and the per-severity constants of the reference code as the
``imagecorruptions`` package (Michaelis et al. 2019, ImageNet-C constants for any image size)
has it; the reference itself is not used (it needs OpenCV and scikit-image, and calls
functions newer scikit-image removed). Differences, all documented per function:

* ``frost`` blends in a **procedural** frost texture (:func:`frost_texture`: seeded ice needles
  with side branches over a fractal haze, bluish white), not the six photographs of frost the
  reference ships (whose licence is not stated; shiftpool ships no images). The blend and its
  constants per severity are the reference's; the texture's statistics are not the
  photographs', so frost numbers are comparable between methods evaluated here, not with
  published frost or mCE values (an mCE over the 15 includes this substitute).
* ``motion_blur`` and ``snow`` use the reference's own numpy motion blur (a one-sided Gaussian
  of shifted copies with edge replication), not ImageMagick's (ImageNet-C's original).
* ``jpeg_compression`` is a baseline JPEG round trip in torch (BT.601 YCbCr, 4:2:0 chroma by
  2×2 means, 8×8 DCT-II, the standard tables scaled by the IJG quality formula, rounding); it
  matches Pillow's encoder up to its chroma filtering and rounding (tested: mean absolute
  difference below 2/255).
* ``pixelate`` resizes with area means down and nearest up (Pillow's BOX filter both ways:
  identical when the factor divides the size).
* Random draws come from a ``torch.Generator`` (numpy's for glass blur and fog, seeded from it),
  not numpy's global state: the same seed gives the same corrupted images on every run.

Inputs and outputs are pixel images ``(N, C, H, W)`` in ``[0, 1]`` (``C`` = 1 or 3; colour
operations — brightness, snow — treat one channel as grey). :func:`corrupt` is the entry point.

Example:
    >>> x = torch.rand(2, 3, 16, 16)
    >>> y = corrupt(x, "gaussian_noise", 3, torch.Generator().manual_seed(0))
    >>> y.shape, bool(y.min() >= 0 and y.max() <= 1)
    (torch.Size([2, 3, 16, 16]), True)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from shiftpool.core.errors import InputError, MissingExtraError, MissingFileError
from shiftpool.metrics.stats import Estimate

__all__ = [
    "CORRUPTIONS",
    "CORRUPTION_GROUPS",
    "FROST_BLEND",
    "PRECORRUPTED",
    "SEVERITIES",
    "SKIPPED",
    "CorruptionErrors",
    "check_corruptions",
    "corrupt",
    "corruption_errors",
    "frost_texture",
    "load_precorrupted",
]

_OP = "shiftpool.metrics.corruptions"
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
#: Corruptions of ImageNet-C shiftpool does not generate, with the reason (none: frost is
#: generated from a procedural texture, see :func:`frost_texture`).
SKIPPED: dict[str, str] = {}


def _generator(generator: torch.Generator | None) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(0)


def _numpy_rng(generator: torch.Generator) -> np.random.Generator:
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> Tensor:
    radius = max(1, int(truncate * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _separable(x: Tensor, k: Tensor, mode: str) -> Tensor:
    """Correlate every channel of ``x`` (N, C, H, W) with ``k`` along both axes."""
    r = (k.numel() - 1) // 2
    n, c, h, w = x.shape
    k = k.to(x)
    y = x.reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def _gaussian_blur(x: Tensor, sigma: float, mode: str = "replicate") -> Tensor:
    """scikit-image's ``gaussian(x, sigma)`` (truncate 4, ``mode="nearest"``: replicate)."""
    return _separable(x, _gaussian_kernel(sigma), mode)


def _grey(x: Tensor) -> Tensor:
    """OpenCV's RGB→grey (BT.601 luma), ``(N, 1, H, W)``; a grey image as it is."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor((0.299, 0.587, 0.114), dtype=x.dtype, device=x.device)
    return (x * w.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


# -- noise ---------------------------------------------------------------------------------------


def gaussian_noise(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """``clip(x + N(0, c²))``, ``c = .08, .12, .18, .26, .38``."""
    c = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1]
    noise = torch.randn(x.shape, generator=g, dtype=torch.float32).to(x)
    return (x + c * noise).clamp(0, 1)


def shot_noise(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """``clip(Poisson(x·c) / c)``, ``c = 60, 25, 12, 5, 3``."""
    c = (60, 25, 12, 5, 3)[severity - 1]
    rates = (x.detach().cpu().float() * c).clamp_min(0)
    return (torch.poisson(rates, generator=g) / c).to(x).clamp(0, 1)


def impulse_noise(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Salt and pepper (scikit-image's ``random_noise(mode="s&p")``): a fraction ``amount``
    ``= .03, .06, .09, .17, .27`` of the values (each channel of each pixel on its own) set to
    0 or 1 with equal odds."""
    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    hit = torch.rand(x.shape, generator=g) < amount
    salt = torch.rand(x.shape, generator=g) < 0.5
    out = torch.where(hit, salt.float(), x.detach().cpu().float())
    return out.to(x)


# -- blur ----------------------------------------------------------------------------------------


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The reference's defocus kernel: a disk of ``radius`` on a grid of at least 17×17,
    normalised, then blurred by a 3×3 Gaussian of σ ``alias_blur`` (OpenCV's ``GaussianBlur``,
    border reflect-101)."""
    half = 8 if radius <= 8 else int(radius)
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    disk = ((xx**2 + yy**2) <= radius**2).double()
    disk = disk / disk.sum()
    k = torch.exp(-0.5 * (torch.arange(-1, 2, dtype=torch.float64) / alias_blur) ** 2)
    k = k / k.sum()
    return _separable(disk.view(1, 1, *disk.shape), k, "reflect")[0, 0]


def _trim_kernel(k: Tensor, rtol: float = 1e-12) -> Tensor:
    """A square, centred ``k`` with entries below ``rtol`` × its largest set to zero and the
    all-zero border cropped. The same correlation to ``rtol``, but far cheaper: the 17×17
    defocus kernel of severity 1 (a disk of radius 3, σ = 0.1 blur) has diagonal entries near
    1e-45, float32 denormals that made its convolution ~8x slower than severity 2's (measured
    by :mod:`shiftpool.benchmarks.robustness`), and beyond them only its central 7×7 (the
    disk) is non-zero.

    Example:
        >>> _trim_kernel(disk_kernel(3, 0.1)).shape, _trim_kernel(disk_kernel(4, 0.5)).shape
        (torch.Size([7, 7]), torch.Size([11, 11]))
    """
    k = torch.where(k.abs() < rtol * k.abs().max(), torch.zeros_like(k), k)
    half = (k.shape[0] - 1) // 2
    rows, cols = torch.nonzero(k, as_tuple=True)
    keep = int(max((rows - half).abs().max(), (cols - half).abs().max()))
    return k[half - keep:half + keep + 1, half - keep:half + keep + 1]


def defocus_blur(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Correlation with :func:`disk_kernel` (border reflect-101; its zero border cropped and
    entries below 1e-12 of its peak dropped, :func:`_trim_kernel`), ``(radius, alias) =
    (3, .1), (4, .5), (6, .5), (8, .5), (10, .5)``."""
    radius, alias = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))[severity - 1]
    k = _trim_kernel(disk_kernel(radius, alias)).to(x)
    r = (k.shape[0] - 1) // 2
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    mode = "reflect" if min(h, w) > r else "replicate"
    y = F.conv2d(F.pad(y, (r, r, r, r), mode=mode), k.view(1, 1, *k.shape))
    return y.reshape(n, c, h, w).clamp(0, 1)


def glass_blur(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Gaussian blur σ, then ``iterations`` sweeps of local pixel swaps (from the bottom right,
    each pixel with one at an offset drawn in ``[-d, d)`` per axis), then the blur again;
    ``(σ, d, iterations) = (.7, 1, 2), (.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)``.
    The swaps are sequential (numpy), vectorised over the batch."""
    sigma, d, iterations = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2),
                            (1.5, 4, 2))[severity - 1]
    rng = _numpy_rng(g)
    y = _gaussian_blur(x, sigma).detach().cpu().numpy().transpose(0, 2, 3, 1).copy()
    n, h, w, _ = y.shape
    images = np.arange(n)
    for _ in range(iterations):
        for row in range(h - d, d, -1):
            for col in range(w - d, d, -1):
                dy, dx = rng.integers(-d, d, size=(2, n))
                r2, c2 = row + dy, col + dx
                here = y[images, row, col].copy()
                y[images, row, col] = y[images, r2, c2]
                y[images, r2, c2] = here
    out = torch.from_numpy(y.transpose(0, 3, 1, 2).copy()).to(x)
    return _gaussian_blur(out, sigma).clamp(0, 1)


def motion_kernel(radius: int, sigma: float) -> Tensor:
    """The reference's one-sided Gaussian weights ``exp(-i²/2σ²)``, ``i = 0 .. 2·radius``,
    normalised."""
    i = torch.arange(2 * radius + 1, dtype=torch.float64)
    k = torch.exp(-(i**2) / (2 * sigma**2))
    return k / k.sum()


def _shift_replicate(x: Tensor, dy: int, dx: int) -> Tensor:
    """``x`` moved by ``(dy, dx)`` pixels, the vacated border filled by the edge values."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)), mode="replicate")
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top:top + h, left:left + w]


def _motion_blur(x: Tensor, radius: int, sigma: float, angle: float) -> Tensor:
    """The reference's motion blur: the sum of copies shifted along ``angle`` (degrees),
    weighted by :func:`motion_kernel`; taps beyond the image stop the sum (as there)."""
    width = 2 * radius + 1
    k = motion_kernel(radius, sigma)
    py, px = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    hyp = math.hypot(py, px)
    out = torch.zeros_like(x)
    for i in range(width):
        dy = -math.ceil(i * py / hyp - 0.5)
        dx = -math.ceil(i * px / hyp - 0.5)
        if abs(dy) >= x.shape[-2] or abs(dx) >= x.shape[-1]:
            break
        out = out + float(k[i]) * _shift_replicate(x, dy, dx)
    return out


def _motion_blur_batch(x: Tensor, radius: int, sigma: float, angles: Tensor) -> Tensor:
    """:func:`_motion_blur` of each image of ``x`` at its own angle (``angles``, degrees, one
    per image), all images at once: each tap gathers every image's shifted copy in one
    indexing (edge replicated), and an image's sum stops at its first tap beyond the image
    (as there). The same sums in the same order as image by image."""
    n, _, h, w = x.shape
    width = 2 * radius + 1
    k = motion_kernel(radius, sigma)
    radians = angles.double() * (math.pi / 180)
    sin, cos = torch.sin(radians), torch.cos(radians)
    # as _motion_blur: the tap offsets along (py, px) = width·(sin, cos), over their length
    py, px = width * sin, width * cos
    hyp = torch.hypot(py, px)
    channels = x.shape[1]
    rows, cols = torch.arange(h).view(1, h), torch.arange(w).view(1, w)
    flat = x.reshape(n, channels, h * w)
    out = torch.zeros_like(flat)
    active = torch.ones(n, dtype=torch.bool)
    for i in range(width):
        dy = -torch.ceil(i * py / hyp - 0.5).long()
        dx = -torch.ceil(i * px / hyp - 0.5).long()
        active &= (dy.abs() < h) & (dx.abs() < w)
        if not bool(active.any()):
            break
        r = (rows - dy.view(n, 1)).clamp(0, h - 1).view(n, h, 1)
        c = (cols - dx.view(n, 1)).clamp(0, w - 1).view(n, 1, w)
        index = (r * w + c).view(n, 1, h * w).expand(n, channels, h * w)
        weight = (float(k[i]) * active.to(x.dtype)).view(n, 1, 1)
        out = out + weight * torch.gather(flat, 2, index)
    return out.view(n, channels, h, w)


def motion_blur(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """:func:`_motion_blur` at an angle uniform in ``[-45°, 45°)`` per image, ``(radius, σ) =
    (10, 3), (15, 5), (15, 8), (15, 12), (20, 15)``."""
    radius, sigma = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))[severity - 1]
    angles = torch.rand(x.shape[0], generator=g) * 90 - 45
    return _motion_blur_batch(x, radius, sigma, angles).clamp(0, 1)


def clipped_zoom(x: Tensor, factor: float) -> Tensor:
    """The centre ``ceil(H / factor)`` × ``ceil(W / factor)`` crop, zoomed by ``factor`` with
    linear interpolation (scipy's ``zoom(order=1)``: corners aligned, size rounded), then the
    centre ``H × W`` of the result."""
    h, w = x.shape[-2:]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top:top + ch, left:left + cw]
    size = (round(ch * factor), round(cw * factor))
    z = F.interpolate(crop, size=size, mode="bilinear", align_corners=True)
    tt, tl = (z.shape[-2] - h) // 2, (z.shape[-1] - w) // 2
    return z[..., tt:tt + h, tl:tl + w]


def zoom_blur(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """The mean of ``x`` and its :func:`clipped_zoom` by each factor of ``1 .. 1.11`` step
    ``.01``, ``1 .. 1.16`` / ``.01``, ``1 .. 1.21`` / ``.02``, ``1 .. 1.26`` / ``.02``,
    ``1 .. 1.31`` / ``.03``."""
    stop, step = ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))[
        severity - 1]
    factors = np.arange(1, stop, step)
    out = torch.zeros_like(x)
    for f in factors:
        out = out + clipped_zoom(x, float(f))
    return ((x + out) / (len(factors) + 1)).clamp(0, 1)


# -- weather -------------------------------------------------------------------------------------


def plasma_fractal(size: int, decay: float, rng: np.random.Generator,
                   count: int | None = None) -> np.ndarray:
    """The reference's diamond-square fractal, ``(size, size)`` in ``[0, 1]`` (``size`` a power
    of two), roughness falling by ``decay`` per level; with ``count``, ``count`` independent
    fractals ``(count, size, size)`` drawn at once (each normalised on its own).

    Example:
        >>> plasma_fractal(8, 2.0, np.random.default_rng(0), count=3).shape
        (3, 8, 8)
    """
    m = np.zeros((1 if count is None else count, size, size), dtype=np.float64)
    step, wibble = size, 100.0

    def wibbled(a: np.ndarray) -> np.ndarray:
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        half = step // 2
        corners = m[:, 0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=1)
        square = square + np.roll(square, -1, axis=2)
        m[:, half:size:step, half:size:step] = wibbled(square)
        dr = m[:, half:size:step, half:size:step]
        ul = m[:, 0:size:step, 0:size:step]
        m[:, 0:size:step, half:size:step] = wibbled(dr + np.roll(dr, 1, axis=1) + ul
                                                    + np.roll(ul, -1, axis=2))
        m[:, half:size:step, 0:size:step] = wibbled(dr + np.roll(dr, 1, axis=2) + ul
                                                    + np.roll(ul, -1, axis=1))
        step //= 2
        wibble /= decay
    m -= m.min(axis=(1, 2), keepdims=True)
    m /= m.max(axis=(1, 2), keepdims=True)
    return m[0] if count is None else m


def fog(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """``clip((x + a·plasma) · max / (max + a))`` with ``max`` the image's largest value and a
    :func:`plasma_fractal` per image (drawn for the batch at once), ``(a, decay) = (1.5, 2),
    (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)``."""
    a, decay = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))[severity - 1]
    rng = _numpy_rng(g)
    h, w = x.shape[-2:]
    size = 1 << max(1, math.ceil(math.log2(max(h, w))))
    maps = plasma_fractal(size, decay, rng, count=x.shape[0])[:, :h, :w]
    plasma = torch.from_numpy(maps).to(x).unsqueeze(1)
    top = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x + a * plasma) * top / (top + a)).clamp(0, 1)


def snow(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """The reference's snow: a layer ``N(μ, σ²)`` per pixel, zoomed (:func:`clipped_zoom`),
    zeroed below a threshold, motion-blurred at an angle in ``[-135°, -45°)``, quantised to
    1/255; the image lightened ``b·x + (1 − b)·max(x, 1.5·grey + .5)``; then
    ``clip(x + layer + layer rotated 180°)``."""
    mu, sd, zoom, thr, radius, sigma, b = (
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    )[severity - 1]
    n, _, h, w = x.shape
    layer = torch.randn((n, 1, h, w), generator=g).to(x) * sd + mu
    layer = clipped_zoom(layer, zoom)
    layer = torch.where(layer < thr, torch.zeros_like(layer), layer).clamp(0, 1)
    angles = torch.rand(n, generator=g) * 90 - 135
    layer = _motion_blur_batch(layer, radius, sigma, angles)
    layer = torch.round(layer * 255) / 255
    x = b * x + (1 - b) * torch.maximum(x, _grey(x) * 1.5 + 0.5)
    return (x + layer + layer.flip(-1, -2)).clamp(0, 1)


#: frost's blend ``(image weight, texture weight)`` per severity (the reference's constants).
FROST_BLEND: tuple[tuple[float, float], ...] = ((1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7),
                                                (0.6, 0.75))
#: The tint of the frost texture (R, G, B): bluish white, like ice.
FROST_TINT: tuple[float, float, float] = (0.82, 0.90, 1.0)


def frost_texture(n: int, h: int, w: int, g: torch.Generator | None = None) -> Tensor:
    """``n`` procedural frost textures ``(n, 3, h, w)`` float32 in ``[0, 1]``, seeded by ``g``
    (the same generator state gives the same textures; no image file, nothing to license).

    Each texture: ice needles (about ``0.9 · min(h, w)`` per image, centres uniform, angles
    uniform, lengths uniform in 8–25% of ``min(h, w)``, brightness fading along the needle),
    each with two half-length side branches at ±60° from a point along it, drawn with bilinear
    splatting and saturated by ``1 − exp(−2·density)``; over a fractal haze
    (:func:`plasma_fractal`, decay 1.8) weighted 0.45; blurred by a Gaussian of σ 0.6 px;
    tinted by :data:`FROST_TINT`. A substitute for the reference's photographs (see the
    module docs).

    Example:
        >>> t = frost_texture(2, 16, 16, torch.Generator().manual_seed(0))
        >>> t.shape, bool(t.min() >= 0 and t.max() <= 1)
        (torch.Size([2, 3, 16, 16]), True)
    """
    rng = _numpy_rng(_generator(g))
    size = min(h, w)
    count = max(4, round(0.9 * size))
    lengths = rng.uniform(0.08, 0.25, (n, count)) * size + 1.0
    angles = rng.uniform(0.0, math.pi, (n, count))
    centres = rng.uniform(0.0, 1.0, (n, count, 2)) * np.array([h - 1, w - 1])
    strength = rng.uniform(0.5, 1.0, (n, count))
    fork = rng.uniform(0.2, 0.8, (n, count))  # where along the needle the branches start
    samples = math.ceil(2 * lengths.max()) + 1
    t = np.linspace(0.0, 1.0, samples)
    # segments: the needle, and two branches at ±60° of half its length from the fork
    starts, directions, spans = [], [], []
    unit = np.stack((np.sin(angles), np.cos(angles)), axis=-1)
    begin = centres - 0.5 * lengths[..., None] * unit
    starts.append(begin)
    directions.append(unit)
    spans.append(lengths)
    for turn in (math.pi / 3, -math.pi / 3):
        branch = np.stack((np.sin(angles + turn), np.cos(angles + turn)), axis=-1)
        starts.append(begin + (fork * lengths)[..., None] * unit)
        directions.append(branch)
        spans.append(0.5 * lengths)
    density = np.zeros(n * h * w)
    image = np.arange(n).reshape(n, 1, 1)
    for start, direction, span in zip(starts, directions, spans, strict=True):
        points = (start[:, :, None, :] + (span[..., None] * t)[..., None]
                  * direction[:, :, None, :])  # (n, count, samples, 2)
        weight = np.broadcast_to((strength[..., None] * (1.0 - 0.7 * t)) / 2.0,
                                 points.shape[:3])  # two samples per pixel of length
        y0, x0 = np.floor(points[..., 0]), np.floor(points[..., 1])
        fy, fx = points[..., 0] - y0, points[..., 1] - x0
        for dy, dx, share in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                              (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            yy, xx = (y0 + dy).astype(np.int64), (x0 + dx).astype(np.int64)
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            index = ((image * h + yy) * w + xx)[inside]
            density += np.bincount(index, weights=(weight * share)[inside], minlength=n * h * w)
    crystals = 1.0 - np.exp(-2.0 * density.reshape(n, 1, h, w))
    side = 1 << max(1, math.ceil(math.log2(max(h, w))))
    haze = plasma_fractal(side, 1.8, rng, count=n)[:, None, :h, :w]
    texture = torch.from_numpy(np.clip(crystals + 0.45 * haze, 0.0, 1.0))
    texture = _gaussian_blur(texture, 0.6).clamp(0, 1)
    tint = torch.tensor(FROST_TINT, dtype=texture.dtype).view(1, 3, 1, 1)
    return (texture * tint).float()


def frost(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """``clip(a·x + b·frost)`` with a :func:`frost_texture` per image (grey images: its mean
    over the colour channels) and ``(a, b) = (1, .4), (.8, .6), (.7, .7), (.65, .7),
    (.6, .75)`` (:data:`FROST_BLEND`): the texture's weight relative to the image's grows with
    severity."""
    a, b = FROST_BLEND[severity - 1]
    n, c, h, w = x.shape
    texture = frost_texture(n, h, w, g).to(x)
    if c == 1:
        texture = texture.mean(dim=1, keepdim=True)
    return (a * x + b * texture).clamp(0, 1)


def brightness(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """HSV value ``v + c`` clipped to 1 (hue and saturation kept), ``c = .1 .. .5``; in RGB:
    ``x · v'/v`` (grey ``v'`` where ``v = 0``), exactly what the round trip through HSV does."""
    c = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    v = x.amax(dim=1, keepdim=True)
    v2 = (v + c).clamp(0, 1)
    return torch.where(v > 0, x * v2 / v.clamp_min(1e-12), v2.expand_as(x)).clamp(0, 1)


# -- digital -------------------------------------------------------------------------------------


def contrast(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """``clip((x − m)·c + m)`` with ``m`` the mean of each channel, ``c = .4, .3, .2, .1, .05``."""
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    m = x.mean(dim=(2, 3), keepdim=True)
    return ((x - m) * c + m).clamp(0, 1)


def elastic_transform(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """``imagecorruptions``' elastic transform: displacement fields of uniform noise in
    ``±H/200``, blurred by a Gaussian of σ = 1% of the size (truncate 3, reflect), times
    ``α = 250 · (.05, .065, .085, .1, .12)``; bilinear resampling with reflection."""
    alpha = 250 * (0.05, 0.065, 0.085, 0.1, 0.12)[severity - 1]
    n, _, h, w = x.shape
    bound = h * 0.005
    noise = (torch.rand((n, 2, h, w), generator=g, dtype=torch.float64) * 2 - 1) * bound
    sy, sx = max(h * 0.01, 1e-3), max(w * 0.01, 1e-3)
    noise = _separable_axes(noise, _gaussian_kernel(sy, 3.0), _gaussian_kernel(sx, 3.0))
    d = (noise * alpha).to(x)
    yy, xx = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                            torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
    gy = (yy + d[:, 0]) / max(h - 1, 1) * 2 - 1
    gx = (xx + d[:, 1]) / max(w - 1, 1) * 2 - 1
    grid = torch.stack((gx, gy), dim=-1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    return out.clamp(0, 1)


def _separable_axes(x: Tensor, ky: Tensor, kx: Tensor) -> Tensor:
    n, c, h, w = x.shape
    ry, rx = (ky.numel() - 1) // 2, (kx.numel() - 1) // 2
    y = x.reshape(n * c, 1, h, w)
    my = "reflect" if h > ry else "replicate"
    mx = "reflect" if w > rx else "replicate"
    y = F.conv2d(F.pad(y, (rx, rx, 0, 0), mode=mx), kx.to(y).view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, ry, ry), mode=my), ky.to(y).view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def pixelate(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """Down to ``c`` of the size (``int(W·c) × int(H·c)``, area means), back up by nearest
    (Pillow's BOX both ways), ``c = .6, .5, .4, .3, .25``."""
    c = (0.6, 0.5, 0.4, 0.3, 0.25)[severity - 1]
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, int(h * c)), max(1, int(w * c))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57,
         69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64,
         81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_CHROMA = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99,
           99, 99, 99, 47, 66, *([99] * 38))


def _quant_table(base: Sequence[int], quality: int) -> Tensor:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    q = [min(255, max(1, (b * scale + 50) // 100)) for b in base]
    return torch.tensor(q, dtype=torch.float64).view(8, 8)


def _dct_matrix() -> Tensor:
    k = torch.arange(8, dtype=torch.float64)
    m = torch.cos((2 * k.view(1, 8) + 1) * k.view(8, 1) * math.pi / 16) / 2
    m[0] = m[0] / math.sqrt(2)
    return m


def _jpeg_plane(p: Tensor, table: Tensor) -> Tensor:
    """One plane ``(N, H, W)`` (values 0..255, H and W multiples of 8) through DCT,
    quantisation, rounding and back."""
    n, h, w = p.shape
    d = _dct_matrix()
    blocks = (p - 128).reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    coef = d @ blocks @ d.T
    coef = torch.round(coef / table) * table
    back = d.T @ coef @ d + 128
    return back.permute(0, 1, 3, 2, 4).reshape(n, h, w)


def jpeg_compression(x: Tensor, severity: int, g: torch.Generator) -> Tensor:
    """A baseline JPEG round trip at quality ``25, 18, 15, 10, 7`` (see the module docs)."""
    quality = (25, 18, 15, 10, 7)[severity - 1]
    c, h, w = x.shape[1:]
    v = torch.round(x.detach().double().cpu().clamp(0, 1) * 255)
    ph, pw = -h % 16, -w % 16
    v = F.pad(v, (0, pw, 0, ph), mode="replicate")
    luma, chroma = _quant_table(_LUMA, quality), _quant_table(_CHROMA, quality)
    if c == 1:
        out = _jpeg_plane(v[:, 0], luma).unsqueeze(1)
    else:
        r, gg, b = v[:, 0], v[:, 1], v[:, 2]
        y = 0.299 * r + 0.587 * gg + 0.114 * b
        cb = -0.168736 * r - 0.331264 * gg + 0.5 * b + 128
        cr = 0.5 * r - 0.418688 * gg - 0.081312 * b + 128
        y = _jpeg_plane(y, luma)
        sub = F.avg_pool2d(torch.stack((cb, cr), dim=1), 2)
        hh, ww = sub.shape[-2:]
        sub = F.pad(sub, (0, -ww % 8, 0, -hh % 8), mode="replicate")
        cb = _jpeg_plane(sub[:, 0], chroma)[:, :hh, :ww]
        cr = _jpeg_plane(sub[:, 1], chroma)[:, :hh, :ww]
        cb, cr = (F.interpolate(t.unsqueeze(1), scale_factor=2, mode="nearest")[:, 0] - 128
                  for t in (cb, cr))
        out = torch.stack((y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb),
                          dim=1)
    out = torch.round(out.clamp(0, 255))[..., :h, :w] / 255
    return out.to(x)


_FUNCTIONS: dict[str, Callable[[Tensor, int, torch.Generator], Tensor]] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}
#: The corruptions shiftpool generates (ImageNet-C's 15, frost from a procedural texture), in
#: ImageNet-C's order.
CORRUPTIONS: tuple[str, ...] = tuple(_FUNCTIONS)
#: ImageNet-C's groups.
CORRUPTION_GROUPS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}


def check_corruptions(names: str | Sequence[str] | None) -> tuple[str, ...]:
    """Corruption names (``None`` or ``"all"``: every one; a group name: its members;
    comma-separated text allowed); an unknown name is one clear error.

    Example:
        >>> check_corruptions("noise,contrast")
        ('gaussian_noise', 'shot_noise', 'impulse_noise', 'contrast')
    """
    if names is None or names == "all":
        return CORRUPTIONS
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out: list[str] = []
    for name in names:
        if name in CORRUPTION_GROUPS:
            out.extend(CORRUPTION_GROUPS[name])
        elif name in _FUNCTIONS:
            out.append(name)
        elif name in SKIPPED:
            raise InputError(f"{_OP}: {name!r} is not generated: {SKIPPED[name]}")
        else:
            raise InputError(
                f"{_OP}: unknown corruption {name!r}; allowed: {', '.join(CORRUPTIONS)}, the "
                f"groups {', '.join(CORRUPTION_GROUPS)} or 'all'"
            )
    if not out:
        raise InputError(f"{_OP}: no corruption named")
    return tuple(dict.fromkeys(out))


def check_severities(severities: int | Sequence[int] | None) -> tuple[int, ...]:
    """Severities in 1..5 (``None``: all five).

    Example:
        >>> check_severities([3, 1])
        (1, 3)
    """
    if severities is None:
        return SEVERITIES
    values = [severities] if isinstance(severities, int) else list(severities)
    bad = [s for s in values if isinstance(s, bool) or s not in SEVERITIES]
    if bad or not values:
        raise InputError(f"{_OP}: severity must be one of 1, 2, 3, 4, 5; got {bad or 'none'}")
    return tuple(sorted(set(values)))


def corrupt(
    images: Tensor, name: str, severity: int, generator: torch.Generator | None = None
) -> Tensor:
    """``images`` ``(N, C, H, W)``, pixels in ``[0, 1]``, corrupted by ``name`` at ``severity``
    (1–5); same shape and dtype, in ``[0, 1]``.

    Example:
        >>> corrupt(torch.full((1, 3, 8, 8), 0.5), "contrast", 5)[0, 0, 0, 0].item()
        0.5
    """
    (name,) = check_corruptions([name])
    (severity,) = check_severities(severity)
    if images.dim() != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
        raise InputError(
            f"{_OP}: images must be float (N, 1 or 3, H, W) pixels in [0, 1], got "
            f"{tuple(images.shape)} {images.dtype}"
        )
    with torch.no_grad():
        return _FUNCTIONS[name](images, severity, _generator(generator))


# -- corruption error ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CorruptionErrors:
    """CE per corruption and mCE (Hendrycks & Dietterich 2019; SPEC §7), relative to a baseline.

    ``ce[c] = Σ_s E_{s,c}(f) / Σ_s E_{s,c}(base)``; ``relative_ce[c] = Σ_s (E_{s,c}(f) −
    E_clean(f)) / Σ_s (E_{s,c}(base) − E_clean(base))``; ``mce``, ``relative_mce``: their
    means over the corruptions both have. Errors are top-1 error rates in ``[0, 1]``.
    """

    ce: dict[str, float]
    relative_ce: dict[str, float]
    mce: float
    relative_mce: float

    def to_dict(self) -> dict[str, object]:
        return {"ce": dict(self.ce), "relative_ce": dict(self.relative_ce), "mce": self.mce,
                "relative_mce": self.relative_mce}


def corruption_errors(
    errors: Mapping[str, Sequence[float]], baseline: Mapping[str, Sequence[float]],
    clean_error: float | None = None, baseline_clean_error: float | None = None,
) -> CorruptionErrors:
    """CE and mCE of a model against a baseline from their errors per corruption and severity.

    Args:
        errors, baseline: ``{corruption: [E_1, ..., E_5]}`` top-1 errors (or accuracies as
            ``1 − E``); the baseline's (e.g. max pooling's) for the same corruptions.
        clean_error, baseline_clean_error: clean errors, for the relative CE (``nan`` without).

    Example:
        >>> e = corruption_errors({"fog": [0.2, 0.4]}, {"fog": [0.3, 0.5]}, 0.1, 0.1)
        >>> round(e.mce, 4), round(e.relative_ce["fog"], 4)
        (0.75, 0.6667)
    """
    common = [c for c in errors if c in baseline]
    if not common:
        raise InputError(f"{_OP}: the model and the baseline share no corruption")
    ce, rel = {}, {}
    for c in common:
        mine, base = [float(v) for v in errors[c]], [float(v) for v in baseline[c]]
        if len(mine) != len(base):
            raise InputError(f"{_OP}: {c}: {len(mine)} severities against {len(base)}")
        ce[c] = sum(mine) / sum(base) if sum(base) > 0 else math.nan
        if clean_error is None or baseline_clean_error is None:
            rel[c] = math.nan
        else:
            denominator = sum(b - baseline_clean_error for b in base)
            rel[c] = (sum(m - clean_error for m in mine) / denominator if denominator
                      else math.nan)
    return CorruptionErrors(ce, rel, float(np.mean(list(ce.values()))),
                            float(np.mean(list(rel.values()))))


def accuracy_table(hits: Mapping[str, Sequence[int]], n: int,
                   confidence: float = 0.95) -> dict[str, list[Estimate]]:
    """``{corruption: [Wilson estimate per severity]}`` from correct counts over ``n`` images."""
    from shiftpool.metrics.stats import wilson_interval

    return {c: [wilson_interval(int(k), n, confidence) for k in v] for c, v in hits.items()}


# -- the official pre-corrupted sets ---------------------------------------------------------------

#: The official pre-corrupted test sets (Hendrycks & Dietterich), by data set name: the folder
#: under the data root and its layout.
PRECORRUPTED: dict[str, str] = {
    "cifar10": "CIFAR-10-C",
    "cifar100": "CIFAR-100-C",
    "tinyimagenet": "Tiny-ImageNet-C",
}


def load_precorrupted(
    root: str | os.PathLike[str], dataset: str, corruption: str, severity: int
) -> tuple[Tensor, Tensor]:
    """One corruption and severity of an official pre-corrupted test set in the data root.

    Layouts (as published): ``CIFAR-10-C/`` and ``CIFAR-100-C/`` hold ``<corruption>.npy``
    (``(50000, 32, 32, 3)`` uint8, severities 1–5 in blocks of 10000) and ``labels.npy``;
    ``Tiny-ImageNet-C/<corruption>/<severity>/<wnid>/*.JPEG`` (classes in sorted wnid order,
    needs Pillow). Any corruption present as a file is accepted (frost and the four extra ones
    included). No checksum is verified: the files are published as tar archives whose md5 covers
    the archive, not the extracted files.

    Returns:
        ``(images (N, C, H, W) uint8, labels (N,) int64)``.

    Example:
        >>> load_precorrupted("/nonexistent", "cifar10", "fog", 1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.MissingFileError: shiftpool.metrics.corruptions: ...CIFAR-10-C...
    """
    if dataset not in PRECORRUPTED:
        raise InputError(
            f"{_OP}: no official pre-corrupted set for {dataset!r}; known: "
            f"{', '.join(PRECORRUPTED)}"
        )
    (severity,) = check_severities(severity)
    folder = Path(root) / PRECORRUPTED[dataset]
    if dataset == "tinyimagenet":
        return _load_tiny_c(folder, corruption, severity)
    images_file, labels_file = folder / f"{corruption}.npy", folder / "labels.npy"
    missing = [str(f) for f in (images_file, labels_file) if not f.is_file()]
    if missing:
        present = sorted(f.stem for f in folder.glob("*.npy") if f.stem != "labels")
        raise MissingFileError(
            f"{_OP}: {', '.join(missing)} not found; download {PRECORRUPTED[dataset]} "
            f"(zenodo.org, Hendrycks & Dietterich) and extract it under {root}"
            + (f" (corruptions present: {', '.join(present)})" if present else "")
        )
    images = np.load(images_file, mmap_mode="r")
    labels = np.load(labels_file, mmap_mode="r")
    block = images.shape[0] // 5
    rows = slice((severity - 1) * block, severity * block)
    x = torch.from_numpy(np.array(images[rows])).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(np.array(labels[rows], dtype=np.int64))


def _load_tiny_c(folder: Path, corruption: str, severity: int) -> tuple[Tensor, Tensor]:
    where = folder / corruption / str(severity)
    if not where.is_dir():
        raise MissingFileError(
            f"{_OP}: {where} not found; download Tiny-ImageNet-C (zenodo.org, Hendrycks & "
            f"Dietterich) and extract it under {folder.parent}"
        )
    try:
        from PIL import Image
    except ImportError as error:
        raise MissingExtraError(
            f"{_OP}: Tiny-ImageNet-C is stored as JPEG files; install Pillow "
            "(pip install 'shiftpool[vision]')"
        ) from error
    classes = sorted(d.name for d in where.iterdir() if d.is_dir())
    images, labels = [], []
    for index, wnid in enumerate(classes):
        for file in sorted((where / wnid).iterdir()):
            with Image.open(file) as im:
                images.append(np.asarray(im.convert("RGB")))
            labels.append(index)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels, dtype=torch.int64)
