"""Tests of S3Pool: stride-1 max pooling, then stochastic sampling of rows and columns.

The operator tests take the ``device`` of ``tests/conftest.py`` (``--device``); the draws come
from CPU generators, as a user's seeded ``torch.Generator()`` would.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from shiftpool.downsample import S3Pool, create_downsample
from shiftpool.downsample.s3pool import s3pool, sample_positions, stride1_max, strip_shares


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _step1(x: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """The definition of step 1: replicate-pad right/bottom by s - 1, max pool s at stride 1."""
    sh, sw = stride
    return F.max_pool2d(F.pad(x, (0, sw - 1, 0, sh - 1), mode="replicate"), stride, 1)


def _draws(size, stride, grid, draws, generator):
    """Rows, then columns: the order in which S3Pool draws from its generator."""
    return sample_positions(size[0], stride[0], grid[0], draws, generator), sample_positions(
        size[1], stride[1], grid[1], draws, generator
    )


# --- strips and their shares --------------------------------------------------------------------


def test_shares_add_up_to_the_output_size_and_fit_their_strips():
    for size, stride in itertools.product(range(1, 41), range(1, 5)):
        for grid in range(stride, size + stride + 1):
            shares = strip_shares(size, stride, grid)
            assert sum(shares) == math.ceil(size / stride), (size, stride, grid)
            assert len(shares) == math.ceil(size / grid)
            for t, share in enumerate(shares):
                start, end = t * grid, min((t + 1) * grid, size)
                # the rows fixed-phase subsampling would keep in the strip
                assert share == len(range(math.ceil(start / stride) * stride, end, stride))
                assert share <= end - start
                if end - start == grid:
                    assert share >= 1


def test_share_examples():
    assert strip_shares(8, 2, 2) == [1, 1, 1, 1]
    assert strip_shares(8, 2, 4) == [2, 2]
    assert strip_shares(9, 2, 4) == [2, 2, 1]
    assert strip_shares(10, 2, 3) == [2, 1, 2, 0]
    assert strip_shares(5, 2, 100) == [3]


@pytest.mark.parametrize(("size", "stride", "grid"), [(8, 2, 2), (9, 2, 4), (10, 2, 3),
                                                      (13, 3, 5), (7, 2, 7), (6, 1, 2), (1, 2, 2)])
def test_sampled_positions_are_sorted_distinct_and_fill_each_strip_share(size, stride, grid):
    positions = sample_positions(size, stride, grid, draws=300, generator=_generator(0))
    assert positions.shape == (300, math.ceil(size / stride))
    assert positions.dtype == torch.int64
    assert bool((positions[:, 1:] > positions[:, :-1]).all())  # sorted, without replacement
    assert int(positions.min()) >= 0 and int(positions.max()) < size
    counts = torch.stack([(positions // grid == t).sum(dim=1)
                          for t in range(math.ceil(size / grid))], dim=1)
    shares = torch.tensor(strip_shares(size, stride, grid))
    assert bool((counts == shares).all())


def test_each_position_of_a_strip_is_equally_likely():
    # g = 4, s = 2: each strip keeps 2 of its 4 rows, so every row with probability 1/2
    draws = 4000
    positions = sample_positions(16, 2, 4, draws=draws, generator=_generator(1))
    frequency = torch.zeros(16).index_add_(0, positions.flatten(), torch.ones(positions.numel()))
    frequency /= draws
    half_width = 5 * math.sqrt(0.25 / draws)  # 5 sigma
    assert bool(((frequency - 0.5).abs() < half_width).all()), frequency


# --- step 1 and the training output --------------------------------------------------------------


@pytest.mark.parametrize(("size", "stride"), [((7, 9), (2, 2)), ((1, 1), (2, 3)), ((5, 2), (3, 3)),
                                              ((8, 8), (1, 2)), ((2, 3), (4, 5))])
def test_stride1_max_is_the_replicate_padded_max_pool(size, stride, device):
    x = torch.randn(2, 3, *size, device=device)
    assert torch.equal(stride1_max(x, stride), _step1(x, stride))


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize(("size", "stride", "grid"), [((7, 9), (2, 2), (2, 2)),
                                                      ((12, 10), (2, 2), (4, 6)),
                                                      ((9, 11), (3, 2), (5, 100)),
                                                      ((1, 2), (2, 2), (2, 2))])
@pytest.mark.parametrize("channels_last", [False, True])
def test_training_output_is_the_step1_map_at_the_sampled_rows_and_columns(
    per_sample, size, stride, grid, channels_last, device
):
    x = torch.randn(4, 3, *size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    pool = S3Pool(stride=stride, grid_size=grid, per_sample=per_sample, generator=_generator(3))
    out = pool.train()(x)
    rows, cols = _draws(size, stride, grid, 4 if per_sample else 1, _generator(3))
    step1 = _step1(x, stride)
    for n in range(4):
        r, c = rows[n if per_sample else 0], cols[n if per_sample else 0]
        assert torch.equal(out[n], step1[n][:, r][:, :, c])
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)


def test_every_training_output_is_a_value_of_the_step1_map(device):
    x = torch.randn(3, 2, 11, 10, device=device)
    out = s3pool(x, (2, 3), grid_size=(4, 5), per_sample=True, generator=_generator(4))
    step1 = _step1(x, (2, 3))
    for n, c in itertools.product(range(3), range(2)):
        assert bool(torch.isin(out[n, c], step1[n, c]).all())


def test_per_sample_draws_differ_across_samples_and_per_batch_draws_do_not(device):
    x = torch.randn(1, 2, 16, 16, device=device).expand(8, 2, 16, 16).contiguous()
    shared = s3pool(x, 2, grid_size=4, per_sample=False, generator=_generator(5))
    own = s3pool(x, 2, grid_size=4, per_sample=True, generator=_generator(5))
    assert all(torch.equal(shared[0], shared[n]) for n in range(8))
    distinct = {tuple(own[n].flatten().tolist()) for n in range(8)}
    assert len(distinct) == 8


def test_generator_makes_training_reproducible(device):
    x = torch.randn(2, 3, 12, 12, device=device)
    pool = S3Pool(grid_size=4, per_sample=True)
    first = s3pool(x, 2, grid_size=4, per_sample=True, generator=_generator(6))
    assert torch.equal(first, s3pool(x, 2, grid_size=4, per_sample=True, generator=_generator(6)))
    assert not torch.equal(first, s3pool(x, 2, grid_size=4, per_sample=True,
                                         generator=_generator(7)))
    torch.manual_seed(8)
    a = pool.train()(x)
    torch.manual_seed(8)
    assert torch.equal(a, pool(x))  # no generator: torch's global RNG


def test_functional_form_equals_the_module(device):
    x = torch.randn(2, 3, 9, 7, device=device)
    pool = S3Pool(stride=(2, 3), grid_size=(3, 6), per_sample=True, generator=_generator(9))
    expected = s3pool(x, (2, 3), (3, 6), training=True, generator=_generator(9), per_sample=True)
    assert torch.equal(pool.train()(x), expected)
    for mode in ("avg", "max"):
        pool.eval_mode = mode
        assert torch.equal(pool.eval()(x), s3pool(x, (2, 3), training=False, eval_mode=mode))


# --- evaluation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(7, 9), (1, 1), (5, 2), (8, 8), (3, 10)])
@pytest.mark.parametrize(("stride", "grid"), [(2, None), ((2, 3), (4, 3)), (3, 7)])
@pytest.mark.parametrize("eval_mode", ["avg", "max", "sample"])
def test_evaluation_has_the_training_shape(size, stride, grid, eval_mode, device):
    pool = S3Pool(stride=stride, grid_size=grid, eval_mode=eval_mode)
    x = torch.randn(2, 3, *size, device=device)
    assert pool.eval()(x).shape == pool.train()(x).shape == (2, 3, *pool.output_size(*size))


@pytest.mark.parametrize("eval_mode", ["avg", "max"])
def test_evaluation_is_deterministic_and_draws_nothing(eval_mode, device):
    generator = _generator(10)
    state = generator.get_state()
    pool = S3Pool(eval_mode=eval_mode, generator=generator).eval()
    x = torch.randn(2, 3, 9, 9, device=device)
    assert torch.equal(pool(x), pool(x))
    assert torch.equal(generator.get_state(), state)


@pytest.mark.parametrize(("size", "stride"), [((7, 9), (2, 2)), ((5, 5), (3, 2)), ((1, 3), (2, 2))])
def test_eval_modes_pool_the_step1_map(size, stride, device):
    x = torch.randn(2, 3, *size, dtype=torch.float64, device=device)
    step1 = _step1(x, stride)
    avg = F.avg_pool2d(step1, stride, stride, ceil_mode=True)
    high = F.max_pool2d(step1, stride, stride, ceil_mode=True)
    torch.testing.assert_close(s3pool(x, stride, training=False, eval_mode="avg"), avg)
    assert torch.equal(s3pool(x, stride, training=False, eval_mode="max"), high)


def test_eval_avg_is_the_exact_expectation_of_training_for_grid_equal_to_stride(device):
    # 5 x 3, s = 2: rows from strips [0,2), [2,4), [4,5) and columns from [0,2), [2,3);
    # enumerate every equally likely draw
    x = torch.randn(2, 3, 5, 3, dtype=torch.float64, device=device)
    step1 = _step1(x, (2, 2))
    row_choices = [(a, b, 4) for a in (0, 1) for b in (2, 3)]
    col_choices = [(a, 2) for a in (0, 1)]
    outcomes = [step1[:, :, list(r)][:, :, :, list(c)]
                for r in row_choices for c in col_choices]
    expectation = torch.stack(outcomes).mean(dim=0)
    torch.testing.assert_close(s3pool(x, 2, training=False), expectation)


def test_eval_samples_average_that_many_draws(device):
    x = torch.randn(3, 2, 10, 9, device=device)
    pool = S3Pool(grid_size=4, per_sample=True, generator=_generator(11), eval_mode="sample",
                  eval_samples=5).eval()
    out = pool(x)
    generator = _generator(11)
    step1 = _step1(x, (2, 2))
    total = torch.zeros_like(out)
    for _ in range(5):
        rows, cols = _draws((10, 9), (2, 2), (4, 4), 3, generator)
        total += torch.stack([step1[n][:, rows[n]][:, :, cols[n]] for n in range(3)])
    torch.testing.assert_close(out, total / 5)
    assert not torch.equal(out, pool(x))  # stays stochastic


# --- gradients, formats, errors -----------------------------------------------------------------


@pytest.mark.parametrize("per_sample", [False, True])
def test_gradcheck_float64_training(per_sample, device):
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True, device=device)

    def pool(inp: torch.Tensor) -> torch.Tensor:  # the same draw for every evaluation
        return s3pool(inp, (2, 3), grid_size=(3, 3), per_sample=per_sample,
                      generator=_generator(12))

    assert torch.autograd.gradcheck(pool, (x,))


@pytest.mark.parametrize("eval_mode", ["avg", "max"])
def test_gradcheck_float64_evaluation(eval_mode, device):
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True, device=device)
    assert torch.autograd.gradcheck(
        lambda inp: s3pool(inp, 2, training=False, eval_mode=eval_mode), (x,)
    )


def test_overlapping_windows_accumulate_gradient(device):
    # H = 3, s = 2, one strip of 3 rows keeping 2: rows 0 and 1 give windows {0, 1} and {1, 2},
    # whose maximum is the same pixel
    seed = next(k for k in range(100)
                if sample_positions(3, 2, 3, generator=_generator(k)).tolist() == [[0, 1]])
    x = torch.tensor([[[[0.0], [5.0], [1.0]]]], requires_grad=True, device=device)
    out = s3pool(x, (2, 1), grid_size=(3, 1), generator=_generator(seed))
    assert out.flatten().tolist() == [5.0, 5.0]
    out.sum().backward()
    assert x.grad.flatten().tolist() == [0.0, 2.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("training", [True, False])
def test_dtype_and_channels_last_are_kept(dtype, training, device):
    x = torch.randn(2, 4, 9, 8, dtype=dtype, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    out = S3Pool().train(training)(x)
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
    out.float().sum().backward()
    assert x.grad.dtype == dtype and x.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("stride", "grid"), [(2, 1), (3, 2), ((2, 3), (4, 2)), ((2, 2), (1, 5))])
def test_grid_smaller_than_the_stride_is_an_error(stride, grid):
    with pytest.raises(ValueError, match=r"shiftpool\.s3pool: grid_size must be >= the stride"):
        S3Pool(stride=stride, grid_size=grid)
    with pytest.raises(ValueError, match=r"shiftpool\.s3pool: grid_size must be >= the stride"):
        s3pool(torch.randn(1, 1, 8, 8), stride, grid_size=grid)


@pytest.mark.parametrize("grid", [0, -2, (2, 0)])
def test_grid_below_one_is_an_error(grid):
    with pytest.raises(ValueError, match=r"shiftpool\.s3pool: grid_size must be >= 1"):
        create_downsample("s3pool", grid_size=grid)


def test_bad_eval_options_are_errors():
    with pytest.raises(ValueError, match=r"shiftpool\.s3pool: unknown eval_mode 'mean'; "
                                         r"allowed: avg, max, sample"):
        S3Pool(eval_mode="mean")
    message = r"shiftpool\.s3pool: eval_samples must be an integer >= 1"
    with pytest.raises(ValueError, match=message):
        S3Pool(eval_mode="sample", eval_samples=0)
    with pytest.raises(ValueError, match=r"needs eval_mode='sample', got eval_mode='max'"):
        S3Pool(eval_mode="max", eval_samples=3)
