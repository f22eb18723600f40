"""The corruptions against the reference formulas (scipy, Pillow, colorsys where installed) on
sample images; ranges, seeds, severity order, CE/mCE, bad input."""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from shiftpool.core.errors import InputError
from shiftpool.metrics import corruptions as C
from shiftpool.metrics.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    check_corruptions,
    check_severities,
    corrupt,
    corruption_errors,
)


def _images(n: int = 4, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, size, size, generator=g)
    return F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), 5, 1)  # smooth, like photos


def test_all_fifteen_in_imagenet_c_order_frost_procedural() -> None:
    assert CORRUPTIONS == ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur",
                           "glass_blur", "motion_blur", "zoom_blur", "snow", "frost", "fog",
                           "brightness", "contrast", "elastic_transform", "pixelate",
                           "jpeg_compression")
    assert check_corruptions("weather") == ("snow", "frost", "fog", "brightness")
    with pytest.raises(InputError, match="unknown corruption 'rain'"):
        check_corruptions("rain")


def test_frost_texture_range_determinism_and_look() -> None:
    """The procedural texture: in [0, 1], the same for the same seed and different for
    another, bluish (blue >= red everywhere), neither flat nor saturated, with structure at
    the pixel scale (the needles)."""
    a = C.frost_texture(3, 40, 48, torch.Generator().manual_seed(7))
    b = C.frost_texture(3, 40, 48, torch.Generator().manual_seed(7))
    c = C.frost_texture(3, 40, 48, torch.Generator().manual_seed(8))
    assert a.shape == (3, 3, 40, 48) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1 and torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # one texture per image
    assert bool((a[:, 2] >= a[:, 0]).all())
    assert 0.2 < a.mean() < 0.7 and a.std() > 0.1
    grey = a.mean(dim=1)
    assert (grey[:, 1:] - grey[:, :-1]).abs().mean() > 0.02  # not a smooth haze alone


def test_frost_is_the_blend_and_severity_raises_the_textures_weight() -> None:
    x = _images(3)
    texture = C.frost_texture(3, 32, 32, torch.Generator().manual_seed(4))
    black = torch.zeros_like(x)
    previous, first = None, None
    ratios = [b / a for a, b in C.FROST_BLEND]
    assert ratios == sorted(ratios) and len(set(ratios)) == 5  # texture / image weight grows
    for s, (a, b) in zip(SEVERITIES, C.FROST_BLEND, strict=True):
        out = corrupt(x, "frost", s, torch.Generator().manual_seed(4))
        assert torch.allclose(out, (a * x + b * texture).clamp(0, 1), atol=1e-6)
        dark = corrupt(black, "frost", s, torch.Generator().manual_seed(4))
        if previous is not None:  # on black the texture's weight alone shows: never less
            assert bool((dark >= previous).all())
        previous = dark
        first = dark if first is None else first
    assert previous.mean() > first.mean()
    grey = corrupt(x[:, :1], "frost", 2, torch.Generator().manual_seed(4))
    a, b = C.FROST_BLEND[1]
    assert torch.allclose(grey, (a * x[:, :1] + b * texture.mean(1, keepdim=True)).clamp(0, 1),
                          atol=1e-6)


def test_plasma_fractals_drawn_together_are_each_normalised() -> None:
    maps = C.plasma_fractal(16, 2.0, np.random.default_rng(0), count=4)
    assert maps.shape == (4, 16, 16)
    assert np.allclose(maps.min(axis=(1, 2)), 0) and np.allclose(maps.max(axis=(1, 2)), 1)
    assert not np.allclose(maps[0], maps[1])


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_shape_range_seeded_and_grey(name: str) -> None:
    x = _images(2)
    for s in SEVERITIES:
        a = corrupt(x, name, s, torch.Generator().manual_seed(5))
        b = corrupt(x, name, s, torch.Generator().manual_seed(5))
        assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(a, b)
        assert a.min() >= 0 and a.max() <= 1
    grey = corrupt(_images(2, c=1, size=20), name, 3)
    assert grey.shape == (2, 1, 20, 20)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "contrast",
                                  "brightness", "defocus_blur", "zoom_blur", "motion_blur",
                                  "elastic_transform"])
def test_distortion_grows_with_severity(name: str) -> None:
    x = _images(8)
    d = [(corrupt(x, name, s) - x).abs().mean().item() for s in SEVERITIES]
    assert d == sorted(d) and d[0] > 0


def test_gaussian_noise_is_the_formula_with_the_same_draw() -> None:
    x = _images(2)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    expected = (x + 0.18 * noise).clamp(0, 1)
    assert torch.equal(corrupt(x, "gaussian_noise", 3, torch.Generator().manual_seed(1)), expected)


def test_shot_and_impulse_noise_statistics() -> None:
    x = torch.full((1, 3, 128, 128), 0.5)
    y = corrupt(x, "shot_noise", 1)  # Poisson(0.5·60)/60 (the clip at 1 never bites)
    assert abs(y.mean().item() - 0.5) < 0.002 and abs(y.var().item() / (0.5 / 60) - 1) < 0.05
    z = corrupt(x, "impulse_noise", 5)  # 27% of values to 0 or 1, half each
    changed = (z != 0.5).float().mean().item()
    assert abs(changed - 0.27) < 0.01 and abs((z == 1).float().mean().item() - 0.135) < 0.01


def test_contrast_and_brightness_reference_formulas() -> None:
    x = _images(2, size=8).double()
    m = x.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(corrupt(x, "contrast", 2), ((x - m) * 0.3 + m).clamp(0, 1))
    y = corrupt(x, "brightness", 3).numpy()
    for i, j, k in ((0, 1, 2), (1, 7, 0), (0, 4, 4)):
        h, s, v = colorsys.rgb_to_hsv(*x[i, :, j, k].tolist())
        assert np.allclose(y[i, :, j, k], colorsys.hsv_to_rgb(h, s, min(1.0, v + 0.3)))


def test_defocus_blur_is_opencv_filter2d_reference() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    x = _images(1, size=32).double()
    k = C.disk_kernel(4, 0.5).numpy()
    # the kernel: a normalised disk blurred by a 3×3 Gaussian (reflect-101 at its border)
    t = np.arange(-8, 9)
    disk = ((t[None] ** 2 + t[:, None] ** 2) <= 16).astype(float)
    disk /= disk.sum()
    g1 = np.exp(-0.5 * (np.arange(-1, 2) / 0.5) ** 2)
    g1 /= g1.sum()
    ref_k = ndimage.correlate(disk, np.outer(g1, g1), mode="mirror")
    assert np.allclose(k, ref_k)
    expected = np.stack([ndimage.correlate(x[0, c].numpy(), ref_k, mode="mirror")
                         for c in range(3)])
    assert np.allclose(corrupt(x, "defocus_blur", 2)[0].numpy(), expected.clip(0, 1))


def test_clipped_zoom_is_scipy_zoom_order_1() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    x = _images(1, c=1, size=32).double()
    for factor in (1.06, 1.2, 1.3):
        ch = math.ceil(32 / factor)
        top = (32 - ch) // 2
        ref = ndimage.zoom(x[0, 0, top:top + ch, top:top + ch].numpy(), factor, order=1)
        trim = (ref.shape[0] - 32) // 2
        ref = ref[trim:trim + 32, trim:trim + 32]
        assert np.allclose(C.clipped_zoom(x, factor)[0, 0].numpy(), ref, atol=1e-9)


def test_pixelate_is_pillow_box_when_the_factor_divides() -> None:
    image_module = pytest.importorskip("PIL.Image")
    x = torch.round(_images(1, size=32) * 255) / 255
    pixels = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    im = image_module.fromarray(pixels)
    im = im.resize((16, 16), image_module.BOX).resize((32, 32), image_module.BOX)
    ref = torch.from_numpy(np.array(im)).permute(2, 0, 1).double() / 255
    ours = corrupt(x.double(), "pixelate", 2)[0]  # c = 0.5
    assert (ours - ref).abs().max() <= 1 / 255 + 1e-9  # Pillow: 8-bit fixed point


@pytest.mark.parametrize(("severity", "quality"), [(1, 25), (5, 7)])
def test_jpeg_close_to_pillow(severity: int, quality: int) -> None:
    image_module = pytest.importorskip("PIL.Image")
    x = torch.round(_images(4) * 255) / 255
    refs = []
    for im in x:
        buffer = io.BytesIO()
        pixels = (im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        image_module.fromarray(pixels).save(buffer, "JPEG", quality=quality)
        refs.append(torch.from_numpy(np.array(image_module.open(buffer))).permute(2, 0, 1))
    ref = torch.stack(refs).float() / 255
    ours = corrupt(x, "jpeg_compression", severity)
    gap, distortion = (ours - ref).abs().mean(), (x - ref).abs().mean()
    assert gap < 2.5 / 255 and gap < 0.3 * distortion


def test_fog_plasma_and_formula() -> None:
    rng = np.random.default_rng(0)
    p = C.plasma_fractal(32, 2.0, rng)
    assert p.shape == (32, 32) and p.min() == 0 and p.max() == 1
    x = torch.full((1, 3, 16, 16), 0.5)
    y = corrupt(x, "fog", 1)  # (0.5 + 1.5 p) · 0.5 / 2: in [0.125, 0.5]
    assert y.min() >= 0.125 - 1e-6 and y.max() <= 0.5 + 1e-6


def test_mce_and_relative_mce_formulas() -> None:
    errors = {"fog": [0.2, 0.3], "contrast": [0.5, 0.5]}
    base = {"fog": [0.4, 0.6], "contrast": [0.5, 0.5], "snow": [0.9, 0.9]}
    e = corruption_errors(errors, base, clean_error=0.1, baseline_clean_error=0.2)
    assert e.ce == {"fog": 0.5, "contrast": 1.0} and e.mce == 0.75
    assert e.relative_ce["fog"] == pytest.approx((0.1 + 0.2) / (0.2 + 0.4))
    assert e.relative_ce["contrast"] == pytest.approx(0.8 / 0.6)
    assert math.isnan(corruption_errors(errors, base).relative_mce)


@pytest.mark.parametrize(
    "bad",
    [lambda: check_corruptions("rain"), lambda: check_severities(0),
     lambda: check_severities([6]), lambda: corrupt(torch.rand(1, 2, 4, 4), "contrast", 1),
     lambda: corruption_errors({"fog": [0.1]}, {"snow": [0.2]})],
)
def test_bad_input(bad) -> None:
    with pytest.raises(InputError) as info:
        bad()
    assert "\n" not in str(info.value)


def test_load_precorrupted_cifar_layout(tmp_path) -> None:
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    images = np.arange(5 * 2 * 32 * 32 * 3, dtype=np.int64).astype(np.uint8).reshape(10, 32, 32, 3)
    np.save(folder / "fog.npy", images)
    np.save(folder / "labels.npy", np.arange(10) % 3)
    x, y = C.load_precorrupted(tmp_path, "cifar10", "fog", 3)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x, torch.from_numpy(images[4:6]).permute(0, 3, 1, 2))
    assert y.tolist() == [1, 2]
    with pytest.raises(FileNotFoundError, match="corruptions present: fog"):
        C.load_precorrupted(tmp_path, "cifar10", "snow", 1)
    with pytest.raises(InputError, match="known: cifar10"):
        C.load_precorrupted(tmp_path, "mnist", "fog", 1)


def test_load_precorrupted_tiny_imagenet_layout(tmp_path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    for wnid in ("n02", "n01"):
        where = tmp_path / "Tiny-ImageNet-C" / "fog" / "2" / wnid
        where.mkdir(parents=True)
        image_module.new("RGB", (64, 64), (10, 20, 30)).save(where / "a.JPEG")
    x, y = C.load_precorrupted(tmp_path, "tinyimagenet", "fog", 2)
    assert x.shape == (2, 3, 64, 64) and y.tolist() == [0, 1]


def test_defocus_severity_1_drops_only_negligible_kernel_entries() -> None:
    """Severity 1's kernel (σ = 0.1 blur) has entries near 1e-22 and 1e-45 (float32 denormals,
    slow): trimmed away; the blur equals the full kernel's correlation to 1e-12."""
    x = _images(2, size=24).double()
    k = C.disk_kernel(3, 0.1)
    full = F.conv2d(F.pad(x.reshape(6, 1, 24, 24), (8, 8, 8, 8), mode="reflect"),
                    k.view(1, 1, 17, 17)).reshape(2, 3, 24, 24).clamp(0, 1)
    assert torch.allclose(corrupt(x, "defocus_blur", 1), full, atol=1e-12)
    assert C._trim_kernel(k).shape == (7, 7)


@pytest.mark.parametrize(("size", "radius"), [((32, 32), 20), ((8, 12), 10), ((40, 24), 3)])
def test_batched_motion_blur_is_the_image_by_image_sum(size, radius) -> None:
    """All images at once (one gather per tap) gives exactly the per-image sums, the stop at
    the first tap beyond a small image included."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, *size, generator=g)
    angles = torch.rand(4, generator=g) * 180 - 90
    one_by_one = torch.cat([C._motion_blur(x[i:i + 1], radius, 5.0, float(a))
                            for i, a in enumerate(angles)])
    assert torch.equal(C._motion_blur_batch(x, radius, 5.0, angles), one_by_one)
