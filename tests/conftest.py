"""Device and dtype of the operator tests, selectable as in kornia's and timm's suites.

Options (each with an environment variable as fallback, for CI jobs and ``make test``)::

    pytest tests/downsample --device cuda          # or SHIFTPOOL_TEST_DEVICE=cuda
    pytest tests/downsample --dtype all            # or SHIFTPOOL_TEST_DTYPE=all

``--device``: ``cpu`` (default), ``cuda``, or ``auto`` (cuda when available, else cpu).
``--dtype``: ``float32`` (default), ``float16``, ``bfloat16``, or ``all`` (each test that takes
``dtype`` runs once per floating type, with ids ``[float32]`` ...).

Tests take them as the fixtures ``device`` (a :class:`torch.device`) and ``dtype`` (a
:class:`torch.dtype`). With ``--device cuda`` on a machine without CUDA, every test that takes
``device`` is skipped, and the skip reason says so; tests that do not take ``device`` run on the
CPU as always (value checks against fixed expectations, error messages, pure Python helpers). On
CUDA, TF32 is switched off for matmuls and convolutions, so that float32 means float32, as the
exactness tests (``torch.equal`` after a shift) assume. Tests that check float64 gradients or
fp16/bf16 explicitly keep their own dtypes; ``dtype`` is for tests written for any floating type.

Also here: the ``one_thread`` fixture (``pytestmark = pytest.mark.usefixtures("one_thread")``)
``assert_shift_equivariant``, the check that a map commutes with circular shifts, and
``input_gradient``, the gradient a backward pass hands to its input as it is handed.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator

import pytest
import torch

DEVICES = ("cpu", "cuda", "auto")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEVICE_ENV = "SHIFTPOOL_TEST_DEVICE"
DTYPE_ENV = "SHIFTPOOL_TEST_DTYPE"


def _option_default(env: str, default: str, allowed: tuple[str, ...]) -> str:
    value = os.environ.get(env, "").strip().lower() or default
    if value not in allowed:
        raise pytest.UsageError(f"{env}={value!r}: allowed: {', '.join(allowed)}")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("shiftpool", "shiftpool operator tests")
    group.addoption(
        "--device", choices=DEVICES, default=None,
        help=f"device of the tests that take `device`: cpu (default), cuda or auto "
             f"(env {DEVICE_ENV})",
    )
    group.addoption(
        "--dtype", choices=(*DTYPES, "all"), default=None,
        help=f"floating type of the tests that take `dtype`: float32 (default), float16, "
             f"bfloat16 or all (env {DTYPE_ENV})",
    )


def _device_name(config: pytest.Config) -> str:
    return config.getoption("--device") or _option_default(DEVICE_ENV, "cpu", DEVICES)


def _dtype_names(config: pytest.Config) -> list[str]:
    name = config.getoption("--dtype") or _option_default(DTYPE_ENV, "float32", (*DTYPES, "all"))
    return list(DTYPES) if name == "all" else [name]


def pytest_configure(config: pytest.Config) -> None:
    _device_name(config)  # a bad environment value is a usage error before collection
    _dtype_names(config)


def pytest_report_header(config: pytest.Config) -> str:
    return f"shiftpool: device={_device_name(config)}, dtype={','.join(_dtype_names(config))}"


def _explicitly_parametrized(metafunc: pytest.Metafunc, name: str) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """With several dtypes selected, run each test that takes ``dtype`` once per dtype."""
    names = _dtype_names(metafunc.config)
    wants = "dtype" in metafunc.fixturenames
    if wants and len(names) > 1 and not _explicitly_parametrized(metafunc, "dtype"):
        # session scope, as the fixture it replaces: hypothesis refuses function-scoped ones
        metafunc.parametrize("dtype", [DTYPES[n] for n in names], ids=names, scope="session")


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> torch.device:
    """The device selected by ``--device`` / ``$SHIFTPOOL_TEST_DEVICE`` (default cpu)."""
    name = _device_name(pytestconfig)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            pytest.skip(
                "--device cuda (or SHIFTPOOL_TEST_DEVICE=cuda) was asked, but CUDA is not "
                f"available (torch {torch.__version__}, built with CUDA "
                f"{torch.version.cuda or 'none'}); run with --device cpu or auto"
            )
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return torch.device(name)


@pytest.fixture(scope="session")
def dtype(pytestconfig: pytest.Config) -> torch.dtype:
    """The floating type selected by ``--dtype`` / ``$SHIFTPOOL_TEST_DTYPE`` (default float32).

    With ``--dtype all`` tests get it by parametrisation instead (see ``pytest_generate_tests``).
    """
    return DTYPES[_dtype_names(pytestconfig)[0]]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread for the test, restored after: for small tensors, thread start-up and
    barriers cost more than they save, and seconds on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _assert_shift_equivariant(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                              shifts: Iterable[tuple[int, int]] | None = None,
                              atol: float = 1e-10) -> None:
    """``f(roll(x, s)) == roll(f(x), s)`` to ``atol`` for each shift ``s`` over (H, W), every
    circular shift by default, without gradients."""
    with torch.no_grad():
        reference = f(x)
        every = itertools.product(range(x.shape[-2]), range(x.shape[-1]))
        for shift in every if shifts is None else shifts:
            torch.testing.assert_close(f(x.roll(shift, (-2, -1))),
                                       reference.roll(shift, (-2, -1)), rtol=0, atol=atol,
                                       msg=lambda m, s=shift: f"shift {s}: {m}")


@pytest.fixture
def assert_shift_equivariant() -> Callable[..., None]:
    """The check that a map commutes with circular shifts, see :func:`_assert_shift_equivariant`:
    ``assert_shift_equivariant(f, x, shifts=None, atol=1e-10)``."""
    return _assert_shift_equivariant


def _input_gradient(x: torch.Tensor, backward: Callable[[torch.Tensor], object]) -> torch.Tensor:
    """The gradient that reaches ``x`` when ``backward(t)`` (which calls ``.backward()``) runs
    on ``t``, an intermediate copy of ``x``: a leaf's ``.grad`` is laid out like the leaf
    whatever gradient autograd hands it, so layouts are only seen on an intermediate tensor."""
    t = x.detach().requires_grad_() * 1
    grads: list[torch.Tensor] = []
    t.register_hook(grads.append)
    backward(t)
    assert len(grads) == 1, "the backward did not reach the input"
    return grads[0]


@pytest.fixture
def input_gradient() -> Callable[..., torch.Tensor]:
    """See :func:`_input_gradient`: ``input_gradient(x, backward)``."""
    return _input_gradient
