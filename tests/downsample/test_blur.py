"""blur and maxblur: equal to a direct convolution with the binomial filter, under the contract.

The operator tests take the ``device`` of ``tests/conftest.py`` (``--device``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from shiftpool.downsample import (
    BlurDownsample,
    MaxBlurDownsample,
    binomial_filter,
    blur_downsample,
    create_downsample,
    maxblur_downsample,
)
from shiftpool.downsample.geometry import PAD_MODES, pad2d

TORCH_PAD = {"reflect": "reflect", "replicate": "replicate", "circular": "circular",
             "zero": "constant"}


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32,
           device: torch.device | str = "cpu") -> torch.Tensor:
    """Seeded ``torch.randn`` drawn on the CPU (the same values everywhere), moved to ``device``."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)


def _direct_blur(x: torch.Tensor, stride, filter_size: int, mode: str) -> torch.Tensor:
    """Reference: F.pad by ((f-1)//2, f//2), depthwise F.conv2d with the binomial filter."""
    c, f = x.shape[1], filter_size
    before, after = (f - 1) // 2, f // 2
    padded = F.pad(x, (before, after, before, after), mode=TORCH_PAD[mode])
    weight = binomial_filter(f, x.dtype, x.device).expand(c, 1, f, f)
    return F.conv2d(padded, weight, stride=stride, groups=c)


@pytest.mark.parametrize(("filter_size", "row"), [
    (1, [1.0]), (2, [1, 1]), (3, [1, 2, 1]), (4, [1, 3, 3, 1]), (5, [1, 4, 6, 4, 1]),
    (7, [1, 6, 15, 20, 15, 6, 1]),
])
def test_binomial_filter_is_the_normalised_outer_product(filter_size, row):
    row = torch.tensor(row, dtype=torch.float64)
    expected = torch.outer(row, row) / row.sum() ** 2
    assert torch.equal(binomial_filter(filter_size, torch.float64), expected)
    assert binomial_filter(filter_size).sum().item() == 1.0


CASES = [(1, (8, 8)), (2, (9, 7)), (3, (6, 11)), ((2, 3), (9, 7)), ((3, 1), (8, 10))]


@pytest.mark.parametrize("mode", PAD_MODES)
@pytest.mark.parametrize("filter_size", [2, 3, 4, 5])
def test_blur_equals_direct_convolution_with_the_binomial_filter(mode, filter_size, device):
    first = (filter_size + PAD_MODES.index(mode)) % len(CASES)  # every stride meets every mode
    for stride, (h, w) in (CASES[first], CASES[(first + 2) % len(CASES)]):
        x = _randn(2, 3, h, w, seed=h + w, device=device)
        expected = _direct_blur(x, stride, filter_size, mode)
        torch.testing.assert_close(blur_downsample(x, stride, filter_size, mode), expected)
        module = BlurDownsample(channels=3, stride=stride, filter_size=filter_size, padding=mode)
        torch.testing.assert_close(module.to(device)(x), expected)


@pytest.mark.parametrize("mode", PAD_MODES)
def test_blur_of_tiny_maps_pads_beyond_the_map_as_geometry_does(mode, device):
    # F.pad refuses a reflect padding as wide as the map; shiftpool's pad2d does not
    for h, w, f, stride in [(1, 1, 3, 2), (1, 5, 5, 2), (2, 3, 7, (1, 3)), (3, 1, 4, 4)]:
        x = _randn(1, 2, h, w, seed=h * w, device=device)
        before, after = (f - 1) // 2, f // 2
        padded = pad2d(x, (before, after, before, after), mode)
        weight = binomial_filter(f, device=device).expand(2, 1, f, f)
        expected = F.conv2d(padded, weight, stride=stride, groups=2)
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
        got = blur_downsample(x, stride, f, mode)
        assert got.shape == (1, 2, math.ceil(h / sh), math.ceil(w / sw))
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("stride", [1, 2, 3, 4, (2, 3), (3, 1)])
@pytest.mark.parametrize("size", [(1, 1), (1, 6), (5, 1), (7, 9), (16, 15)])
def test_output_size_contract(stride, size, device):
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    x = _randn(2, 3, *size, device=device)
    expected = (2, 3, math.ceil(size[0] / sh), math.ceil(size[1] / sw))
    assert blur_downsample(x, stride).shape == expected
    assert maxblur_downsample(x, stride, kernel_size=3).shape == expected


def test_filter_size_one_is_plain_subsampling_and_stride_one_keeps_the_size(device):
    x = _randn(2, 3, 7, 8, device=device)
    assert torch.equal(blur_downsample(x, (2, 3), filter_size=1), x[..., ::2, ::3])
    assert blur_downsample(x, 1).shape == x.shape


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_constant_maps_stay_constant(mode, device):
    x = torch.full((1, 2, 7, 5), 3.0, device=device)
    assert torch.equal(blur_downsample(x, 2, 4, mode), torch.full((1, 2, 4, 3), 3.0, device=device))


def test_zero_padding_darkens_the_border(device):
    y = blur_downsample(torch.ones(1, 1, 6, 6, device=device), 2, 3, "zero")
    assert y[0, 0, 0, 0] == 9 / 16 and y[0, 0, 1, 1] == 1.0


def _maxblur_formula(x: torch.Tensor, stride, kernel, filter_size: int, mode: str):
    """The documented formula: max over the windows inside the map (unfold), then per axis
    ``pad(M, (f-1)//2, (out-1)*s + f - L - (f-1)//2)`` in ``mode`` and a strided conv."""
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    kh, kw = min(kh, x.shape[-2]), min(kw, x.shape[-1])
    maxed = x.unfold(2, kh, 1).unfold(3, kw, 1).amax(dim=(-2, -1))
    f = filter_size
    before = (f - 1) // 2
    after = [(math.ceil(size / s) - 1) * s + f - length - before
             for size, s, length in ((x.shape[-2], sh, maxed.shape[-2]),
                                     (x.shape[-1], sw, maxed.shape[-1]))]
    maxed = maxed[..., : maxed.shape[-2] + min(after[0], 0), : maxed.shape[-1] + min(after[1], 0)]
    padded = pad2d(maxed, (before, max(after[1], 0), before, max(after[0], 0)), mode)
    weight = binomial_filter(f, x.dtype, x.device).expand(x.shape[1], 1, f, f)
    return F.conv2d(padded, weight, stride=(sh, sw), groups=x.shape[1])


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, (2, 3)])
@pytest.mark.parametrize("stride", [2, (3, 2)])
@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_maxblur_equals_the_documented_formula(kernel, stride, requires_grad, device):
    """Both max paths (running maxima for inference, torch's pool with autograd) give the
    formula of the module docstring exactly, for every padding mode, size and filter."""
    for mode, (h, w), f in [("reflect", (9, 8), 3), ("zero", (8, 9), 3), ("zero", (7, 7), 4),
                            ("replicate", (10, 5), 5), ("circular", (6, 7), 2),
                            ("reflect", (3, 2), 1), ("zero", (1, 4), 3)]:
        x = _randn(2, 3, h, w, seed=h * w, device=device).requires_grad_(requires_grad)
        with torch.no_grad():
            expected = _maxblur_formula(x, stride, kernel, f, mode)
        got = maxblur_downsample(x, stride, kernel, f, mode)
        torch.testing.assert_close(got, expected, rtol=0, atol=0,
                                   msg=lambda m, mode=mode: f"{mode}: {m}")
        module = MaxBlurDownsample(channels=3, stride=stride, kernel_size=kernel, filter_size=f,
                                   padding=mode).to(device)
        torch.testing.assert_close(module(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("mode", PAD_MODES)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_maxblur_and_blur_gradients_equal_those_of_the_formula(mode, memory_format, device):
    """The training path (channels_last max pool, padded copy with a hand-written backward)
    has the gradient of the plain formula."""
    x = _randn(2, 3, 9, 8, dtype=torch.float64, device=device)
    x = x.contiguous(memory_format=memory_format).requires_grad_()
    for f in (3, 4):
        got = maxblur_downsample(x, 2, 2, f, mode)
        assert got.is_contiguous(memory_format=memory_format)
        grad = torch.randn_like(got)
        expected = _maxblur_formula(x, 2, 2, f, mode)
        for g, e in zip(torch.autograd.grad(got, x, grad), torch.autograd.grad(expected, x, grad),
                        strict=True):
            torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
        got = blur_downsample(x, 2, f, mode)
        expected = _direct_blur(x.contiguous(), 2, f, mode)
        for g, e in zip(torch.autograd.grad(got, x, grad), torch.autograd.grad(expected, x, grad),
                        strict=True):
            torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


def test_maxblur_matches_the_issue_example_and_keeps_the_size_on_odd_sizes():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    expected = torch.tensor([[3.75, 4.5], [6.75, 7.5]]).view(1, 1, 2, 2)  # kornia's values
    assert torch.equal(maxblur_downsample(x, padding="zero"), expected)
    assert maxblur_downsample(torch.zeros(1, 1, 17, 9)).shape == (1, 1, 9, 5)


def _zhang_maxblur(x: torch.Tensor, filter_size: int) -> torch.Tensor:
    """Zhang's MaxBlurPool (antialiased-cnns: ``MaxPool2d(2, stride=1)`` then ``BlurPool``,
    reflect padding ``[(f-1)//2, ceil((f-1)/2)]`` on each side), written from its description."""
    f = filter_size
    maxed = F.max_pool2d(x, 2, 1)
    padded = F.pad(maxed, ((f - 1) // 2, f // 2, (f - 1) // 2, f // 2), mode="reflect")
    weight = binomial_filter(f, x.dtype, x.device).expand(x.shape[1], 1, f, f)
    return F.conv2d(padded, weight, stride=2, groups=x.shape[1])


@pytest.mark.parametrize("filter_size", [2, 3, 4, 5])
@pytest.mark.parametrize("size", [(8, 8), (9, 7), (16, 13)])
def test_maxblur_equals_zhang_on_the_references_rows(filter_size, size, device):
    x = _randn(2, 4, *size, seed=filter_size, device=device)
    reference = _zhang_maxblur(x, filter_size)
    got = maxblur_downsample(x, 2, 2, filter_size, "reflect")
    rows, cols = reference.shape[-2:]
    assert torch.equal(got[..., :rows, :cols], reference)
    if size[0] % 2 == 0 and size[1] % 2 == 0:
        assert got.shape == reference.shape  # even sizes: the whole output


@pytest.mark.parametrize("filter_size", [3, 5])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_maxblur_equals_antialiased_cnns_if_installed(filter_size, memory_format):
    aa = pytest.importorskip("antialiased_cnns", reason="antialiased-cnns is not installed "
                             "(CC BY-NC-SA: never a dependency; pip install antialiased-cnns)")
    reference = torch.nn.Sequential(torch.nn.MaxPool2d(2, 1),
                                    aa.BlurPool(4, filt_size=filter_size, stride=2))
    x = _randn(2, 4, 12, 12).contiguous(memory_format=memory_format)
    assert torch.equal(maxblur_downsample(x, 2, 2, filter_size), reference(x))


@pytest.mark.parametrize("kernel", [2, 3])
@pytest.mark.parametrize("filter_size", [2, 3, 4, 5])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_maxblur_equals_kornia_bit_for_bit(kernel, filter_size, memory_format, requires_grad):
    kornia = pytest.importorskip("kornia", reason="kornia is not installed (bench extra)")
    for size in [(8, 8), (9, 7), (14, 11)]:
        x = _randn(2, 4, *size, seed=sum(size)).contiguous(memory_format=memory_format)
        reference = kornia.filters.MaxBlurPool2D(filter_size, 2, kernel)(x)
        got = maxblur_downsample(x.requires_grad_(requires_grad), 2, kernel, filter_size, "zero")
        rows, cols = reference.shape[-2:]
        assert torch.equal(got[..., :rows, :cols], reference), size


@pytest.mark.parametrize("filter_size", [2, 3, 4, 5])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_blur_zero_padding_equals_kornia_bit_for_bit(filter_size, memory_format):
    kornia = pytest.importorskip("kornia", reason="kornia is not installed (bench extra)")
    for size in [(8, 8), (9, 7)]:
        x = _randn(2, 4, *size).contiguous(memory_format=memory_format)
        reference = kornia.filters.BlurPool2D(filter_size, 2)(x)
        assert torch.equal(blur_downsample(x, 2, filter_size, "zero"), reference)


@pytest.mark.parametrize("filter_size", [3, 5])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("channels", [None, 4])
def test_blur_equals_timm_bit_for_bit(filter_size, memory_format, channels):
    """timm's BlurPool2d pads ``(s - 1 + f - 1) // 2`` on every side: ours for odd ``f``."""
    layers = pytest.importorskip("timm.layers", reason="timm is not installed (bench extra)")
    reference = layers.BlurPool2d(channels, filt_size=filter_size, stride=2)
    module = BlurDownsample(channels=channels, filter_size=filter_size)
    for size in [(8, 8), (9, 7), (16, 15)]:
        x = _randn(2, 4, *size).contiguous(memory_format=memory_format)
        assert torch.equal(module(x), reference(x)), size


def test_maxblur_kernel_defaults_to_the_stride(device):
    x = _randn(1, 2, 9, 9, device=device)
    assert MaxBlurDownsample(stride=3).kernel_size == (3, 3)
    torch.testing.assert_close(create_downsample("maxblur", stride=3).to(device)(x),
                               maxblur_downsample(x, 3, 3))


def test_filter_is_a_non_persistent_buffer_built_for_the_channels():
    module = BlurDownsample(channels=5, filter_size=4)
    assert module.filter.shape == (5, 1, 4, 4)
    assert "filter" in dict(module.named_buffers())
    assert module.state_dict() == {}
    assert list(module.parameters()) == []
    assert module.double().filter.dtype == torch.float64
    assert BlurDownsample(channels=None).filter.shape == (1, 1, 3, 3)


def test_any_channel_count_without_channels_matches_a_built_module(device):
    x = _randn(2, 6, 9, 9, device=device)
    blur, built = BlurDownsample().to(device), BlurDownsample(channels=6).to(device)
    torch.testing.assert_close(blur(x), built(x), rtol=0, atol=0)
    maxblur = MaxBlurDownsample().to(device)
    torch.testing.assert_close(maxblur(x), maxblur_downsample(x), rtol=0, atol=0)


@pytest.mark.parametrize("op", ["blur", "maxblur"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size", [(8, 8), (1, 5), (7, 2)])
def test_memory_format_is_kept(op, memory_format, size, device):
    x = _randn(2, 4, *size, device=device).contiguous(memory_format=memory_format)
    y = create_downsample(op, channels=4).to(device)(x)
    assert y.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("op", ["blur", "maxblur"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_half_precision_matches_float32(op, dtype, requires_grad, device):
    x = _randn(2, 4, 9, 8, device=device).to(memory_format=torch.channels_last)
    module = create_downsample(op, channels=4).to(device)
    low = x.to(dtype).requires_grad_(requires_grad)
    y = module(low)
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    reference = x.to(dtype).float().requires_grad_(requires_grad)
    expected = module(reference)
    torch.testing.assert_close(y.float(), expected, rtol=1e-2, atol=1e-2)
    if requires_grad:
        y.float().sum().backward()
        expected.sum().backward()
        assert low.grad.dtype == dtype
        torch.testing.assert_close(low.grad.float(), reference.grad, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("mode", PAD_MODES)
def test_gradcheck_float64(mode, device):
    x = _randn(1, 2, 5, 6, dtype=torch.float64, device=device).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: blur_downsample(t, 2, 4, mode), (x,),
                                    fast_mode=True)
    distinct = (torch.randperm(60, generator=torch.Generator().manual_seed(1)).double()
                .view(1, 2, 5, 6) / 60).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: maxblur_downsample(t, 2, 3, 3, mode), (distinct,),
                                    fast_mode=True)


@pytest.mark.parametrize("op", ["blur", "maxblur"])
@pytest.mark.parametrize("size", [0, -1, 2.0, True])
def test_filter_size_below_one_or_not_an_int_is_refused(op, size):
    with pytest.raises(ValueError, match=rf"shiftpool\.{op}: filter_size must be an integer >= 1"):
        create_downsample(op, channels=3, filter_size=size)
    fn = blur_downsample if op == "blur" else maxblur_downsample
    with pytest.raises(ValueError, match=rf"shiftpool\.{op}: filter_size must be an integer >= 1"):
        fn(torch.zeros(1, 3, 4, 4), filter_size=size)


@pytest.mark.parametrize("op", ["blur", "maxblur"])
def test_unknown_padding_mode_lists_the_allowed_ones(op):
    allowed = ", ".join(PAD_MODES)
    with pytest.raises(ValueError, match=rf"shiftpool\.{op}: unknown padding mode 'symmetric'; "
                                         rf"allowed: {allowed}"):
        create_downsample(op, channels=3, padding="symmetric")
    fn = blur_downsample if op == "blur" else maxblur_downsample
    with pytest.raises(ValueError, match=rf"shiftpool\.{op}: unknown padding mode"):
        fn(torch.zeros(1, 3, 4, 4), padding="constant")


def test_channel_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"shiftpool\.blur: this module was built for 3 channels"):
        BlurDownsample(channels=3)(torch.zeros(1, 4, 8, 8))


class _ConvBackwardDtypes(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the dtypes of the inputs of every convolution backward that runs."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: list[torch.dtype] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution_backward.default:
            self.dtypes += [args[0].dtype, args[1].dtype]  # grad_output, input
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("op", ["blur", "maxblur"])
@pytest.mark.parametrize("padding", ["reflect", "zero"])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("autocast", [torch.bfloat16, torch.float16])
def test_depthwise_backward_runs_in_float32_inside_cpu_autocast(op, padding, input_dtype,
                                                                autocast):
    """The float32 fallback holds inside ``torch.autocast("cpu")``: autocast would otherwise
    cast the float32 convolution back to bf16/fp16 (whose CPU backward is ~10x slower)."""
    module = create_downsample(op, channels=4, padding=padding)
    x = _randn(2, 4, 10, 10, dtype=input_dtype).to(memory_format=torch.channels_last)
    x.requires_grad_()
    recorder = _ConvBackwardDtypes()
    with torch.autocast("cpu", dtype=autocast):
        y = module(x)
    assert y.dtype == autocast  # what the convolution gives under autocast
    assert y.is_contiguous(memory_format=torch.channels_last)
    with recorder:
        y.float().sum().backward()
    assert recorder.dtypes == [torch.float32, torch.float32]
    assert x.grad.dtype == input_dtype
    with torch.autocast("cpu", dtype=autocast), torch.no_grad():
        assert module(x).dtype == autocast  # inference keeps autocast's fast forward


def test_float64_inside_cpu_autocast_stays_float64():
    x = _randn(1, 2, 6, 6, dtype=torch.float64).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert blur_downsample(x).dtype == torch.float64


class _PoolPaddings(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the padding of every max pool with indices that runs."""

    def __init__(self) -> None:
        super().__init__()
        self.paddings: list[list[int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.max_pool2d_with_indices.default:
            self.paddings.append(list(args[3]) if len(args) > 3 else [0, 0])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("mode", PAD_MODES)
@pytest.mark.parametrize(("dtype", "autocast"), [(torch.float64, False), (torch.float32, False),
                                                 (torch.bfloat16, False), (torch.float32, True),
                                                 (torch.bfloat16, True)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_maxblur_pooled_padding_path_equals_the_general_path(mode, dtype, autocast,
                                                             memory_format, monkeypatch):
    """The training path that pads through the max pool itself (k = 2, f = 3, even sizes: no
    padded copy) gives the general path's values, gradients, dtypes and strides bit for bit."""
    from shiftpool.downsample import blur

    module = create_downsample("maxblur", channels=4, padding=mode).to(dtype)
    base = _randn(2, 4, 8, 10, seed=3).relu().to(dtype).contiguous(memory_format=memory_format)
    results = []
    for pooled in (True, False):
        if not pooled:
            monkeypatch.setattr(blur, "_pooled_blur_pad", lambda *args: None)
        x = base.clone().requires_grad_()
        recorder = _PoolPaddings()
        with recorder, torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            y = module(x)
        # zero padding in float32 without autocast keeps the convolution's own padding
        takes_pooled = mode != "zero" or dtype == torch.bfloat16 or autocast
        assert recorder.paddings == [[1, 1] if pooled and takes_pooled else [0, 0]]
        y.backward(_randn(*y.shape, seed=4).to(y.dtype))
        results.append((y, x.grad))
    (y, grad), (expected_y, expected_grad) = results
    assert torch.equal(y, expected_y) and y.dtype == expected_y.dtype
    assert y.stride() == expected_y.stride()
    assert torch.equal(grad, expected_grad) and grad.stride() == expected_grad.stride()


@pytest.mark.parametrize("op", ["blur", "maxblur"])
@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize("filter_size", [3, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inference_by_border_strips_equals_the_padded_convolution(op, mode, filter_size, dtype,
                                                                  monkeypatch):
    """Inference in channels_last filters without a padded copy (zero-padded convolution, border
    rows and columns again from padded strips): equal bit for bit to the padded convolution,
    on even and odd sizes and strides."""
    from shiftpool.downsample import blur

    used = []
    applies = blur._border_strips_apply
    monkeypatch.setattr(blur, "_border_strips_apply",
                        lambda *args: used.append(applies(*args)) or used[-1])
    cases = [((8, 8), 2), ((9, 7), 2), ((16, 13), (2, 3)), ((12, 12), 3)]
    if op == "maxblur":  # the max-pooled map is padded alike on both sides on even sizes only
        cases = [((8, 8), 2), ((16, 12), 2), ((12, 12), 3)]
    for size, stride in cases:
        x = _randn(2, 5, *size, seed=sum(size)).to(dtype).contiguous(
            memory_format=torch.channels_last)
        module = create_downsample(op, channels=5, stride=stride, filter_size=filter_size,
                                   padding=mode).to(dtype)
        used.clear()
        with torch.no_grad():
            got = module(x)
        assert used == [True], size
        with monkeypatch.context() as patch:
            patch.setattr(blur, "_border_strips_apply", lambda *args: False)
            with torch.no_grad():
                expected = module(x)
        assert torch.equal(got, expected) and got.stride() == expected.stride(), size


@pytest.mark.parametrize("op", ["blur", "maxblur"])
@pytest.mark.parametrize("mode", PAD_MODES)
@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_bf16_forward_of_the_fallback_equals_the_float32_path(op, mode, autocast, memory_format,
                                                              monkeypatch):
    """A bf16 blur that needs a gradient filters forward in bf16 and backward in float32:
    values, gradients and strides equal bit for bit those of filtering in float32."""
    from shiftpool.downsample import blur

    applies = blur._low_forward_applies
    used: list[bool] = []

    def spy(*args) -> bool:
        used.append(applies(*args))
        return used[-1]

    results = []
    for low in (True, False):
        monkeypatch.setattr(blur, "_low_forward_applies", spy if low else (lambda *args: False))
        for size, f in [((8, 8), 3), ((9, 7), 4), ((16, 13), 5)]:
            x = _randn(2, 5, *size, seed=f).bfloat16().contiguous(
                memory_format=memory_format).requires_grad_()
            module = create_downsample(op, channels=5, filter_size=f, padding=mode)
            with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                y = module(x)
            y.backward(_randn(*y.shape, seed=1).bfloat16())
            results.append((low, y, x.grad))
        if low and op == "blur":
            assert used and all(used)
    half = len(results) // 2
    for (_, y, grad), (_, expected_y, expected_grad) in zip(results[:half], results[half:],
                                                            strict=True):
        assert torch.equal(y, expected_y) and y.stride() == expected_y.stride()
        assert torch.equal(grad, expected_grad) and grad.stride() == expected_grad.stride()


@pytest.mark.parametrize("size", [(8, 8), (7, 5), (2, 2)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_maxblur_input_gradient_comes_back_in_the_input_layout(size, layout, input_gradient):
    # maxblur pools in channels_last inside
    layer = MaxBlurDownsample(channels=3, stride=2).train()
    x = torch.randn(2, 3, *size).contiguous(memory_format=layout)
    grad = input_gradient(x, lambda t: layer(t).square().sum().backward())
    assert grad.is_contiguous(memory_format=layout)
