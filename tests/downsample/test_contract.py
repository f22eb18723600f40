"""The size contract of every registered downsampler (SPEC §2), property-tested.

For any ``N, C, H, W >= 1`` and stride ``(sh, sw)``, an operator maps ``(N, C, H, W)`` to
``(N, C, ceil(H / sh), ceil(W / sw))`` with the input's dtype and device, keeps channels_last
(and contiguous) memory format, gives finite outputs for finite inputs, and back-propagates a
gradient of the input's shape and dtype, in training and in eval mode.

fp16 is tested on CPU like fp32 and bf16: with torch 2.14 every operator runs in float16 on
CPU (conv, pooling, index and softmax kernels all have Half CPU implementations). Every test runs
on the ``device`` of ``tests/conftest.py`` (``--device``); the edge and option tests also in
its ``dtype`` (``--dtype``), the others sweep every floating type themselves.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftpool.downsample import create_downsample, downsample_options, list_downsamples
from shiftpool.downsample.geometry import PAD_MODES

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
FORMATS = (torch.contiguous_format, torch.channels_last)

strides = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))
sizes = st.integers(1, 11)


def _input(n, c, h, w, dtype, memory_format, seed, device):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=generator).to(device, dtype)
    return x.contiguous(memory_format=memory_format).requires_grad_()


def _check_contract(name, n, c, h, w, stride, dtype, memory_format, training, seed, device,
                    **options):
    torch.manual_seed(seed)
    module = create_downsample(name, channels=c, stride=stride, **options)
    module = module.to(device, dtype).train(training)
    x = _input(n, c, h, w, dtype, memory_format, seed, device)
    y = module(x)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    assert y.shape == (n, c, math.ceil(h / sh), math.ceil(w / sw))
    assert y.dtype == dtype and y.device == x.device
    assert y.is_contiguous(memory_format=memory_format), (
        f"{name}: {memory_format} input gave strides {y.stride()} for shape {tuple(y.shape)}"
    )
    assert torch.isfinite(y).all()
    y.float().square().sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape and x.grad.dtype == dtype
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", list_downsamples())
@given(
    n=st.integers(1, 3), c=st.integers(1, 5), h=sizes, w=sizes, stride=strides,
    dtype=st.sampled_from(DTYPES), memory_format=st.sampled_from(FORMATS),
    training=st.booleans(), seed=st.integers(0, 2**16),
)
@settings(max_examples=40, deadline=None)
def test_size_dtype_and_memory_format_contract(
    name, n, c, h, w, stride, dtype, memory_format, training, seed, device
):
    _check_contract(name, n, c, h, w, stride, dtype, memory_format, training, seed, device)


@pytest.mark.parametrize("name", list_downsamples())
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize(("h", "w", "stride"), [(1, 1, 4), (1, 9, (3, 1)), (5, 2, (1, 4))])
def test_contract_at_the_edges(name, training, h, w, stride, device, dtype):
    """Explicit corner cases: 1-pixel maps, strides larger than the map, stride 1 on one axis."""
    _check_contract(name, 2, 3, h, w, stride, dtype, torch.channels_last, training, 0, device)


@pytest.mark.parametrize("name", list_downsamples())
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("memory_format", FORMATS, ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp16", "bf16"])
def test_every_dtype_and_memory_format(name, training, memory_format, dtype, device):
    """Each dtype x format x mode once, at an odd size: torch's CPU kernels cover fp16 too."""
    _check_contract(name, 2, 3, 7, 6, (2, 3), dtype, memory_format, training, 1, device)


# Valid values of every operator option, as strategies given the stride pair (sh, sw).
GOOD_OPTIONS = {
    "kernel_size": lambda s: st.one_of(
        st.none(), st.integers(1, 5), st.tuples(st.integers(1, 5), st.integers(1, 5))
    ),
    "filter_size": lambda s: st.integers(1, 5),
    "padding": lambda s: st.sampled_from(PAD_MODES),
    "norm": lambda s: st.sampled_from(["l2", "l1", "linf"]),
    "hidden": lambda s: st.integers(1, 4),
    "temperature": lambda s: st.floats(0.05, 5.0),
    "hard": lambda s: st.booleans(),
    "undo_max_shift": lambda s: st.integers(0, 3),
    "pad_at": lambda s: st.sampled_from(["end", "start"]),
    "pairing": lambda s: st.sampled_from(["natural", "reference"]),
    "generator": lambda s: st.none(),
    "grid_size": lambda s: st.one_of(
        st.none(), st.tuples(st.integers(s[0], s[0] + 5), st.integers(s[1], s[1] + 5))
    ),
    "per_sample": lambda s: st.booleans(),
    "eval_mode": lambda s: st.sampled_from(["avg", "max", "sample"]),
    "eval_samples": lambda s: st.integers(1, 3),
}


def _consistent(options: dict) -> dict:
    """Drop combinations that are documented errors (tested in test_errors.py)."""
    if options.get("eval_mode", "sample") != "sample":
        options["eval_samples"] = 1
    return options


@pytest.mark.parametrize("name", list_downsamples())
def test_every_option_has_valid_values_to_test(name):
    assert set(downsample_options(name)) <= set(GOOD_OPTIONS)


@pytest.mark.parametrize("name", list_downsamples())
@given(
    data=st.data(), n=st.integers(1, 2), c=st.integers(1, 3), h=sizes, w=sizes,
    stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    memory_format=st.sampled_from(FORMATS), training=st.booleans(), seed=st.integers(0, 2**16),
)
@settings(max_examples=25, deadline=None)
def test_contract_holds_for_every_option(
    name, data, n, c, h, w, stride, memory_format, training, seed, device, dtype
):
    options = _consistent({
        option: data.draw(GOOD_OPTIONS[option](stride), label=option)
        for option in downsample_options(name)
    })
    _check_contract(name, n, c, h, w, stride, dtype, memory_format, training, seed, device,
                    **options)
