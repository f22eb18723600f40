"""Protocol presets, overrides and their resolution for an image size."""

from __future__ import annotations

import pytest
import torch

import shiftpool
from shiftpool.metrics.protocols import (
    Protocol,
    get_protocol,
    list_protocols,
    resolve_fill,
    resolve_geometry,
)


def test_presets() -> None:
    assert list_protocols() == ["aps", "tips", "zhang"]
    assert get_protocol("aps").shifts == ("circular",) and get_protocol("aps").max_shift == 3
    assert get_protocol("tips").shifts == ("zero", "circular")
    zhang = resolve_geometry(get_protocol("zhang"), (256, 256))
    assert zhang.crop_size == (224, 224) and zhang.max_shift == (32, 32)
    assert zhang.input_size == (224, 224)


def _randint_support(low: int, high: int) -> tuple[int, int]:
    """What ``randint(low, high)`` (numpy's and torch's: ``high`` excluded) draws, found by
    drawing."""
    values = torch.randint(low, high, (20_000,), generator=torch.Generator().manual_seed(0))
    return int(values.min()), int(values.max())


def test_aps_preset_is_the_aps_cifar10_evaluation() -> None:
    # evaluate_circular: torch.roll by np.random.randint(-3, 3, 2) on normalised images
    geometry = resolve_geometry(get_protocol("aps"), (32, 32))
    support = _randint_support(-3, 3)
    assert support == (-3, 2)
    assert geometry.ranges == {"circular": (support, support)}
    assert get_protocol("aps").fill == "mean"
    assert geometry.diagonal["circular"] == [-3, -2, -1, 0, 1, 2, 3]


def test_tips_preset_is_the_tips_evaluation() -> None:
    # evaluate_module: np.random.randint(-H//4, H//4 + 1) per axis and view; "standard" shifts
    # zero the rolled-in rows of normalised images, i.e. fill with the mean colour
    geometry = resolve_geometry(get_protocol("tips"), (32, 32))
    support = _randint_support(-8, 8 + 1)
    assert support == (-8, 8)
    assert geometry.ranges == {"zero": (support, support), "circular": (support, support)}
    assert get_protocol("tips").fill == "mean" and resolve_fill("mean", 3) == 0.0
    assert resolve_geometry(get_protocol("tips"), (64, 64)).ranges["zero"] == ((-16, 16),) * 2


def test_zhang_preset_is_the_antialiased_cnns_evaluation() -> None:
    # validate_shift: 224 windows of 256 images at corners np.random.randint(32, size=2);
    # validate_diagonal: windows at (off, off) for off in range(33)
    geometry = resolve_geometry(get_protocol("zhang"), (256, 256))
    support = _randint_support(0, 32)
    assert geometry.ranges == {"crop": (support, support)} and support == (0, 31)
    assert geometry.crop_size == (224, 224)
    assert geometry.diagonal["crop"] == list(range(33))  # offset 32 included: 224 + 32 = 256


def test_the_lps_evaluation_is_expressible() -> None:
    lps = get_protocol("aps", name="lps", shifts=("zero", "circular"),
                       offsets={"circular": "half-open", "zero": (-2, 3)})
    geometry = resolve_geometry(lps, (32, 32))
    assert geometry.ranges == {"zero": ((-2, 3), (-2, 3)), "circular": ((-3, 2), (-3, 2))}


@pytest.mark.parametrize(
    ("offsets", "mode", "expected"),
    [
        (None, "zero", ((-3, 3), (-2, 2))),
        ("symmetric", "circular", ((-3, 3), (-2, 2))),
        ("half-open", "circular", ((-3, 2), (-2, 1))),
        ("half-open", "crop", ((0, 2), (0, 1))),
        ((-1, 4), "reflect", ((-1, 4), (-1, 4))),
        (((0, 1), (-2, 0)), "zero", ((0, 1), (-2, 0))),
        ({"zero": (1, 1)}, "zero", ((1, 1), (1, 1))),
        ({"zero": (1, 1)}, "circular", ((-3, 3), (-2, 2))),
    ],
)
def test_offset_supports(offsets, mode: str, expected) -> None:
    protocol = Protocol("p", (mode,), max_shift=(3, 2), offsets=offsets)
    assert resolve_geometry(protocol, (16, 16)).ranges[mode] == expected


def test_describe_names_every_detail() -> None:
    details = get_protocol("tips").describe((32, 32), ([0.5], [0.25]))
    assert details == {
        "protocol": "tips",
        "shifts": "zero, circular",
        "source": get_protocol("tips").source,
        "image size": "32×32",
        "offsets": "zero: dy in [-8, 8], dx in [-8, 8]; circular: dy in [-8, 8], dx in [-8, 8]",
        "draw": "one offset per image and view, seeded (the same for every model)",
        "fill": "0 in normalised space (the data set's mean colour)",
        "diagonal": "zero: d = -8 .. 8 (17 shifts); circular: d = -8 .. 8 (17 shifts)",
        "metrics": "accuracy, consistency, fidelity, diagonal",
        "intervals": "95% Wilson (proportions), Student t (means), over images",
    }
    black = get_protocol("tips", fill="black", reference=True).describe((32, 32), ([0.5], [0.25]))
    assert black["fill"] == "black (-mean / std = -2)"
    assert black["draw"] == "one offset per batch and view (the papers' code; intervals too narrow)"
    zhang = get_protocol("zhang").describe((256, 256))
    assert zhang["crop"] == "window 224×224, unshifted view = the centre crop"
    assert "fill" not in zhang  # no zero shifts: nothing is filled
    assert get_protocol("aps").describe()["offsets"] == "circular: dy in [-3, 2], dx in [-3, 2]"


def test_fill_resolution() -> None:
    assert resolve_fill("mean", 3) == 0.0
    assert resolve_fill("black", 2, ([0.5, 0.2], [0.25, 0.1])) == (-2.0, -2.0)
    assert resolve_fill(-1.5, 3) == -1.5 and resolve_fill((1.0, 2.0), 2) == (1.0, 2.0)
    with pytest.raises(shiftpool.InputError, match=r"fill='black' needs the data's mean and std"):
        resolve_fill("black", 3)
    with pytest.raises(shiftpool.InputError, match=r"give 3 means and 3 positive stds"):
        resolve_fill("black", 3, ([0.5], [0.2]))
    with pytest.raises(shiftpool.InputError, match=r"one value per channel \(3\)"):
        resolve_fill((1.0, 2.0), 3)


def test_tips_shift_is_a_quarter_of_the_image() -> None:
    assert resolve_geometry(get_protocol("tips"), (32, 32)).max_shift == (8, 8)
    assert resolve_geometry(get_protocol("tips"), (28, 64)).max_shift == (7, 16)


def test_every_field_can_be_overridden() -> None:
    p = get_protocol("tips", max_shift=(2, 3), shifts="reflect", grid_step=2, confidence=0.9)
    assert (p.name, p.shifts, p.max_shift, p.grid_step, p.confidence) == (
        "tips", ("reflect",), (2, 3), 2, 0.9)
    custom = Protocol("mine", ("zero",), max_shift=1)
    assert get_protocol(custom) is custom
    assert get_protocol(custom, max_shift=2).max_shift == 2
    geometry = resolve_geometry(get_protocol("aps", grid_max_shift=1), (8, 8))
    assert geometry.grid_max_shift == (1, 1) and geometry.max_shift == (3, 3)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: get_protocol("imagenet"), ValueError, "unknown protocol 'imagenet'"),
        (lambda: get_protocol("aps", max_shfit=2), TypeError, "max_shfit.*allowed"),
        (lambda: get_protocol("aps", shifts=("crop", "zero")), ValueError, "cannot be combined"),
        (lambda: get_protocol("aps", shifts=("roll",)), ValueError, "unknown shift mode"),
        (lambda: get_protocol("aps", shifts=()), ValueError, "at least one"),
        (lambda: get_protocol("aps", max_shift=0), ValueError, "max_shift must be >= 1"),
        (lambda: get_protocol("aps", confidence=95), ValueError, "confidence"),
        (lambda: resolve_geometry(get_protocol("aps"), (3, 8)), ValueError,
         "smaller than the image"),
        (lambda: resolve_geometry(get_protocol("aps", max_shift=8), (8, 8)), ValueError,
         "smaller than the image"),
        (lambda: resolve_geometry(get_protocol("zhang", crop_size=250), (256, 256)), ValueError,
         "does not fit"),
        (lambda: resolve_geometry(get_protocol("aps", crop_size=4), (8, 8)), ValueError,
         "only used by the 'crop'"),
        (lambda: get_protocol("tips", fill="grey"), ValueError,
         r"fill must be 'mean', 'black', a number or one number per channel, got 'grey'"),
        (lambda: get_protocol("tips", fill=True), ValueError, "fill must be"),
        (lambda: get_protocol("tips", offsets=(2, -2)), ValueError,
         r"an offset range must be \(low, high\) with low <= high, got \(2, -2\)"),
        (lambda: get_protocol("tips", offsets="open"), ValueError,
         "offsets must be one of symmetric, half-open"),
        (lambda: get_protocol("tips", offsets={"roll": (0, 1)}), ValueError,
         "unknown shift mode 'roll'"),
        (lambda: get_protocol("tips", reference="yes"), TypeError, "reference must be True"),
        (lambda: get_protocol("tips", diagonal=-1), ValueError, "diagonal must be >= 0"),
        (lambda: get_protocol("tips", metrics=("accuracy", "speed")), ValueError,
         "unknown metric"),
        (lambda: resolve_geometry(get_protocol("zhang", offsets=(-1, 3)), (36, 36)), ValueError,
         "crop offsets are window corners and must be >= 0"),
        (lambda: resolve_geometry(get_protocol("zhang", diagonal=(0, 33)), (36, 36)), ValueError,
         "does not fit"),
        (lambda: resolve_geometry(get_protocol("tips", offsets=(-8, 8)), (8, 8)), ValueError,
         "must be smaller than the image"),
    ],
)
def test_bad_protocols_raise(call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_to_dict_is_plain() -> None:
    data = get_protocol("aps", max_shift=(1, 2)).to_dict()
    assert data["max_shift"] == [1, 2] and data["offsets"] == "half-open"
    assert data["fill"] == "mean" and data["reference"] is False
    ranges = get_protocol("tips", offsets={"zero": ((0, 1), (-1, 0))}).to_dict()["offsets"]
    assert ranges == {"zero": [[0, 1], [-1, 0]]}


def test_protocol_fill_per_channel_becomes_a_tuple() -> None:
    protocol = get_protocol("tips", fill=[-0.5, -1.0, -1.5])
    assert protocol.fill == (-0.5, -1.0, -1.5)
