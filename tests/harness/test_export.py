"""export_model: formats, the ONNX opset range (checked first, written as asked), atomic output,
and outputs checked against the eager model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shiftpool.core.errors import InputError
from shiftpool.harness.export import (
    check_export_options,
    default_export_path,
    export_model,
    onnx_opset_range,
    written_opset,
)
from shiftpool.models import create_model


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("simple_cnn", downsample="blur", num_classes=10, in_channels=1,
                        channels=[4, 8, 8]).eval()


@pytest.fixture
def example() -> torch.Tensor:
    return torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_the_opset_range_is_the_installed_exporter_s() -> None:
    low, high = onnx_opset_range()
    assert 7 <= low < 18 <= high  # the TorchScript-based exporter goes down, dynamo from 18


@pytest.mark.parametrize(("fmt", "opset", "message"), [
    ("onnx", 1, r"opset must be an integer in \[\d+, \d+\], got 1"),
    ("onnx", 99, r"opset must be an integer in \[\d+, \d+\], got 99"),
    ("onnx", True, "opset must be an integer"),
    ("onnx", 17.0, "opset must be an integer"),
    ("torchscript", 18, "opset applies to the onnx format only"),
    ("tflite", None, "unknown format 'tflite'; available: onnx, torchscript"),
])
def test_bad_options_are_refused_before_anything_is_written(fmt, opset, message, model, example,
                                                            tmp_path) -> None:
    with pytest.raises(InputError, match=message):
        check_export_options(fmt, opset)
    with pytest.raises(InputError, match=message):
        export_model(model, example, tmp_path / "m.onnx", fmt, opset=opset)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [torch.randn(0, 1, 28, 28), torch.randn(1, 28, 28), "images"])
def test_the_example_must_be_a_batch(bad, model, tmp_path) -> None:
    with pytest.raises(InputError, match="the example must be a batch"):
        export_model(model, bad, tmp_path / "m.pt", "torchscript")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_torchscript_matches_eager_and_leaves_no_temporary_file(model, example, tmp_path) -> None:
    result = export_model(model, example, tmp_path / "m.pt", "torchscript")
    assert result.path == tmp_path / "m.pt" and result.max_abs_diff is not None
    assert result.max_abs_diff < 1e-5
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    loaded = torch.jit.load(str(result.path))
    batch = torch.randn(5, 1, 28, 28)
    torch.testing.assert_close(loaded(batch), model(batch))


@pytest.mark.parametrize("opset", [None, 11, 18])
def test_onnx_is_written_at_the_opset_asked_for(opset, model, example, tmp_path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    result = export_model(model, example, tmp_path / "m.onnx", "onnx", opset=opset,
                          verify=True)
    written = written_opset(result.path)
    assert written == result.opset
    if opset is None:  # the exporter's own default
        assert onnx_opset_range()[0] <= written <= onnx_opset_range()[1]
    else:
        assert written == opset
    assert result.method == ("torchscript-onnx" if opset == 11 else "dynamo")
    if result.max_abs_diff is not None:  # onnxruntime is installed
        assert result.max_abs_diff < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_default_paths_sit_beside_the_checkpoint() -> None:
    assert default_export_path("runs/x/last.pt", "onnx") == Path("runs/x/model.onnx")
    assert default_export_path("runs/x/last.pt", "torchscript") == \
        Path("runs/x/model.torchscript.pt")
