"""Paired upsamplers (downsample/upsample.py): size contract, exact placement, equivariance of
encoder–decoders at every circular shift, the official LPS unpooling, gradients, compile, ONNX.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from shiftpool.benchmarks.references import ReferenceMissing, load_lps_anchor
from shiftpool.core.errors import InputError
from shiftpool.downsample import APS, LPS, TIPS, create_downsample
from shiftpool.downsample.upsample import (
    InterpolateUpsample,
    PhaseUpsample,
    TransposedUpsample,
    create_upsample,
    is_polyphase,
)
from shiftpool.models.layers import DownsampleSpec
from shiftpool.models.segmentation import UNet

pytestmark = pytest.mark.usefixtures("one_thread")

POLYPHASE = ("aps", "lps", "tips")
SIZES = [(8, 8), (7, 9), (3, 4), (1, 1), (5, 2)]


def _randn(*shape: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _pair(name: str, channels: int = 3, stride=2, **options):
    torch.manual_seed(0)
    down = create_downsample(name, channels=channels, stride=stride).eval()
    return down, create_upsample(down, **options)


# --- size contract ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*POLYPHASE, "max", "blur"])
@pytest.mark.parametrize("size", SIZES)
def test_down_then_up_returns_the_original_size(name, size):
    down, up = _pair(name)
    x = _randn(2, 3, *size)
    y = down(x)
    assert up(y).shape == x.shape if is_polyphase(down) else up(y, size=size).shape == x.shape
    assert up(y, size=size).shape == x.shape


@pytest.mark.parametrize("method", ["bilinear", "nearest", "transposed"])
@pytest.mark.parametrize("stride", [2, 3, (2, 3)])
def test_up_then_down_returns_the_low_resolution_size(method, stride):
    up = create_upsample(None, method, channels=3, stride=stride)
    down = create_downsample("max", stride=stride)
    y = _randn(2, 3, 5, 4)
    assert down(up(y)).shape == y.shape
    sh, sw = up.stride
    assert up(y).shape == (2, 3, 5 * sh, 4 * sw)
    assert up(y, size=(5 * sh - 1, 4 * sw - 1)).shape == (2, 3, 5 * sh - 1, 4 * sw - 1)


def test_up_then_down_with_a_polyphase_pair():
    down, up = _pair("aps", stride=(2, 3))
    down(_randn(2, 3, 10, 9))
    y = _randn(2, 3, 5, 3, seed=1)
    assert down(up(y)).shape == y.shape


# --- exact values -------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [2, 3, (2, 3)])
def test_aps_pair_restores_the_kept_phase_and_zeros_the_others(stride):
    down, up = _pair("aps", stride=stride)
    x = _randn(4, 3, 12, 12)
    index = down.select(x)
    restored = up(down(x))
    sh, sw = down.stride
    for n in range(4):
        i, j = divmod(int(index[n]), sw)
        mask = torch.zeros(12, 12, dtype=torch.bool)
        mask[i::sh, j::sw] = True
        assert torch.equal(restored[n][:, mask], x[n][:, mask])
        assert torch.count_nonzero(restored[n][:, ~mask]) == 0


def test_odd_sizes_crop_the_padding():
    down, up = _pair("aps")
    x = _randn(3, 3, 7, 5)
    padded = torch.cat([x, x[:, :, :1]], dim=2)
    padded = torch.cat([padded, padded[..., :1]], dim=3)  # circular padding to 8 x 6
    down_p, up_p = _pair("aps")
    assert torch.equal(up(down(x)), up_p(down_p(padded))[..., :7, :5])


def test_filter_size_3_is_linear_interpolation_of_the_kept_phase():
    down, up = _pair("aps", channels=1, filter_size=3)
    x = _randn(1, 1, 8, 8)
    index = int(down.select(x))
    out = up(down(x))
    i, j = divmod(index, 2)
    y = x[:, :, i::2, j::2]
    # a pixel between two kept ones (same row) is their mean; a kept pixel is itself
    assert torch.allclose(out[0, 0, i, j], y[0, 0, 0, 0])
    expected = (y[0, 0, 0, 0] + y[0, 0, 0, 1]) / 2
    assert torch.allclose(out[0, 0, i, j + 1], expected)


def test_lps_training_places_the_map_with_the_soft_weights():
    torch.manual_seed(0)
    down = LPS(channels=3).train()
    up = create_upsample(down)
    x = _randn(2, 3, 6, 6)
    y = down(x)
    weights = down._choice
    assert weights.is_floating_point()
    out = up(y)
    for k in range(4):
        i, j = divmod(k, 2)
        assert torch.allclose(out[:, :, i::2, j::2], y * weights[:, k, None, None, None])


def test_tips_pair_is_the_transpose_of_its_mixing():
    torch.manual_seed(0)
    down = TIPS(channels=3)
    up = create_upsample(down)
    x, z = _randn(2, 3, 8, 8), _randn(2, 3, 4, 4, seed=1)
    y = down(x)
    # <down(x'), z> with tau fixed = <x', up(z)>: check with the recorded tau
    tau = down.mixing_weights(x)
    out = up(z)
    for k in range(4):
        i, j = divmod(k, 2)
        assert torch.allclose(out[:, :, i::2, j::2], z * tau[:, :, k, None, None])
    assert y.shape == z.shape


# --- equivariance -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["aps", "lps"])
@pytest.mark.parametrize("filter_size", [1, 3])
def test_down_up_is_equivariant_at_every_circular_shift(name, filter_size,
                                                       assert_shift_equivariant):
    down, up = _pair(name, filter_size=filter_size)
    down.double(), up.double()
    assert_shift_equivariant(lambda t: up(down(t)), _randn(2, 3, 6, 8, dtype=torch.float64),
                             atol=1e-12)


def _unet(name: str | None, circular: bool = True, **options) -> UNet:
    torch.manual_seed(0)
    spec = DownsampleSpec(name, circular=circular)
    return UNet(spec, 3, 2, channels=(3, 4, 4), **options).double().eval()


@pytest.mark.parametrize("name", ["aps", "lps"])
@pytest.mark.parametrize("filter_size", [1, 3])
def test_unet_is_exactly_equivariant_at_every_circular_shift(name, filter_size,
                                                            assert_shift_equivariant):
    net = _unet(name, filter_size=filter_size)
    # total stride 4 divides 8
    assert_shift_equivariant(net, _randn(2, 2, 8, 8, dtype=torch.float64))


def test_unet_with_max_pooling_is_not_equivariant():
    net = _unet("max")
    x = _randn(2, 2, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        error = (net(x.roll((1, 1), (2, 3))) - net(x).roll((1, 1), (2, 3))).abs().max()
    assert error > 1e-3


# --- the official LPS unpooling -----------------------------------------------------------


def _lps_anchor():
    try:
        return load_lps_anchor()
    except ReferenceMissing as missing:
        pytest.skip(str(missing))


@pytest.mark.parametrize("size", [(8, 8), (6, 10)])
def test_aps_pair_equals_the_official_max_p_norm_unpooling(size):
    layers = _lps_anchor()
    official = layers.PolyphaseInvariantUp2D(component_selection=layers.max_p_norm_u,
                                             stride=2, no_antialias=True)
    down, up = _pair("aps", channels=5)
    for seed in range(3):
        x = _randn(4, 5, *size, seed=seed)
        y = down(x)
        assert torch.equal(up(y), official(y, prob=down.select(x)))


@pytest.mark.parametrize("training", [False, True])
def test_lps_pair_equals_the_official_lps_unpooling(training):
    layers = _lps_anchor()
    official = layers.PolyphaseInvariantUp2D(component_selection=layers.LPS_u, stride=2,
                                             pass_extras=True, in_channels=5, hid_channels=5,
                                             get_samples=False, no_antialias=True)
    torch.manual_seed(0)
    down = LPS(channels=5).train(training)
    up = create_upsample(down)
    official.train(training)
    for seed in range(3):
        x = _randn(4, 5, 8, 6, seed=seed)
        y = down(x)
        with torch.no_grad():
            logits = down.scores(down.prepare(x))
        prob = (down._choice, logits) if training else logits
        torch.testing.assert_close(up(y), official(y, prob=prob), rtol=0, atol=0)


# --- gradients ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", POLYPHASE)
@pytest.mark.parametrize("filter_size", [1, 3])
def test_gradcheck_through_down_and_up(name, filter_size):
    torch.manual_seed(0)
    down = create_downsample(name, channels=2, stride=2).double().train(name != "aps")
    up = create_upsample(down, filter_size=filter_size).double()
    x = _randn(2, 2, 4, 6, dtype=torch.float64).requires_grad_()

    def run(t: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(1)  # the same Gumbel draw every time (lps in training)
        return up(down(t) * 1.5)

    assert torch.autograd.gradcheck(run, (x,))


@pytest.mark.parametrize("up", [InterpolateUpsample(2), InterpolateUpsample(2, "nearest"),
                                TransposedUpsample(2, 2)])
def test_gradcheck_of_the_natural_upsamplers(up):
    up = up.double()
    y = _randn(1, 2, 3, 3, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: up(t, size=(5, 6)), (y,))


# --- errors -------------------------------------------------------------------------------


def test_errors_are_one_line_input_errors():
    down, up = _pair("aps")
    down(_randn(2, 3, 8, 8))
    bad = [
        lambda: up(_randn(2, 3, 4, 4), size=(10, 8)),  # ceil(10 / 2) != 4
        lambda: up(_randn(3, 3, 4, 4)),  # batch differs from the selector's
        lambda: up(torch.zeros(2, 3, 4, 4, dtype=torch.long)),
        lambda: up(_randn(3, 4, 4)),
        lambda: PhaseUpsample(create_downsample("max")),
        lambda: PhaseUpsample(APS(), filter_size=2),
        lambda: create_upsample(APS(), "cubic"),
        lambda: create_upsample(None, "phase"),
        lambda: create_upsample(None, "transposed"),
        lambda: create_upsample(APS(), "bilinear", filter_size=3),
        lambda: create_upsample(APS(stride=2), "phase", stride=3),
        lambda: InterpolateUpsample(2, "bicubic"),
        lambda: TransposedUpsample(0),
    ]
    for call in bad:
        with pytest.raises(InputError) as info:
            call()
        assert "\n" not in str(info.value)


def test_tips_pair_refuses_another_channel_count():
    down, up = _pair("tips", channels=3)
    down(_randn(2, 3, 8, 8))
    with pytest.raises(InputError, match="channels"):
        up(_randn(2, 4, 4, 4))


def test_up_before_the_paired_down_ran_says_so():
    for name in POLYPHASE:
        _, up = _pair(name)
        with pytest.raises(RuntimeError, match="has not run a forward pass"):
            up(_randn(1, 3, 2, 2))


def test_deepcopy_pairs_the_copies():
    import copy

    net = _unet("aps")
    clone = copy.deepcopy(net)
    assert clone.ups[0].down is clone.downs[-1]
    x = _randn(1, 2, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), net(x))


# --- compile and ONNX ---------------------------------------------------------------------


class _DownUp(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.down = create_downsample(name, channels=3, stride=2)
        self.up = create_upsample(self.down, filter_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x), size=(x.shape[-2], x.shape[-1]))


# inductor (what users run) for one pair; the cheaper aot_eager backend, which proves the same
# fullgraph capture, for the others and the U-Net: inductor takes 10-15 s a graph on two cores
@pytest.mark.parametrize(("name", "backend"),
                         [("aps", "inductor"), ("lps", "aot_eager"), ("tips", "aot_eager")])
def test_compile_fullgraph_matches_eager(name, backend):
    module = _DownUp(name).eval()
    x = _randn(2, 3, 9, 12)
    compiled = torch.compile(module, fullgraph=True, backend=backend)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), module(x))


def test_compile_fullgraph_unet_matches_eager():
    net = _unet("aps").float()
    x = _randn(2, 2, 8, 8)
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x))


@pytest.mark.parametrize("name", ["aps", "lps"])
def test_onnx_export_with_dynamic_shapes_matches_eager(name, tmp_path):
    pytest.importorskip("onnxscript", reason="ONNX export needs the export extra")
    onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX checks need the export extra")
    from torch.export import Dim

    module = _DownUp(name).eval()
    dims = {0: Dim("batch"), 2: Dim("height", min=3), 3: Dim("width", min=3)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (_randn(2, 3, 10, 12),), dynamo=True,
                                    dynamic_shapes=(dims,), verbose=False)
    path = tmp_path / f"{name}.onnx"
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    for seed, shape in enumerate(((3, 3, 13, 7), (1, 3, 16, 17), (2, 3, 4, 4))):
        x = _randn(*shape, seed=seed)
        (got,) = session.run(None, {input_name: x.numpy()})
        with torch.no_grad():
            expected = module(x)
        torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-5, atol=1e-5)
