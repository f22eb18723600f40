"""Export a trained model to ONNX or TorchScript, checked against the eager model.

The ONNX opset is checked against the range the installed exporter supports before anything is
exported, and the written model is checked to carry the opset asked for: an opset is never
silently replaced by another one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shiftpool.core.checks import check_int
from shiftpool.core.errors import InputError
from shiftpool.core.io import atomic_write

EXPORT_FORMATS = ("onnx", "torchscript")
_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


@dataclass
class ExportResult:
    """Where the export went, how it was made, how far its outputs are from eager mode, and
    (ONNX, where the onnx package can read it back) the opset written."""

    path: Path
    format: str
    method: str
    max_abs_diff: float | None
    opset: int | None = None


def default_export_path(checkpoint: str | Path, fmt: str) -> Path:
    """``runs/x/last.pt`` → ``runs/x/model.onnx`` (or ``model.torchscript.pt``)."""
    name = "model.onnx" if fmt == "onnx" else "model.torchscript.pt"
    return Path(checkpoint).with_name(name)


def onnx_opset_range() -> tuple[int, int]:
    """The lowest and highest ONNX opset the installed ``torch.onnx`` exports.

    Example:
        >>> low, high = onnx_opset_range(); 7 <= low <= 18 <= high
        True
    """
    try:
        from torch.onnx import _constants
    except ImportError:  # torch moved its constants: the range torch 2.1..2.14 support
        return 7, 20
    return int(_constants.ONNX_MIN_OPSET), int(_constants.ONNX_MAX_OPSET)


def _dynamo_min_opset() -> int:
    """The lowest opset of the dynamo exporter (lower ones go through the TorchScript-based one,
    which writes them as asked: the dynamo exporter's down-conversion silently keeps its own)."""
    try:
        from torch.onnx._internal.exporter import _constants
    except ImportError:
        return 18
    return int(getattr(_constants, "TORCHLIB_OPSET", 18))


def _torchscript_exporter_max_opset() -> int:
    try:
        from torch.onnx import _constants
    except ImportError:
        return 20
    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))


def check_export_options(fmt: str, opset: int | None = None) -> None:
    """Raise one :class:`InputError` line unless ``fmt`` and ``opset`` can be exported.

    ``opset`` applies to ONNX only and must lie in :func:`onnx_opset_range`.
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(
            f"shiftpool.export: unknown format {fmt!r}; available: {', '.join(EXPORT_FORMATS)}"
        )
    if opset is None:
        return
    if fmt != "onnx":
        raise InputError(f"shiftpool.export: opset applies to the onnx format only, not {fmt!r}")
    low, high = onnx_opset_range()
    check_int(opset, "shiftpool.export: opset", minimum=low, maximum=high)


def written_opset(path: str | Path) -> int | None:
    """The default-domain opset of the ONNX file at ``path`` (None without the onnx package)."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")),
                None)


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
        opset: ONNX opset, in :func:`onnx_opset_range` (default: the exporter's). The written
            model is checked to carry it.
        verify: run the export on ``example`` (ONNX Runtime where installed) and report the
            largest absolute difference from the eager model.

    Raises:
        InputError: an unknown format, an opset outside the supported range (or given for
            TorchScript), an example that is not a non-empty ``(N, C, H, W)`` batch, or an
            explicit opset the exporter could not write.

    Example:
        >>> export_model(model, torch.randn(2, 3, 32, 32), "model.onnx", "onnx")  # doctest: +SKIP
    """
    check_export_options(fmt, opset)
    if not isinstance(example, torch.Tensor) or example.dim() != 4 or example.shape[0] < 1:
        shape = tuple(example.shape) if isinstance(example, torch.Tensor) else type(example)
        raise InputError(
            f"shiftpool.export: the example must be a batch (N >= 1, C, H, W), got {shape}"
        )
    model = model.eval().cpu()
    example = example.cpu()
    path = Path(path)
    written = None
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
                written = _check_written_opset(tmp, opset)
                actual = _onnx_outputs(tmp, example) if verify else None
        data = tmp.read_bytes()
        atomic_write(path, lambda handle: handle.write(data))
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    diff = None if actual is None else (actual.float() - expected).abs().max().item()
    return ExportResult(path, fmt, method, diff, written)


def _check_written_opset(path: Path, opset: int | None) -> int | None:
    """The opset of the file at ``path``; an error if it is not the ``opset`` asked for."""
    written = written_opset(path)
    if opset is not None and written is not None and written != opset:
        raise InputError(
            f"shiftpool.export: the exporter wrote opset {written}, not the requested {opset}; "
            f"export this model at opset {written} or leave --opset out"
        )
    return written


def _export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int | None) -> str:
    """ONNX through the dynamo exporter, falling back to the TorchScript-based one.

    Opsets below the dynamo exporter's lowest go straight to the TorchScript-based exporter
    (the dynamo one would write its own lowest opset instead). An explicit opset that neither
    exporter can write is an :class:`InputError` naming it.
    """
    kwargs = {} if opset is None else {"opset_version": opset}
    use_dynamo = opset is None or opset >= _dynamo_min_opset()
    use_legacy = opset is None or opset <= _torchscript_exporter_max_opset()
    if use_dynamo:
        try:
            batch = torch.export.Dim("batch", min=1)
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"],
                                        output_names=["logits"], dynamic_shapes=({0: batch},),
                                        verbose=False, **kwargs)
            program.save(str(path))
            return "dynamo"
        except Exception as error:  # retry with the older exporter where it can
            if not use_legacy:
                raise _opset_failure(opset, error) from error
    try:
        with warnings.catch_warnings():  # it traces: shapes are fixed by the example, outputs
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # are checked; the rest
            warnings.simplefilter("ignore", DeprecationWarning)  # says it is the older one
            warnings.filterwarnings("ignore", "Constant folding", UserWarning)
            torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["images"],
                              output_names=["logits"], dynamic_axes={"images": {0: "batch"}},
                              **kwargs)
    except Exception as error:
        if opset is None:
            raise
        raise _opset_failure(opset, error) from error
    return "torchscript-onnx"


def _opset_failure(opset: int | None, error: Exception) -> InputError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return InputError(
        f"shiftpool.export: this model cannot be exported at opset {opset} "
        f"({type(error).__name__}: {first[:200]}); try another --opset or the default"
    )
