"""Every bad input of issue 2 raises a clear error naming the operator and what is allowed."""

from __future__ import annotations

import re

import pytest
import torch

from shiftpool.downsample import create_downsample, downsample_options, list_downsamples

OPS = list_downsamples()


def _module(name: str, channels: int | None = 3, training: bool = False, **options):
    torch.manual_seed(0)
    return create_downsample(name, channels=channels, stride=2, **options).train(training)


# --- inputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("shape", [(3, 8, 8), (8, 8), (1, 3, 8, 8, 1), (2, 1, 3, 8, 8)])
def test_wrong_rank(name, training, shape):
    with pytest.raises(ValueError, match=rf"shiftpool\.{name}: expected a 4-D input \(N, C, H, W\)"
                                         rf", got shape \({', '.join(map(str, shape))},?\)"):
        _module(name, training=training)(torch.zeros(shape))


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("shape", [(0, 3, 8, 8), (2, 3, 0, 8), (2, 3, 8, 0)])
def test_zero_size_dimension(name, training, shape):
    with pytest.raises(ValueError, match=rf"shiftpool\.{name}: every dimension of the input must "
                                         rf"be >= 1, got shape \({', '.join(map(str, shape))}\)"):
        _module(name, training=training)(torch.zeros(shape))


@pytest.mark.parametrize("name", OPS)
def test_zero_channels(name):
    with pytest.raises(ValueError, match=rf"shiftpool\.{name}: .*got shape \(2, 0, 8, 8\)"):
        _module(name, channels=None if _accepts_any_channels(name) else 3)(torch.zeros(2, 0, 8, 8))


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool,
                                   torch.complex64])
def test_non_floating_dtype(name, dtype):
    with pytest.raises(TypeError, match=rf"shiftpool\.{name}: expected a floating-point input "
                                        rf"\(float16, bfloat16, float32, float64\), got "
                                        rf"{dtype}"):
        _module(name)(torch.zeros(2, 3, 8, 8, dtype=dtype))


@pytest.mark.parametrize("name", OPS)
def test_not_a_tensor(name):
    with pytest.raises(TypeError, match=rf"shiftpool\.{name}: expected a torch\.Tensor, got list"):
        _module(name)([[0.0]])


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("channels", [1, 2, 4])
def test_channel_count_other_than_built_for(name, training, channels):
    with pytest.raises(ValueError, match=rf"shiftpool\.{name}: this module was built for 3 "
                                         rf"channels, got an input with {channels}"):
        _module(name, training=training)(torch.zeros(2, channels, 8, 8))


# --- construction -----------------------------------------------------------------------------


def _accepts_any_channels(name: str) -> bool:
    """Whether ``name`` has no parameters, so that it may be built without ``channels``."""
    return not any(True for _ in _module(name).parameters())


@pytest.mark.parametrize("name", OPS)
def test_channels_none_works_exactly_for_parameter_free_operators(name):
    if _accepts_any_channels(name):
        module = _module(name, channels=None)
        assert module(torch.randn(1, 5, 4, 4)).shape == (1, 5, 2, 2)
    else:
        with pytest.raises((TypeError, ValueError), match=rf"shiftpool\.{name}: .*channels"):
            _module(name, channels=None)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("channels", [0, -2, True, 2.0, "3"])
def test_bad_channels(name, channels):
    with pytest.raises(ValueError, match=rf"shiftpool\.{name}: channels must be an integer >= 1"):
        create_downsample(name, channels=channels)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("stride", [0, -1, (1, 0), (0, 2), (2, -3)])
def test_stride_below_one(name, stride):
    with pytest.raises(ValueError, match=rf"shiftpool\.{name}: stride must be >= 1, got "
                                         + re.escape(repr(stride))):
        create_downsample(name, channels=3, stride=stride)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("stride", [1.5, "2", (2, 2, 2), None, True])
def test_stride_of_wrong_type(name, stride):
    with pytest.raises(TypeError, match=rf"shiftpool\.{name}: stride must be an int or a pair of "
                                        r"ints"):
        create_downsample(name, channels=3, stride=stride)


def test_unknown_operator_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown downsampler 'blurpool'; available: "
                                         + ", ".join(OPS)):
        create_downsample("blurpool", channels=3)


@pytest.mark.parametrize("name", OPS)
def test_unknown_option(name):
    with pytest.raises(TypeError, match=rf"shiftpool\.{name}: unknown option\(s\) padding_modes, "
                                        r"sigma; allowed: "):
        create_downsample(name, channels=3, sigma=1.0, padding_modes="reflect")


# --- operator options -------------------------------------------------------------------------

# Bad values per option name, for every operator that takes the option: (value, error, message).
BAD_OPTIONS: dict[str, list[tuple[object, type[Exception], str]]] = {
    "filter_size": [
        (0, ValueError, r"filter_size must be an integer >= 1, got 0"),
        (-3, ValueError, r"filter_size must be an integer >= 1, got -3"),
        (2.5, ValueError, r"filter_size must be an integer >= 1, got 2\.5"),
    ],
    "kernel_size": [
        (0, ValueError, r"kernel_size must be >= 1, got 0"),
        ((2, 0), ValueError, r"kernel_size must be >= 1, got \(2, 0\)"),
        (1.5, TypeError, r"kernel_size must be an int or a pair of ints"),
    ],
    "padding": [
        (mode, ValueError, rf"unknown padding mode '{mode}'; allowed: circular, reflect, "
                           r"replicate, zero")
        for mode in ("constant", "zeros", "")
    ],
    "norm": [("l3", ValueError, r"unknown norm 'l3'; allowed: l2, l1, linf")],
    "hidden": [(0, ValueError, r"hidden must be an integer >= 1, got 0")],
    "temperature": [
        (0.0, ValueError, r"temperature must be a finite number > 0, got 0\.0"),
        (-1.0, ValueError, r"temperature must be a finite number > 0, got -1\.0"),
        (float("inf"), ValueError, r"temperature must be a finite number > 0, got inf"),
    ],
    "undo_max_shift": [(-1, ValueError, r"undo_max_shift must be an integer >= 0, got -1")],
    "pad_at": [("left", ValueError, r"unknown pad_at 'left'; allowed: end, start")],
    "pairing": [("transposed", ValueError, r"unknown pairing 'transposed'; allowed: natural, "
                                           r"reference")],
    "grid_size": [
        # a grid must hold at least one output row per strip: g >= s
        (1, ValueError, r"grid_size must be >= the stride in each dimension .*got grid_size=1 "
                        r"for stride=\(2, 2\)"),
        ((2, 1), ValueError, r"grid_size must be >= the stride in each dimension"),
        (0, ValueError, r"grid_size must be >= 1, got 0"),
        (2.5, TypeError, r"grid_size must be an int or a pair of ints, got 2\.5"),
    ],
    "eval_mode": [("mean", ValueError, r"unknown eval_mode 'mean'; allowed: avg, max, sample")],
    "eval_samples": [(0, ValueError, r"eval_samples must be an integer >= 1, got 0")],
}
# Options without an invalid value worth a test (any bool; a generator or None).
FREE_OPTIONS = {"hard", "generator", "per_sample"}

OPTION_CASES = [
    pytest.param(name, option, value, error, message, id=f"{name}-{option}={value!r}")
    for name in OPS
    for option in downsample_options(name)
    for value, error, message in BAD_OPTIONS.get(option, [])
]


@pytest.mark.parametrize(("name", "option", "value", "error", "message"), OPTION_CASES)
def test_bad_option_value(name, option, value, error, message):
    with pytest.raises(error, match=rf"shiftpool\.{name}: {message}"):
        create_downsample(name, channels=3, **{option: value})


@pytest.mark.parametrize("stride", [3, (2, 4)])
def test_s3pool_grid_smaller_than_a_larger_stride(stride):
    with pytest.raises(ValueError, match=r"shiftpool\.s3pool: grid_size must be >= the stride"):
        create_downsample("s3pool", channels=3, stride=stride, grid_size=2)


def test_s3pool_eval_samples_need_sample_mode():
    with pytest.raises(ValueError, match=r"shiftpool\.s3pool: eval_samples=2 averages stochastic "
                                         r"passes and needs eval_mode='sample'"):
        create_downsample("s3pool", channels=3, eval_samples=2, eval_mode="avg")


@pytest.mark.parametrize("name", OPS)
def test_every_option_has_bad_value_tests_or_is_free(name):
    untested = set(downsample_options(name)) - set(BAD_OPTIONS) - FREE_OPTIONS
    assert not untested, f"{name}: add bad values of {sorted(untested)} to BAD_OPTIONS"
