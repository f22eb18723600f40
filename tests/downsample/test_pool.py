"""max, avg and subsample: torch's own ops where they apply, a direct window loop everywhere.

The operator tests take the ``device`` of ``tests/conftest.py`` (``--device``).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from shiftpool.downsample import (
    AvgDownsample,
    MaxDownsample,
    Subsample,
    avg_downsample,
    create_downsample,
    max_downsample,
    subsample,
)
from shiftpool.downsample.geometry import pool_padding


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32,
           device: torch.device | str = "cpu") -> torch.Tensor:
    """Seeded ``torch.randn`` drawn on the CPU (the same values everywhere), moved to ``device``."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)


def _window_loop(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], reduce):
    """Reference: window ``o`` covers ``[o*s - before, o*s - before + k)`` clipped to the input."""
    (kh, kw), (sh, sw) = kernel, stride
    h, w = x.shape[-2:]
    top, left = pool_padding(h, kh, sh)[0], pool_padding(w, kw, sw)[0]
    rows = []
    for oh in range(math.ceil(h / sh)):
        r0 = oh * sh - top
        row = []
        for ow in range(math.ceil(w / sw)):
            c0 = ow * sw - left
            window = x[..., max(r0, 0) : r0 + kh, max(c0, 0) : c0 + kw]
            row.append(reduce(window.flatten(-2)))
        rows.append(torch.stack(row, -1))
    return torch.stack(rows, -2)


@pytest.mark.parametrize("stride", [2, 3, (2, 3), (1, 4)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_kernel_equal_stride_is_exactly_torch_on_divisible_sizes(stride, memory_format, device):
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    x = _randn(2, 5, 4 * sh, 3 * sw, device=device).contiguous(memory_format=memory_format)
    assert torch.equal(max_downsample(x, stride), F.max_pool2d(x, stride))
    assert torch.equal(avg_downsample(x, stride), F.avg_pool2d(x, stride))
    assert torch.equal(MaxDownsample(stride=stride)(x), F.max_pool2d(x, stride))
    assert torch.equal(AvgDownsample(stride=stride)(x), F.avg_pool2d(x, stride))


@pytest.mark.parametrize(("kernel", "stride"), [(3, 2), (4, 2), (5, 2), (2, 1), (3, 1), (1, 2),
                                                ((3, 1), (2, 3)), (3, 3), (5, 4), (2, 3)])
def test_overlapping_and_gapped_kernels_match_a_direct_window_loop(kernel, stride, device):
    kp = (kernel, kernel) if isinstance(kernel, int) else kernel
    sp = (stride, stride) if isinstance(stride, int) else stride
    for h, w in itertools.product((1, 2, 5, 8), (1, 3, 7)):
        x = _randn(2, 3, h, w, seed=h * 10 + w, device=device)
        got_max = max_downsample(x, stride, kernel)
        got_avg = avg_downsample(x, stride, kernel)
        assert got_max.shape == (2, 3, math.ceil(h / sp[0]), math.ceil(w / sp[1]))
        assert torch.equal(got_max, _window_loop(x, kp, sp, lambda v: v.amax(-1)))
        torch.testing.assert_close(got_avg, _window_loop(x, kp, sp, lambda v: v.mean(-1)))


def test_avg_averages_valid_pixels_only(device):
    x = torch.ones(1, 2, 5, 7, device=device)
    for kernel, stride in [(2, 2), (3, 2), (5, 3)]:
        assert torch.equal(avg_downsample(x, stride, kernel), torch.ones_like(
            avg_downsample(x, stride, kernel)))
    # odd size, kernel == stride: the last window holds one valid pixel
    x = torch.arange(5.0, device=device).view(1, 1, 1, 5)
    assert avg_downsample(x, (1, 2)).flatten().tolist() == [0.5, 2.5, 4.0]
    assert max_downsample(x, (1, 2)).flatten().tolist() == [1.0, 3.0, 4.0]


def test_kernel_defaults_to_stride_and_accepts_pairs(device):
    assert MaxDownsample(stride=(2, 3)).kernel_size == (2, 3)
    assert AvgDownsample(stride=2, kernel_size=(3, 1)).kernel_size == (3, 1)
    x = _randn(1, 2, 9, 9, device=device)
    assert torch.equal(create_downsample("max", stride=3, kernel_size=5)(x),
                       max_downsample(x, 3, 5))


@pytest.mark.parametrize("stride", [1, 2, 3, (2, 3), (4, 1)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_subsample_is_a_strided_slice_copied_in_the_input_format(stride, memory_format, device):
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    x = _randn(2, 3, 7, 6, device=device).contiguous(memory_format=memory_format)
    y = subsample(x, stride)
    assert torch.equal(y, x[..., ::sh, ::sw])
    assert torch.equal(Subsample(stride=stride)(x), y)
    assert y.is_contiguous(memory_format=memory_format)
    assert y.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("stride", [2, (2, 3)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_subsample_gradient_is_exact_and_in_the_input_format(stride, memory_format, device,
                                                             input_gradient):
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    x = _randn(2, 3, 7, 6, device=device).contiguous(memory_format=memory_format)
    grad_out = torch.randn(2, 3, -(-7 // sh), -(-6 // sw), device=device)
    grad = input_gradient(x, lambda t: subsample(t, stride).backward(grad_out))
    expected = torch.zeros(2, 3, 7, 6, device=device)
    expected[..., ::sh, ::sw] = grad_out
    assert torch.equal(grad, expected)
    assert grad.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("op", ["max", "avg", "subsample"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_runs_and_matches_float32(op, dtype, device):
    x = _randn(2, 3, 9, 6, device=device).to(memory_format=torch.channels_last)
    module = create_downsample(op, stride=2)
    y = module(x.to(dtype))
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y.float(), module(x.to(dtype).float()), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("op", [max_downsample, avg_downsample])
def test_gradcheck_float64_overlapping_odd(op, device):
    x = (torch.randperm(2 * 5 * 7, generator=torch.Generator().manual_seed(0))
         .double().view(1, 2, 5, 7) / 70).to(device).requires_grad_()  # distinct: no max ties
    assert torch.autograd.gradcheck(lambda t: op(t, 2, 3), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: op(t, (3, 2), (2, 1)), (x,), fast_mode=True)


@pytest.mark.parametrize("op", ["max", "avg"])
@pytest.mark.parametrize("kernel", [0, -1, (2, 0), 1.5])
def test_bad_kernel_names_the_operator(op, kernel):
    with pytest.raises((ValueError, TypeError), match=rf"shiftpool\.{op}: kernel_size must be"):
        create_downsample(op, stride=2, kernel_size=kernel)
    fn = max_downsample if op == "max" else avg_downsample
    with pytest.raises((ValueError, TypeError), match=rf"shiftpool\.{op}: kernel_size must be"):
        fn(torch.zeros(1, 1, 4, 4), 2, kernel)


def test_functional_forms_check_their_input():
    with pytest.raises(ValueError, match=r"shiftpool\.subsample: expected a 4-D input"):
        subsample(torch.zeros(4, 4))
    with pytest.raises(TypeError, match=r"shiftpool\.max: expected a floating-point input"):
        max_downsample(torch.zeros(1, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shiftpool\.avg: stride must be >= 1"):
        avg_downsample(torch.zeros(1, 1, 4, 4), 0)
