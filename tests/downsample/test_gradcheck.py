"""``torch.autograd.gradcheck`` in float64 for every registered downsampler.

Inputs are a random permutation of evenly spaced values, so no two entries lie within the
finite-difference step of each other: max pools have no ties, and the polyphase component
that ``aps`` / ``lps`` pick (a piecewise-constant choice) does not flip under the perturbation,
so the operators are differentiable at the test point. Stochastic training-mode operators
(``s3pool``'s row/column draw, ``lps``'s Gumbel noise) are made deterministic by reseeding
torch's RNG before every call: the gradient is then that of one fixed draw. All run on the
``device`` of ``tests/conftest.py`` (``--device``).
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

from shiftpool.downsample import create_downsample, list_downsamples

OPS = list_downsamples()
SHAPE = (2, 2, 5, 7)  # odd sizes: padding to the stride is part of what is checked


def _distinct_input(device, shape=SHAPE, seed=0) -> torch.Tensor:
    """Values ``-1 + 2 k / numel`` in random order: spaced by ``2 / numel``, no near-ties."""
    generator = torch.Generator().manual_seed(seed)
    numel = torch.Size(shape).numel()
    values = -1 + 2 * torch.randperm(numel, generator=generator, dtype=torch.float64) / numel
    return values.view(shape).to(device).requires_grad_()


def _module(name: str, training: bool, device="cpu"):
    torch.manual_seed(0)
    module = create_downsample(name, channels=SHAPE[1], stride=2)
    return module.to(device, torch.float64).train(training)


def _seeded(module):
    """``module`` with the same draw of torch's RNG on every call."""

    def call(x, *params):
        torch.manual_seed(1234)
        if not params:
            return module(x)
        names = [n for n, p in module.named_parameters() if p.requires_grad]
        return functional_call(module, dict(zip(names, params, strict=True)), (x,))

    return call


def _gradcheck(module, x, *params) -> bool:
    # fast mode compares random projections u^T J v of the numerical and analytical Jacobians:
    # a wrong gradient still fails, at a fraction of the cost of the full Jacobians
    return gradcheck(_seeded(module), (x, *params), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_gradcheck_input(name, training, device):
    module = _module(name, training, device)
    assert _gradcheck(module, _distinct_input(device))


@pytest.mark.parametrize("stride", [(1, 3), 3])
@pytest.mark.parametrize("name", OPS)
def test_gradcheck_input_other_strides(name, stride, device):
    torch.manual_seed(0)
    module = create_downsample(name, channels=SHAPE[1], stride=stride)
    assert _gradcheck(module.to(device, torch.float64).eval(), _distinct_input(device))


@pytest.mark.parametrize(
    "name", [n for n in OPS if any(True for _ in _module(n, False).parameters())]
)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_gradcheck_parameters(name, training, device):
    module = _module(name, training, device)
    params = [p.detach().clone().requires_grad_() for p in module.parameters() if p.requires_grad]
    assert params
    assert _gradcheck(module, _distinct_input(device), *params)
