"""data/segmentation_files.py: the VOC palette, label maps and the fit geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shiftpool.data.formats import DatasetFormatError
from shiftpool.data.segmentation_files import LabelMap, fit_geometry, voc_palette


def test_voc_palette_gives_every_label_its_own_colour():
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert len({tuple(row) for row in palette.tolist()}) == 256
    # the colours VOC's label PNGs show: aeroplane dark red, person pink, void cream
    assert palette[[1, 2, 15, 20, 255]].tolist() == [
        [128, 0, 0], [0, 128, 0], [192, 128, 128], [0, 64, 128], [224, 224, 192]]


def test_label_map_maps_exactly_and_refuses_unused_values():
    stored = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ignore_rest = LabelMap.from_pairs({7: 0, 33: 18}, others=255)
    out = ignore_rest.apply(stored, Path("x.png"))
    assert out.dtype == np.uint8 and out[0, 7] == 0 and out[2, 1] == 18
    assert (out == 255).sum() == 254
    strict = LabelMap.from_pairs({0: 255, 1: 0, 2: 1})
    assert strict.apply(np.array([[0, 2]], dtype=np.uint8), Path("y.png")).tolist() == [[255, 1]]
    with pytest.raises(DatasetFormatError, match=r"z\.png holds label value\(s\) \[3, 9\] .* "
                                                 r"\(allowed: 0-2\)"):
        strict.apply(np.array([[9, 3, 1]], dtype=np.uint8), Path("z.png"))


@pytest.mark.parametrize("fit", ["crop", "pad", "stretch"])
def test_fit_geometry_windows_stay_inside_for_any_sizes(fit):
    rng = np.random.default_rng(0)
    for _ in range(500):
        source = tuple(int(v) for v in rng.integers(1, 600, 2))
        target = tuple(int(v) for v in rng.integers(1, 300, 2))
        (rh, rw), (top, left) = fit_geometry(source, target, fit)
        if fit == "crop":  # the resized image covers the target, the window is centred
            assert rh >= target[0] and rw >= target[1]
            assert top == (rh - target[0]) // 2 and left == (rw - target[1]) // 2
            assert rh == target[0] or rw == target[1]  # one side fits exactly
        elif fit == "pad":  # the resized image fits inside, one side fills it (up to rounding)
            assert 1 <= rh <= target[0] and 1 <= rw <= target[1]
            assert top + rh <= target[0] and left + rw <= target[1]
        else:
            assert (rh, rw) == target and (top, left) == (0, 0)
