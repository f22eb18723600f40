"""Every downsampler in eval mode under ``torch.compile(fullgraph=True)``, ONNX and TorchScript.

* compile: ``fullgraph=True`` (no graph break anywhere in the operator) with the default
  inductor backend, which is what users run; outputs equal eager. One input shape per
  operator keeps this affordable on two cores (see ``COMPILE_BACKEND``).
* ONNX: torch's dynamo exporter with dynamic batch, height and width, run in onnxruntime at
  shapes other than the export shape (odd sizes included); outputs equal eager.
* TorchScript: ``torch.jit.script`` works for exactly the operators in ``SCRIPTABLE``; the
  others are listed in ``NOT_SCRIPTABLE`` with the reason, and the test checks that they
  indeed fail to script (so the list is kept honest both ways).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from shiftpool.downsample import create_downsample, list_downsamples

OPS = list_downsamples()
CHANNELS = 4
COMPILE_SHAPE = (2, CHANNELS, 9, 12)
EXPORT_SHAPE = (2, CHANNELS, 10, 12)
# shapes other than the export shape: another batch, odd and even sizes, a stride-sized map
RUN_SHAPES = ((3, CHANNELS, 13, 7), (1, CHANNELS, 16, 17), (2, CHANNELS, 3, 4))
# inductor compiles one small graph per operator in a few seconds after the first; the cheaper
# "aot_eager" backend would also prove fullgraph capture, but not that the generated code runs.
COMPILE_BACKEND = "inductor"

# Operators that torch.jit.script rejects: (why, a pattern of torch's error message).
_STRING_CLASS_ANNOTATION = (
    "class-level buffer annotation {} is a string under `from __future__ import annotations`, "
    "which TorchScript cannot resolve",
    r"Unknown type annotation: 'Tensor",
)
_MEMORY_FORMAT = (
    "geometry.memory_format is annotated `-> torch.memory_format`, not a TorchScript type",
    r"Unknown type name 'torch\.memory_format'",
)
NOT_SCRIPTABLE: dict[str, tuple[str, str]] = {
    "aps": (_STRING_CLASS_ANNOTATION[0].format("`filter: Tensor | None`"),
            _STRING_CLASS_ANNOTATION[1]),
    "lps": (_STRING_CLASS_ANNOTATION[0].format("`filter: Tensor | None` (inherited)"),
            _STRING_CLASS_ANNOTATION[1]),
    "blur": (_STRING_CLASS_ANNOTATION[0].format("`filter: Tensor`"), _STRING_CLASS_ANNOTATION[1]),
    "maxblur": (_STRING_CLASS_ANNOTATION[0].format("`filter: Tensor` (inherited)"),
                _STRING_CLASS_ANNOTATION[1]),
    "max": _MEMORY_FORMAT,
    "avg": _MEMORY_FORMAT,
    "subsample": _MEMORY_FORMAT,
}
SCRIPTABLE = tuple(name for name in OPS if name not in NOT_SCRIPTABLE)


def _module(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_downsample(name, channels=CHANNELS, stride=2).eval()


def _input(shape, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", OPS)
def test_compile_fullgraph_matches_eager(name):
    module = _module(name)
    x = _input(COMPILE_SHAPE)
    compiled = torch.compile(module, fullgraph=True, backend=COMPILE_BACKEND)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), module(x))


@pytest.fixture(scope="module")
def onnxruntime():
    pytest.importorskip("onnxscript", reason="ONNX export needs the export extra")
    return pytest.importorskip("onnxruntime", reason="ONNX checks need the export extra")


@pytest.mark.parametrize("name", OPS)
def test_onnx_export_with_dynamic_shapes_matches_eager(name, onnxruntime, tmp_path):
    from torch.export import Dim

    module = _module(name)
    # export assumes sizes >= 2 and output sizes >= 2 at stride 2: height and width from 3
    dims = {0: Dim("batch"), 2: Dim("height", min=3), 3: Dim("width", min=3)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, (_input(EXPORT_SHAPE),), dynamo=True, dynamic_shapes=(dims,), verbose=False
        )
    path = tmp_path / f"{name}.onnx"
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    for seed, shape in enumerate(RUN_SHAPES):
        x = _input(shape, seed)
        (got,) = session.run(None, {input_name: x.numpy()})
        with torch.no_grad():
            expected = module(x)
        torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-5, atol=1e-5,
                                   msg=lambda m, s=shape: f"{name} at {s}: {m}")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", SCRIPTABLE)
def test_torchscript_matches_eager(name):
    module = _module(name)
    scripted = torch.jit.script(module)
    for seed, shape in enumerate((EXPORT_SHAPE, *RUN_SHAPES)):
        x = _input(shape, seed)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), module(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("name", sorted(NOT_SCRIPTABLE))
def test_documented_not_scriptable(name):
    _, message = NOT_SCRIPTABLE[name]
    with pytest.raises((RuntimeError, ValueError), match=message):
        torch.jit.script(_module(name))
