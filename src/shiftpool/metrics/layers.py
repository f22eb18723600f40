"""Finding the layers that metrics hook into: downsampling layers and the classifier head.

A *downsampling layer* is a shiftpool :class:`~shiftpool.downsample.base.Downsample`, a torch
``MaxPool2d`` or ``AvgPool2d``, or a ``Conv2d``, whose stride is larger than 1. Only the
outermost one counts: an operator built from smaller downsamplers is measured as one layer.

The *sampled map* of a layer is the map whose values the layer's output is drawn from: the
input of a pool or shiftpool operator, and for a strided convolution (stride-1 convolution
followed by keeping every s-th pixel) the dense, stride-1 convolution output.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from shiftpool.core.errors import InputError
from shiftpool.downsample.base import Downsample
from shiftpool.downsample.geometry import pair


def layer_stride(module: nn.Module) -> tuple[int, int]:
    """The stride ``(sh, sw)`` of a downsampling layer (``(1, 1)`` for anything else).

    Example:
        >>> layer_stride(nn.MaxPool2d(3, 2))
        (2, 2)
    """
    if isinstance(module, Downsample):
        return module.stride
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        stride = module.stride if module.stride is not None else module.kernel_size
        stride = tuple(stride) if isinstance(stride, (tuple, list)) else stride
        return pair(stride, "stride", type(module).__name__)
    if isinstance(module, nn.Conv2d):
        return tuple(module.stride)  # type: ignore[return-value]
    return (1, 1)


def is_downsampling(module: nn.Module) -> bool:
    """Whether ``module`` is a downsampling layer (see the module docstring)."""
    return isinstance(module, (Downsample, nn.MaxPool2d, nn.AvgPool2d, nn.Conv2d)) and max(
        layer_stride(module)
    ) > 1


def downsampling_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The outermost downsampling layers of ``model``, in registration order.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2))
        >>> [name for name, _ in downsampling_layers(net)]
        ['0', '2']
    """
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if any(name.startswith(f"{outer}.") for outer, _ in found):
            continue
        if is_downsampling(module):
            found.append((name or "<model>", module))
    return found


def sampled_map(module: nn.Module, inputs: tuple[Tensor, ...]) -> Tensor:
    """The map a downsampling layer samples its output from, given the layer's inputs.

    For a strided ``Conv2d`` this is the same convolution at stride 1, so that the layer's
    output at ``o`` equals this map at ``o * stride``.

    Returns:
        ``(N, C_out, H', W')``.
    """
    x = inputs[0]
    if not isinstance(module, nn.Conv2d):
        return x
    if module.padding_mode != "zeros":
        x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        padding = 0
    else:
        padding = module.padding
    return F.conv2d(x, module.weight, module.bias, 1, padding, module.dilation, module.groups)


def classifier_head(model: nn.Module) -> tuple[str, nn.Module]:
    """The classifier head: the last ``nn.Linear`` of ``model``, else its last leaf module.

    Example:
        >>> classifier_head(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))[0]
        '1'
    """
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1]
    leaves = [(n, m) for n, m in model.named_modules() if not any(m.children())]
    name, module = leaves[-1]
    return name or "<model>", module


def find_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Resolve ``layer`` (a name from ``model.named_modules()`` or a module) to ``(name, module)``.

    Raises:
        ValueError: naming the layer and listing valid names when it is not part of ``model``.
    """
    named = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in named.items():
            if module is layer:
                return name or "<model>", module
        raise InputError(
            f"shiftpool.metrics: the module {type(layer).__name__} is not part of the model"
        )
    if layer in named and layer != "":
        return layer, named[layer]
    names = [n for n in named if n]
    shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    raise InputError(f"shiftpool.metrics: the model has no layer named {layer!r}; layers: {shown}")
