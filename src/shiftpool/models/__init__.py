"""Models whose every downsampling point takes any shiftpool operator.

Build one by name with :func:`create_model`; :func:`list_models` names them all (by task:
``classification`` or ``segmentation``, see :func:`model_task`).

Example:
    >>> import shiftpool
    >>> net = shiftpool.create_model("resnet20", downsample="blur")
"""

from shiftpool.models import resnet_cifar, segmentation, simple_cnn, vgg  # noqa: F401  (registers)
from shiftpool.models.layers import DownsampleSpec
from shiftpool.models.registry import (
    TASKS,
    create_model,
    list_models,
    model_builder,
    model_option_names,
    model_task,
    register_model,
)
from shiftpool.models.resnet import BasicBlock, Bottleneck, ResNet
from shiftpool.models.simple_cnn import SimpleCNN
from shiftpool.models.vgg import VGG

__all__ = [
    "TASKS",
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
    "model_task",
    "register_model",
]
