"""Protocol presets, overrides and their resolution for an image size."""

from __future__ import annotations

import pytest

from shiftpool.metrics.protocols import Protocol, get_protocol, list_protocols, resolve_geometry


def test_presets() -> None:
    assert list_protocols() == ["aps", "tips", "zhang"]
    assert get_protocol("aps").shifts == ("circular",) and get_protocol("aps").max_shift == 3
    assert get_protocol("tips").shifts == ("zero", "circular")
    zhang = resolve_geometry(get_protocol("zhang"), (256, 256))
    assert zhang.crop_size == (224, 224) and zhang.max_shift == (32, 32)
    assert zhang.input_size == (224, 224)


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
    ],
)
def test_bad_protocols_raise(call, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_to_dict_is_plain() -> None:
    assert get_protocol("aps", max_shift=(1, 2)).to_dict()["max_shift"] == [1, 2]


def test_protocol_fill_per_channel_becomes_a_tuple() -> None:
    protocol = get_protocol("tips", fill=[-0.5, -1.0, -1.5])
    assert protocol.fill == (-0.5, -1.0, -1.5)
