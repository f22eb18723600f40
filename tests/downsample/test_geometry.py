"""Tests of the shared geometry: strides, output sizes, padding and polyphase splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftpool.downsample.geometry import (
    PAD_MODES,
    _traceable_pad2d,
    check_pad_mode,
    component_views,
    output_size,
    pad2d,
    pad_to_multiple,
    pair,
    phase_grid,
    polyphase_components,
    pool_padding,
    relayout,
    select_component,
)

FAST = settings(max_examples=60, deadline=None)

# numpy.pad names of our modes; numpy extends reflect/wrap/edge to any padding size.
NUMPY_MODE = {"circular": "wrap", "reflect": "reflect", "replicate": "edge", "zero": "constant"}


# --- pair / check_pad_mode / output_size ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(1, (1, 1)), (3, (3, 3)), ((2, 3), (2, 3)), ([4, 1], (4, 1))]
)
def test_pair_returns_a_tuple_of_two_ints(value, expected):
    assert pair(value, "stride", "max") == expected


@pytest.mark.parametrize("value", [0, -1, (1, 0), (0, 2)])
def test_pair_below_minimum_names_operator_argument_and_minimum(value):
    with pytest.raises(ValueError, match=r"shiftpool\.blur: stride must be >= 1"):
        pair(value, "stride", "blur")


def test_pair_honours_a_custom_minimum():
    assert pair(0, "padding", "max", minimum=0) == (0, 0)
    with pytest.raises(ValueError, match=r"padding must be >= 0"):
        pair(-1, "padding", "max", minimum=0)


@pytest.mark.parametrize("value", [True, 2.0, "2", (1, 2, 3), (2,), (2.0, 2), (True, 1), None])
def test_pair_rejects_non_int_values(value):
    with pytest.raises(TypeError, match=r"shiftpool\.aps: stride must be an int or a pair of ints"):
        pair(value, "stride", "aps")


@pytest.mark.parametrize("mode", PAD_MODES)
def test_check_pad_mode_accepts_every_mode(mode):
    assert check_pad_mode(mode, "blur") == mode


@pytest.mark.parametrize("mode", ["constant", "zeros", "Reflect", ""])
def test_check_pad_mode_lists_allowed_modes(mode):
    with pytest.raises(ValueError, match=r"shiftpool\.blur: unknown padding mode.*circular, "
                                         r"reflect, replicate, zero"):
        check_pad_mode(mode, "blur")


@given(h=st.integers(1, 50), w=st.integers(1, 50), sh=st.integers(1, 6), sw=st.integers(1, 6))
@FAST
def test_output_size_is_ceil_division(h, w, sh, sw):
    oh, ow = output_size((h, w), (sh, sw))
    assert (oh - 1) * sh < h <= oh * sh
    assert (ow - 1) * sw < w <= ow * sw


# --- pool_padding -----------------------------------------------------------------------------


@given(size=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(1, 5))
@FAST
def test_pool_padding_gives_ceil_outputs_and_every_window_touches_the_input(size, kernel, stride):
    before, after = pool_padding(size, kernel, stride)
    out = -(-size // stride)
    assert before >= 0 and after >= 0
    assert before <= (kernel - 1) // 2
    # a max pool over the padded row yields exactly ceil(size / stride) windows
    padded = size + before + after
    assert (padded - kernel) // stride + 1 == out
    # no window lies wholly in the padding: first ends at or after 0, last starts before `size`
    assert kernel - 1 - before >= 0
    assert (out - 1) * stride - before < size


@given(size=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(1, 5))
@FAST
def test_pool_padding_makes_torch_max_pool_meet_the_size_contract(size, kernel, stride):
    x = torch.randn(1, 1, 1, size)
    before, after = pool_padding(size, kernel, stride)
    padded = F.pad(x, (before, after), value=float("-inf"))
    y = F.max_pool2d(padded, (1, kernel), (1, stride))
    assert y.shape[-1] == output_size((1, size), (1, stride))[1]
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("size", [1, 2, 7, 8, 31])
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_pool_padding_with_kernel_equal_stride_pads_only_after(size, stride):
    before, after = pool_padding(size, stride, stride)
    assert before == 0
    assert after == (-size) % stride


def test_pool_padding_documented_examples():
    assert pool_padding(32, 3, 2) == (1, 0)
    assert pool_padding(7, 2, 2) == (0, 1)
    assert pool_padding(7, 3, 2) == (1, 1)


# --- pad2d ------------------------------------------------------------------------------------


def _numpy_pad(x: torch.Tensor, pad: tuple[int, int, int, int], mode: str, value: float = 0.0):
    left, right, top, bottom = pad
    widths = [(0, 0)] * (x.dim() - 2) + [(top, bottom), (left, right)]
    kwargs = {"constant_values": value} if mode == "zero" else {}
    return torch.from_numpy(np.pad(x.numpy(), widths, mode=NUMPY_MODE[mode], **kwargs))


pads = st.tuples(*[st.integers(0, 9)] * 4)


@given(h=st.integers(1, 6), w=st.integers(1, 6), pad=pads, mode=st.sampled_from(PAD_MODES))
@FAST
def test_pad2d_matches_numpy_pad_for_any_padding_size(h, w, pad, mode):
    x = torch.randn(2, 3, h, w)
    y = pad2d(x, pad, mode)
    assert y.shape == (2, 3, h + pad[2] + pad[3], w + pad[0] + pad[1])
    torch.testing.assert_close(y, _numpy_pad(x, pad, mode), rtol=0, atol=0)


@given(h=st.integers(1, 6), w=st.integers(1, 6), pad=pads, mode=st.sampled_from(PAD_MODES))
@FAST
def test_pad2d_matches_torch_pad_where_torch_allows_the_size(h, w, pad, mode):
    left, right, top, bottom = pad
    if mode == "reflect" and not (max(left, right) < w and max(top, bottom) < h):
        return  # torch: reflect padding must be smaller than the dimension
    if mode == "circular" and not (max(left, right) <= w and max(top, bottom) <= h):
        return  # torch: circular padding at most the dimension
    x = torch.randn(1, 2, h, w)
    torch_mode = "constant" if mode == "zero" else mode
    torch.testing.assert_close(pad2d(x, pad, mode), F.pad(x, pad, mode=torch_mode), rtol=0, atol=0)


@given(h=st.integers(1, 6), w=st.integers(1, 6), pad=pads, mode=st.sampled_from(PAD_MODES))
@FAST
def test_traceable_pad2d_used_for_export_matches_numpy_pad(h, w, pad, mode):
    x = torch.randn(2, 3, h, w)
    torch.testing.assert_close(_traceable_pad2d(x, pad, mode, 0.0), _numpy_pad(x, pad, mode),
                               rtol=0, atol=0)


class _PadToMultiple(torch.nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x):
        return pad_to_multiple(x, (2, 3), self.mode)


@pytest.mark.parametrize("mode", PAD_MODES)
def test_pad_to_multiple_exports_one_graph_for_every_size(mode):
    from torch.export import Dim

    module = _PadToMultiple(mode)
    dims = {0: Dim("batch"), 2: Dim("height", min=2), 3: Dim("width", min=2)}
    program = torch.export.export(module, (torch.randn(2, 3, 8, 9),), dynamic_shapes=(dims,))
    for shape in [(1, 3, 7, 5), (3, 3, 8, 9), (2, 3, 3, 16)]:
        x = torch.randn(shape)
        torch.testing.assert_close(program.module()(x), module(x), rtol=0, atol=0)


def test_pad2d_larger_than_input_examples():
    row = torch.arange(3.0).view(1, 1, 1, 3)
    expected = {
        "circular": [2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0],
        "reflect": [0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2],
        "replicate": [0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2],
        "zero": [0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0],
    }
    for mode, values in expected.items():
        got = pad2d(row, (4, 4, 0, 0), mode)
        assert got.flatten().tolist() == values, mode


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate"])
def test_pad2d_of_a_single_pixel_repeats_it(mode):
    x = torch.tensor([[[[5.0]]]])
    assert torch.equal(pad2d(x, (3, 2, 1, 4), mode), torch.full((1, 1, 6, 6), 5.0))


def test_pad2d_zero_mode_uses_value():
    x = torch.zeros(1, 1, 2, 2)
    y = pad2d(x, (1, 0, 0, 1), "zero", value=float("-inf"))
    assert torch.isneginf(y).sum() == 5
    assert torch.equal(y[..., :2, 1:], x)


def test_pad2d_without_padding_returns_the_input():
    x = torch.randn(1, 2, 3, 4)
    assert pad2d(x, (0, 0, 0, 0), "reflect") is x


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("pad", [(1, 1, 1, 1), (5, 0, 0, 5)])
@pytest.mark.parametrize("mode", PAD_MODES)
def test_pad2d_keeps_dtype(dtype, pad, mode):
    x = torch.randn(1, 2, 3, 3).to(dtype)
    assert pad2d(x, pad, mode).dtype == dtype


def test_pad2d_propagates_gradients_to_every_source_pixel():
    x = torch.randn(1, 1, 2, 3, dtype=torch.float64, requires_grad=True)
    # a 6 x 9 circular padding of a 2 x 3 map holds every pixel 3 x 3 times
    pad2d(x, (3, 3, 2, 2), "circular").sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 9.0))


# --- pad_to_multiple --------------------------------------------------------------------------


@given(
    h=st.integers(1, 9), w=st.integers(1, 9), sh=st.integers(1, 4), sw=st.integers(1, 4),
    mode=st.sampled_from(PAD_MODES),
)
@FAST
def test_pad_to_multiple_pads_bottom_right_to_the_next_multiple(h, w, sh, sw, mode):
    x = torch.randn(1, 2, h, w)
    y = pad_to_multiple(x, (sh, sw), mode)
    assert y.shape[-2:] == (-(-h // sh) * sh, -(-w // sw) * sw)
    assert torch.equal(y[..., :h, :w], x)
    torch.testing.assert_close(y, pad2d(x, (0, y.shape[-1] - w, 0, y.shape[-2] - h), mode))


def test_pad_to_multiple_returns_the_input_when_it_already_fits():
    x = torch.randn(1, 1, 6, 4)
    assert pad_to_multiple(x, (3, 2), "zero") is x


def test_pad_to_multiple_zero_mode_uses_value():
    y = pad_to_multiple(torch.zeros(1, 1, 3, 3), (2, 2), "zero", value=-1.0)
    assert (y[..., 3, :] == -1).all() and (y[..., :, 3] == -1).all()


# --- phase_grid, component_views, polyphase_components, select_component ---------------------


@given(
    n=st.integers(1, 3), c=st.integers(1, 3), oh=st.integers(1, 4), ow=st.integers(1, 4),
    sh=st.integers(1, 4), sw=st.integers(1, 4),
)
@FAST
def test_polyphase_component_k_is_the_strided_slice(n, c, oh, ow, sh, sw):
    x = torch.randn(n, c, oh * sh, ow * sw)
    p = polyphase_components(x, (sh, sw))
    assert p.shape == (n, sh * sw, c, oh, ow)
    for i in range(sh):
        for j in range(sw):
            assert torch.equal(p[:, i * sw + j], x[..., i::sh, j::sw])


def test_polyphase_components_of_channels_last_input():
    x = torch.randn(2, 3, 4, 6).to(memory_format=torch.channels_last)
    p = polyphase_components(x, (2, 3))
    assert torch.equal(p[:, 4], x[..., 1::2, 1::3])


def test_polyphase_documented_example():
    p = polyphase_components(torch.arange(16.0).view(1, 1, 4, 4), (2, 2))
    assert p[0, 1, 0].tolist() == [[1.0, 3.0], [9.0, 11.0]]


def test_phase_grid_is_a_view_with_component_ij_at_grid_i_j():
    x = torch.randn(2, 3, 4, 6).to(memory_format=torch.channels_last)
    grid = phase_grid(x, (2, 3))
    assert grid.shape == (2, 3, 2, 2, 2, 3) and grid.data_ptr() == x.data_ptr()
    for i in range(2):
        for j in range(3):
            assert torch.equal(grid[:, :, :, i, :, j], x[..., i::2, j::3])


@pytest.mark.parametrize("stride", [(1, 1), (2, 3), (3, 1)])
def test_component_views_are_the_strided_slices_in_order_k(stride):
    sh, sw = stride
    x = torch.randn(2, 3, 2 * sh, 3 * sw)
    views = component_views(x, stride)
    assert len(views) == sh * sw
    for k, view in enumerate(views):
        assert torch.equal(view, x[..., k // sw::sh, k % sw::sw])
        assert view.data_ptr() == x[..., k // sw::sh, k % sw::sw].data_ptr()  # no copy


@given(n=st.integers(1, 5), sh=st.integers(1, 3), sw=st.integers(1, 3))
@FAST
def test_select_component_picks_one_component_per_sample(n, sh, sw):
    x = torch.randn(n, 2, 3 * sh, 3 * sw)
    index = torch.randint(0, sh * sw, (n,))
    out = select_component(x, index, (sh, sw))
    assert out.shape == (n, 2, 3, 3)
    components = polyphase_components(x, (sh, sw))
    for s in range(n):
        assert torch.equal(out[s], components[s, index[s]])


def test_select_component_passes_gradient_only_to_the_chosen_component():
    x = torch.randn(2, 1, 4, 4, requires_grad=True)
    select_component(x, torch.tensor([3, 0]), (2, 2)).sum().backward()
    chosen = torch.zeros(2, 1, 4, 4)
    chosen[0, :, 1::2, 1::2] = 1
    chosen[1, :, 0::2, 0::2] = 1
    assert torch.equal(x.grad, chosen)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_select_component_gradient_is_exact_and_in_the_input_layout(layout, dtype,
                                                                    input_gradient):
    # a contiguous gradient reaching a channels_last network slows every layer before it
    x = torch.randn(3, 5, 6, 9, dtype=dtype).contiguous(memory_format=layout)
    index = torch.tensor([4, 0, 5])
    grad_out = torch.randn(3, 5, 3, 3, dtype=dtype)
    grad = input_gradient(x, lambda t: select_component(t, index, (2, 3)).backward(grad_out))
    expected = torch.zeros(3, 5, 6, 9, dtype=dtype)
    for s, k in enumerate(index.tolist()):
        expected[s, :, k // 3 :: 2, k % 3 :: 3] = grad_out[s]
    assert torch.equal(grad, expected)
    assert grad.is_contiguous(memory_format=layout)



@pytest.mark.parametrize(("source", "target"), [(torch.contiguous_format, torch.channels_last),
                                                (torch.channels_last, torch.contiguous_format)])
def test_relayout_gives_the_gradient_back_in_the_source_layout(source, target, input_gradient):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64).contiguous(memory_format=source)
    grad_out = torch.randn(2, 3, 4, 5, dtype=torch.float64).contiguous(memory_format=target)
    moved = []

    def backward(t: torch.Tensor) -> None:
        moved.append(relayout(t, target))
        moved[0].backward(grad_out)

    grad = input_gradient(x, backward)
    assert moved[0].is_contiguous(memory_format=target) and torch.equal(moved[0], x)
    assert torch.equal(grad, grad_out) and grad.is_contiguous(memory_format=source)


def test_relayout_returns_a_tensor_already_in_the_layout_itself():
    x = torch.randn(1, 2, 3, 3).contiguous(memory_format=torch.channels_last)
    assert relayout(x, torch.channels_last) is x
