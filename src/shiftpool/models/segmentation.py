"""Segmentation networks whose every downsampling point takes any operator (dense prediction).

* :class:`UNet` (``unet``): a small U-Net for CPU work. Each encoder level is two 3x3
  conv → BN → ReLU; between levels the operator at stride 2. Each decoder level reduces the
  channels with a 1x1 convolution to those of the skip connection, upsamples with the upsampler
  paired with that level's downsampler (:func:`shiftpool.downsample.upsample.create_upsample`:
  polyphase for aps/lps/tips, bilinear otherwise), concatenates the skip, and applies two
  3x3 conv → BN → ReLU. A 1x1 convolution gives the class logits.
* :class:`FCN` (``fcn_resnet18``, ``fcn_resnet18_cifar``, ``fcn_resnet50``...): an FCN-style
  head (3x3 conv → BN → ReLU → 1x1 conv) on one of the library's ResNets. With aps or lps
  the logits go back up through the paired polyphase upsamplers of the backbone's main-path
  downsamplers, deepest first (each followed by a ``filter_size`` binomial interpolation); with
  any other operator (or the plain network) they are resized to the input by bilinear
  interpolation, as torchvision's FCN does.

With ``circular=True``, ``aps`` (or ``lps`` in eval mode), and input sizes divisible by the
total stride, both are exactly equivariant to circular shifts of the input by any amount.

They are in the model registry with task ``segmentation``: ``create_model("unet", ...)``
builds one, ``list_models("segmentation")`` names them (:func:`create_segmentation_model` is
``create_model`` with VOC's 21 classes by default, refusing classification models).

Shape: ``(N, in_channels, H, W) -> (N, num_classes, H, W)`` for any ``H, W >= 1``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shiftpool.core.checks import check_choice
from shiftpool.core.errors import InputError
from shiftpool.downsample import Downsample
from shiftpool.downsample.upsample import UPSAMPLE_METHODS, create_upsample, is_polyphase
from shiftpool.models.layers import DownsampleSpec, conv2d, init_weights, positive_ints
from shiftpool.models.registry import create_model, list_models, register_model
from shiftpool.models.resnet import IMAGENET_WIDTHS, RESNETS, ResNet, scaled

__all__ = [
    "FCN",
    "UNet",
    "create_segmentation_model",
    "list_segmentation_models",
    "segmentation_output_check",
]

Builder = Callable[..., nn.Module]
TASK = "segmentation"


def list_segmentation_models() -> list[str]:
    """Names of the segmentation models: ``list_models("segmentation")``.

    Example:
        >>> "unet" in list_segmentation_models()
        True
    """
    return list_models(TASK)


def create_segmentation_model(
    name: str,
    *,
    num_classes: int = 21,
    **arguments: Any,
) -> nn.Module:
    """:func:`shiftpool.models.create_model` for a segmentation model (21 classes by default,
    as VOC); a classification model's name is an error.

    Example:
        >>> net = create_segmentation_model("unet", downsample="aps", circular=True,
        ...                                 num_classes=3, channels=(4, 8))
        >>> net(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """
    check_choice(name, "shiftpool.segmentation: model", list_segmentation_models())
    return create_model(name, num_classes=num_classes, **arguments)


def _double_conv(in_channels: int, out_channels: int, circular: bool) -> nn.Sequential:
    return nn.Sequential(
        conv2d(in_channels, out_channels, 3, circular=circular),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        conv2d(out_channels, out_channels, 3, circular=circular),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _check_method(method: str, what: str) -> str:
    if method not in UPSAMPLE_METHODS:
        raise InputError(f"{what}: unknown upsample {method!r}; allowed: "
                         f"{', '.join(UPSAMPLE_METHODS)}")
    return method


@register_model("unet", task=TASK)
class UNet(nn.Module):
    """A small U-Net: encoder levels joined by the operator, decoder by the paired upsamplers.

    Args:
        spec: the operator at every downsampling point (``spec.plain``: max pooling).
        num_classes: output channels (class logits).
        in_channels: channels of the input images.
        channels: channels of each level, finest first; ``len(channels) - 1`` downsamplings
            at stride 2 (total stride ``2 ** (len(channels) - 1)``).
        upsample: ``auto`` (the paired upsampler: polyphase for aps/lps/tips, else bilinear),
            or ``phase``, ``bilinear``, ``nearest``, ``transposed`` at every level.
        filter_size: odd binomial interpolation after polyphase placement (1: none).

    Shape:
        ``(N, in_channels, H, W) -> (N, num_classes, H, W)``; any ``H, W >= 1``.

    Example:
        >>> net = UNet(DownsampleSpec("lps", circular=True), 2, 1, channels=(4, 8, 8)).eval()
        >>> x = torch.randn(1, 1, 16, 16)
        >>> torch.allclose(net(x.roll((3, 5), (2, 3))), net(x).roll((3, 5), (2, 3)), atol=1e-5)
        True
    """

    def __init__(
        self,
        spec: DownsampleSpec,
        num_classes: int = 21,
        in_channels: int = 3,
        *,
        channels: Sequence[int] = (16, 32, 64),
        upsample: str = "auto",
        filter_size: int = 1,
    ) -> None:
        super().__init__()
        what = "shiftpool.unet"
        widths = positive_ints(channels, f"{what}: channels")
        method = _check_method(upsample, what)
        options = {"filter_size": filter_size} if filter_size != 1 else {}
        circular = spec.circular
        self.levels = len(widths)
        self.encoders = nn.ModuleList([_double_conv(in_channels, widths[0], circular)])
        self.downs = nn.ModuleList()
        for prev, width in itertools.pairwise(widths):
            self.downs.append(spec.build(prev, 2))
            self.encoders.append(_double_conv(prev, width, circular))
        self.reduces = nn.ModuleList()
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in range(self.levels - 1, 0, -1):
            skip = widths[level - 1]
            down = self.downs[level - 1]
            chosen = method
            if method == "auto":
                chosen = "phase" if is_polyphase(down) else "bilinear"
            extra = options if chosen == "phase" else {}
            self.reduces.append(conv2d(widths[level], skip, 1))
            self.ups.append(create_upsample(down, chosen, channels=skip, **extra))
            self.decoders.append(_double_conv(2 * skip, skip, circular))
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(N, num_classes, H, W)`` of ``x (N, in_channels, H, W)``."""
        if not torch.compiler.is_compiling() and x.dim() != 4:
            raise InputError(f"shiftpool.unet: input must be (N, C, H, W), got shape "
                             f"{tuple(x.shape)}")
        skips: list[Tensor] = []
        y = self.encoders[0](x)
        for down, encoder in zip(self.downs, self.encoders[1:], strict=True):
            skips.append(y)
            y = encoder(down(y))
        for reduce, up, decoder in zip(self.reduces, self.ups, self.decoders, strict=True):
            skip = skips.pop()
            y = up(reduce(y), size=(skip.shape[-2], skip.shape[-1]))
            y = decoder(torch.cat([y, skip], dim=1))
        return self.head(y)


def _main_path_downsamplers(backbone: ResNet) -> list[Downsample]:
    """The backbone's main-path downsamplers in forward order (shortcut copies left out)."""
    found = []
    for name, module in backbone.named_modules():
        if isinstance(module, Downsample) and not name.split(".")[-1].startswith("shortcut"):
            found.append(module)
    return found


class FCN(nn.Module):
    """An FCN-style head on a shiftpool :class:`~shiftpool.models.resnet.ResNet`.

    Args:
        backbone: the ResNet; its ``avgpool`` and ``fc`` are replaced by identities (load a
            classifier's weights with ``strict=False``).
        num_classes: output channels.
        filter_size: odd binomial interpolation after each polyphase placement (default 3:
            linear interpolation at stride 2).

    Shape:
        ``(N, C, H, W) -> (N, num_classes, H, W)``.

    Example:
        >>> net = create_model("fcn_resnet18_cifar", downsample="aps", circular=True,
        ...                    num_classes=2, width=0.125).eval()
        >>> x = torch.randn(1, 3, 16, 16)
        >>> torch.allclose(net(x.roll(1, 3)), net(x).roll(1, 3), atol=1e-5)
        True
    """

    def __init__(self, backbone: ResNet, num_classes: int, filter_size: int = 3) -> None:
        super().__init__()
        channels = backbone.fc.in_features
        # the classifier is not used: dropped, so that every parameter gets a gradient (DDP)
        backbone.fc, backbone.avgpool = nn.Identity(), nn.Identity()
        self.backbone = backbone
        hidden = max(1, channels // 4)
        circular = backbone.conv1.padding_mode == "circular"
        self.head = nn.Sequential(
            conv2d(channels, hidden, 3, circular=circular),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_classes, 1),
        )
        downs = _main_path_downsamplers(backbone)
        phase = bool(downs) and all(is_polyphase(d) and not _per_channel(d) for d in downs)
        options = {"filter_size": filter_size} if filter_size != 1 else {}
        self.ups = nn.ModuleList(
            [create_upsample(d, "phase", **options) for d in reversed(downs)] if phase else []
        )
        init_weights(self.head)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(N, num_classes, H, W)`` of ``x (N, C, H, W)``."""
        size = (x.shape[-2], x.shape[-1])
        y = self.head(self.backbone.forward_features(x))
        if len(self.ups) == 0:
            return F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        for up in self.ups:
            y = up(y)
        if not torch.compiler.is_compiling() and (y.shape[-2], y.shape[-1]) != size:
            # a strided convolution in the stem (plain network) is not paired: resize the rest
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return y


def _per_channel(down: nn.Module) -> bool:
    """TIPS mixes per channel: its weights do not apply to the class logits."""
    return getattr(down, "name", "") == "tips"


def _fcn_builder(name: str, resnet: str, stem: str) -> Builder:
    block, depths = RESNETS[resnet]

    def build(
        spec: DownsampleSpec, num_classes: int, in_channels: int, *, width: float = 1.0,
        filter_size: int = 3,
    ) -> FCN:
        widths = [scaled(w, width) for w in IMAGENET_WIDTHS]
        backbone = ResNet(block, depths, widths, spec, stem=stem, num_classes=1,
                          in_channels=in_channels)
        return FCN(backbone, num_classes, filter_size=filter_size)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"{name}: FCN head on {resnet} ({stem} stem), widths times ``width``."
    return build


for _resnet in RESNETS:
    register_model(f"fcn_{_resnet}", task=TASK)(
        _fcn_builder(f"fcn_{_resnet}", _resnet, "imagenet"))
    register_model(f"fcn_{_resnet}_cifar", task=TASK)(
        _fcn_builder(f"fcn_{_resnet}_cifar", _resnet, "cifar"))


def segmentation_output_check(net: nn.Module, x: Tensor) -> Tensor:
    """Run ``net`` on ``x`` and check the dense output's shape: ``(N, K, H, W)``.

    Example:
        >>> net = create_segmentation_model("unet", num_classes=2, channels=(4, 8))
        >>> segmentation_output_check(net, torch.randn(1, 3, 9, 7)).shape
        torch.Size([1, 2, 9, 7])
    """
    out = net(x)
    if out.dim() != 4 or out.shape[0] != x.shape[0] or out.shape[-2:] != x.shape[-2:]:
        raise InputError(f"shiftpool.segmentation: model output {tuple(out.shape)} is not "
                         f"(N, K, H, W) for input {tuple(x.shape)}")
    return out
