"""The CIFAR ResNets of He et al. (2016, section 4.2): 6n + 2 layers, 16/32/64 channels.

Three stages of ``n`` basic blocks on a 3x3 stem. The shortcut of a downsampling block is a
projection (downsampler → 1x1 convolution → BN), not the paper's zero-padded identity, so
that the shortcut downsamples with the same operator as the main path: ResNet-20 has 0.27 M
parameters.
"""

from __future__ import annotations

from shiftpool.models.registry import register_model
from shiftpool.models.resnet import BasicBlock, resnet_builder

CIFAR_WIDTHS = (16, 32, 64)

#: name: blocks per stage (n).
CIFAR_RESNETS: dict[str, int] = {
    "resnet20": 3,
    "resnet32": 5,
    "resnet44": 7,
    "resnet56": 9,
    "resnet110": 18,
}

for _name, _n in CIFAR_RESNETS.items():
    register_model(_name)(resnet_builder(BasicBlock, (_n, _n, _n), CIFAR_WIDTHS, "cifar", _name))
