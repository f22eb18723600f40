"""Export a trained model to ONNX or TorchScript, checked against the eager model."""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shiftpool.core.errors import InputError

EXPORT_FORMATS = ("onnx", "torchscript")
_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


@dataclass
class ExportResult:
    """Where the export went, how it was made, and how far its outputs are from eager mode."""

    path: Path
    format: str
    method: str
    max_abs_diff: float | None


def default_export_path(checkpoint: str | Path, fmt: str) -> Path:
    """``runs/x/last.pt`` → ``runs/x/model.onnx`` (or ``model.torchscript.pt``)."""
    name = "model.onnx" if fmt == "onnx" else "model.torchscript.pt"
    return Path(checkpoint).with_name(name)


def _temporary_path(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_SUFFIX["onnx"])
    os.close(fd)
    return Path(tmp)


def _to_torchscript(model: nn.Module, example: torch.Tensor) -> tuple[torch.jit.ScriptModule, str]:
    """Script the model (keeps data-dependent choices such as APS's); trace if scripting fails."""
    try:
        return torch.jit.script(model), "script"
    except Exception:  # any scripting failure falls back to tracing
        with warnings.catch_warnings():  # shapes are fixed by the example; outputs are checked
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return torch.jit.trace(model, example, check_trace=False), "trace"


def _onnx_outputs(path: Path, example: torch.Tensor) -> torch.Tensor | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: example.numpy()})[0])


def export_model(model: nn.Module, example: torch.Tensor, path: str | Path, fmt: str, *,
                 opset: int | None = None, verify: bool = True) -> ExportResult:
    """Write ``model`` (eval mode, CPU) as ``fmt`` to ``path`` atomically.

    Args:
        model: the model; exported in eval mode on the CPU.
        example: an input batch ``(N, C, H, W)``; the batch dimension stays dynamic in ONNX.
        path: the output file.
        fmt: ``"onnx"`` or ``"torchscript"``.
        opset: ONNX opset (default: the exporter's).
        verify: run the export on ``example`` (ONNX Runtime where installed) and report the
            largest absolute difference from the eager model.

    Example:
        >>> export_model(model, torch.randn(2, 3, 32, 32), "model.onnx", "onnx")  # doctest: +SKIP
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(
            f"shiftpool.export: unknown format {fmt!r}; available: {', '.join(EXPORT_FORMATS)}"
        )
    model = model.eval().cpu()
    example = example.cpu()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_path(path)
    try:
        with torch.no_grad():
            expected = model(example).float()
            if fmt == "torchscript":
                scripted, method = _to_torchscript(model, example)
                scripted.save(str(tmp))
                actual = scripted(example).float() if verify else None
            else:
                method = _export_onnx(model, example, tmp, opset)
                actual = _onnx_outputs(tmp, example) if verify else None
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    diff = None if actual is None else (actual.float() - expected).abs().max().item()
    return ExportResult(path, fmt, method, diff)


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int | None) -> str:
    """ONNX through the dynamo exporter, falling back to the TorchScript-based one."""
    kwargs = {} if opset is None else {"opset_version": opset}
    try:
        batch = torch.export.Dim("batch", min=1)
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"],
                                    output_names=["logits"], dynamic_shapes=({0: batch},),
                                    verbose=False, **kwargs)
        program.save(str(path))
        return "dynamo"
    except Exception:  # retry with the older exporter
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "batch"}},
                          **kwargs)
        return "torchscript-onnx"
