"""Models whose every downsampling point takes any shiftpool operator.

Build one by name with :func:`create_model`; :func:`list_models` names them all.

Example:
    >>> import shiftpool
    >>> net = shiftpool.create_model("resnet20", downsample="blur")
"""

from shiftpool.models import resnet_cifar, segmentation, simple_cnn, vgg  # noqa: F401  (registers)
from shiftpool.models.layers import DownsampleSpec
from shiftpool.models.registry import (
    create_model,
    list_models,
    model_builder,
    model_option_names,
    register_model,
)
from shiftpool.models.resnet import BasicBlock, Bottleneck, ResNet
from shiftpool.models.simple_cnn import SimpleCNN
from shiftpool.models.vgg import VGG

__all__ = [
    "VGG",
    "BasicBlock",
    "Bottleneck",
    "DownsampleSpec",
    "ResNet",
    "SimpleCNN",
    "create_model",
    "list_models",
    "model_builder",
    "model_option_names",
    "register_model",
]
