"""Batched shifts against a per-image loop reference, offsets and errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from shiftpool.metrics.shifts import SHIFT_MODES, center_offset, draw_offsets, shift_images


def _reference_shift(image: torch.Tensor, dy: int, dx: int, mode: str, m: int) -> torch.Tensor:
    """One image (C, H, W), shifted the slow, obvious way."""
    h, w = image.shape[-2:]
    if mode == "circular":
        return torch.roll(image, (dy, dx), dims=(-2, -1))
    if mode == "zero":
        out = torch.zeros_like(image)
        for i in range(h):
            for j in range(w):
                if 0 <= i - dy < h and 0 <= j - dx < w:
                    out[:, i, j] = image[:, i - dy, j - dx]
        return out
    if mode == "reflect":
        padded = F.pad(image[None], (m, m, m, m), mode="reflect")[0]
        return padded[:, m - dy : m - dy + h, m - dx : m - dx + w]
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["circular", "zero", "reflect"])
def test_shift_matches_per_image_loop(mode: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, 3, 7, 10, generator=g)
    offsets = draw_offsets(9, (4, 4), mode, g)
    out = shift_images(x, offsets, mode)
    for k in range(9):
        dy, dx = offsets[k].tolist()
        torch.testing.assert_close(out[k], _reference_shift(x[k], dy, dx, mode, 4), rtol=0, atol=0)


def test_crop_matches_per_image_slices() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 2, 12, 13, generator=g)
    offsets = draw_offsets(6, (4, 5), "crop", g)
    out = shift_images(x, offsets, "crop", crop_size=(8, 8))
    assert out.shape == (6, 2, 8, 8)
    for k in range(6):
        dy, dx = offsets[k].tolist()
        assert torch.equal(out[k], x[k, :, dy : dy + 8, dx : dx + 8])


def test_single_offset_broadcasts_and_moves_content_down_right() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(2, 1, 1, 1)
    out = shift_images(x, torch.tensor([1, 2]), "circular")
    assert torch.equal(out, torch.roll(x, (1, 2), dims=(2, 3)))
    zero = shift_images(x, torch.tensor([1, 0]), "zero")
    assert zero[0, 0, 0].tolist() == [0.0] * 4
    assert torch.equal(zero[0, 0, 1:], x[0, 0, :3])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_and_channels_last_are_kept(dtype: torch.dtype) -> None:
    x = torch.randn(4, 3, 6, 6).to(dtype).contiguous(memory_format=torch.channels_last)
    offsets = torch.tensor([[1, -2], [0, 0], [-3, 3], [2, 1]])
    for mode in ("circular", "zero", "reflect"):
        out = shift_images(x, offsets, mode)
        assert out.dtype == dtype
        assert out.is_contiguous(memory_format=torch.channels_last)
        expected = shift_images(x.contiguous(), offsets, mode)
        assert torch.equal(out, expected)


def test_zero_offset_is_identity_in_every_mode() -> None:
    x = torch.randn(3, 2, 5, 5)
    for mode in ("circular", "zero", "reflect"):
        assert torch.equal(shift_images(x, torch.zeros(3, 2, dtype=torch.long), mode), x)


def test_offsets_are_seeded_per_image_and_in_range() -> None:
    a = draw_offsets(2000, (3, 2), "zero", torch.Generator().manual_seed(5))
    b = draw_offsets(2000, (3, 2), "zero", torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert a[:, 0].min() == -3 and a[:, 0].max() == 3
    assert a[:, 1].min() == -2 and a[:, 1].max() == 2
    assert len({tuple(o) for o in a.tolist()}) == 7 * 5  # every offset occurs: per image draws
    crop = draw_offsets(2000, (32, 32), "crop", torch.Generator().manual_seed(5))
    assert crop.min() == 0 and crop.max() == 31


def test_center_offset() -> None:
    assert center_offset((256, 256), (224, 224)) == (16, 16)
    assert center_offset((9, 12), (8, 8)) == (0, 2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "wrap"}, ValueError, "unknown shift mode"),
        ({"offsets": torch.tensor([[0, 8]] * 2)}, ValueError, "smaller than the image"),
        ({"offsets": torch.tensor([[0, 0]] * 3)}, ValueError, "shape"),
        ({"offsets": torch.tensor([0.5, 1.0])}, TypeError, "integers"),
        ({"mode": "crop"}, ValueError, "needs crop_size"),
        ({"mode": "crop", "crop_size": (6, 6)}, ValueError, r"\[0, 2\]"),
        ({"mode": "crop", "crop_size": (9, 9)}, ValueError, "crop_size"),
        ({"crop_size": (4, 4)}, ValueError, "only used by mode 'crop'"),
    ],
)
def test_bad_input_raises(kwargs: dict, error: type, match: str) -> None:
    args = {"offsets": torch.tensor([[3, 3], [0, 1]]), "mode": "circular"} | kwargs
    with pytest.raises(error, match=match):
        shift_images(torch.zeros(2, 1, 8, 8), **args)


def test_every_mode_is_listed() -> None:
    assert SHIFT_MODES == ("circular", "zero", "reflect", "crop")


def test_zero_shift_brings_in_the_fill_value_per_channel() -> None:
    x = torch.ones(2, 3, 4, 5)
    fill = (-1.0, -2.0, -3.0)
    out = shift_images(x, torch.tensor([[1, 0], [0, -2]]), "zero", fill=fill)
    for c, value in enumerate(fill):
        assert torch.equal(out[0, c, 0], torch.full((5,), value))
        assert torch.equal(out[0, c, 1:], torch.ones(3, 5))
        assert torch.equal(out[1, c, :, 3:], torch.full((4, 2), value))
        assert torch.equal(out[1, c, :, :3], torch.ones(4, 3))


def test_fill_with_the_wrong_number_of_channels_is_an_error() -> None:
    with pytest.raises(ValueError, match="one value per channel"):
        shift_images(torch.ones(1, 3, 4, 4), torch.tensor([1, 1]), "zero", fill=(0.0, 1.0))


# The papers' evaluation shifts, written out again here from their definitions, against
# shift_images: the offsets the protocols name move the content the same way.


@pytest.mark.parametrize(("dy", "dx"), [(-3, 2), (2, -3), (0, 1), (-1, -1)])
def test_aps_and_tips_circular_shift_is_roll(dy: int, dx: int) -> None:
    x = torch.randn(2, 3, 8, 9)
    expected = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    assert torch.equal(shift_images(x, torch.tensor([dy, dx]), "circular"), expected)


@pytest.mark.parametrize(("dy", "dx"), [(-3, 2), (2, -3), (0, 1), (8, -8)])
def test_tips_standard_shift_is_roll_then_zero(dy: int, dx: int) -> None:
    # TIPS: roll along rows, zero the rows that wrapped in; then the same along columns
    x = torch.randn(2, 3, 32, 32)
    expected = torch.roll(x, shifts=dy, dims=-2)
    if dy > 0:
        expected[:, :, :dy, :] = 0
    elif dy < 0:
        expected[:, :, dy:, :] = 0
    expected = torch.roll(expected, shifts=dx, dims=-1)
    if dx > 0:
        expected[:, :, :, :dx] = 0
    elif dx < 0:
        expected[:, :, :, dx:] = 0
    assert torch.equal(shift_images(x, torch.tensor([dy, dx]), "zero", fill=0.0), expected)


@pytest.mark.parametrize(("s0", "s1"), [(-3, 2), (2, -3), (0, 0), (-3, -3)])
def test_lps_padded_shift_moves_the_content_by_minus_s(s0: int, s1: int) -> None:
    # LPS (CIFAR-10): zero-pad by 3, then keep the 32×32 window starting at (s + 3) for a drawn
    # s in [-3, 2]: content moves by -s, i.e. a zero shift by δ = -s in [-2, 3]
    x = torch.randn(2, 3, 32, 32)
    padded = F.pad(x, (3, 3, 3, 3))
    expected = padded[:, :, s0 + 3 : s0 + 3 + 32, s1 + 3 : s1 + 3 + 32]
    assert torch.equal(shift_images(x, torch.tensor([-s0, -s1]), "zero"), expected)


def test_zhang_window_is_the_slice_at_the_corner() -> None:
    x = torch.randn(1, 3, 40, 40)
    for corner in (0, 5, 8):
        window = shift_images(x, torch.tensor([corner, corner]), "crop", crop_size=(32, 32))
        assert torch.equal(window, x[:, :, corner : corner + 32, corner : corner + 32])
