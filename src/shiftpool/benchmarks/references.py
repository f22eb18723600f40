"""The reference implementations each shiftpool operator is measured and tested against.

* Official layers, MIT-licensed, kept unmodified outside the project in an *anchors* folder
  (``$SHIFTPOOL_ANCHORS``, else ``../shared/anchors`` beside the source tree): the LPS
  repository's ``layers`` package (``PolyphaseInvariantDown2D`` with ``max_p_norm``, which is
  APS, and with ``LPS``) and the TIPS layer. They are imported from there at run time, never
  copied into the project.
* Packages: ``timm`` (``timm.layers.BlurPool2d``), ``kornia`` (``BlurPool2D``,
  ``MaxBlurPool2D``) — the ``bench`` extra — and, when installed by hand, adobe's
  ``antialiased_cnns`` (CC BY-NC-SA, so never a dependency).

Every loader raises :class:`ReferenceMissing` with a one-line reason when its reference is
absent, so that tests skip and the benchmark notes the missing contender.

Example:
    >>> try:
    ...     layer = reference_layer("kornia.BlurPool2D", channels=4)
    ... except ReferenceMissing as missing:
    ...     layer = None  # the reason is str(missing)
    >>> layer is None or layer(torch.zeros(1, 4, 8, 8)).shape == (1, 4, 4, 4)
    True
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch  # noqa: F401  (the module example uses it)
from torch import Tensor, nn

__all__ = [
    "ANCHORS_ENV",
    "REFERENCES",
    "ReferenceMissing",
    "anchors_dir",
    "copy_weights_to_shiftpool",
    "load_lps_anchor",
    "load_tips_anchor",
    "reference_layer",
]

ANCHORS_ENV = "SHIFTPOOL_ANCHORS"


class ReferenceMissing(RuntimeError):
    """A reference implementation is not available here; the message says why."""


def anchors_dir() -> Path:
    """The anchors folder: ``$SHIFTPOOL_ANCHORS``, else ``../shared/anchors`` from the source
    tree's root (the folder holding ``pyproject.toml``)."""
    if os.environ.get(ANCHORS_ENV):
        return Path(os.environ[ANCHORS_ENV])
    root = Path(__file__).resolve().parents[3]
    return root.parent / "shared" / "anchors"


def load_tips_anchor() -> ModuleType:
    """The official TIPS module (``tips/tips.py`` of the anchors), imported as
    ``shiftpool_anchor_tips``; raises :class:`ReferenceMissing` when absent."""
    name = "shiftpool_anchor_tips"
    if name in sys.modules:
        return sys.modules[name]
    path = anchors_dir() / "tips" / "tips.py"
    if not path.is_file():
        raise ReferenceMissing(f"official TIPS layer not found at {path} (set {ANCHORS_ENV})")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def load_lps_anchor() -> ModuleType:
    """The official LPS repository's ``layers`` package (its modules import each other as
    ``layers.*``, so it is imported under that name); raises :class:`ReferenceMissing`."""
    folder = anchors_dir() / "lps"
    loaded = sys.modules.get("layers")
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "")).resolve().parent.parent == folder.resolve():
            return loaded
        raise ReferenceMissing(f"another module named 'layers' is imported ({loaded!r}); the "
                               "official LPS package needs that name")
    if not (folder / "layers" / "__init__.py").is_file():
        raise ReferenceMissing(f"official LPS layers not found under {folder} (set "
                               f"{ANCHORS_ENV})")
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("layers")
    finally:
        sys.path.remove(str(folder))


def _import(name: str, why: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ReferenceMissing(f"{name} is not installed ({why}): {error}") from None


class _FirstOutput(nn.Module):
    """The first element of a layer that returns a tuple (the official TIPS layer)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)[0]


def _timm_blur(channels: int, stride: int) -> nn.Module:
    layers = _import("timm.layers", "pip install 'shiftpool[bench]'")
    return layers.BlurPool2d(channels, filt_size=3, stride=stride)


def _adobe_blur(channels: int, stride: int) -> nn.Module:
    aa = _import("antialiased_cnns", "CC BY-NC-SA, never a dependency: pip install "
                 "antialiased-cnns to compare with it")
    return aa.BlurPool(channels, filt_size=3, stride=stride)


def _adobe_maxblur(channels: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.MaxPool2d(2, 1), _adobe_blur(channels, stride))


def _kornia_blur(channels: int, stride: int) -> nn.Module:
    kornia = _import("kornia", "pip install 'shiftpool[bench]'")
    return kornia.filters.BlurPool2D(3, stride)


def _kornia_maxblur(channels: int, stride: int) -> nn.Module:
    kornia = _import("kornia", "pip install 'shiftpool[bench]'")
    return kornia.filters.MaxBlurPool2D(3, stride, max_pool_size=2)


def _official_aps(channels: int, stride: int) -> nn.Module:
    layers = load_lps_anchor()
    return layers.PolyphaseInvariantDown2D(stride=stride, component_selection=layers.max_p_norm)


def _official_lps(channels: int, stride: int) -> nn.Module:
    layers = load_lps_anchor()
    return layers.PolyphaseInvariantDown2D(
        stride=stride, component_selection=layers.LPS, pass_extras=True, in_channels=channels,
        hid_channels=channels, get_logits=layers.LPSLogitLayersV2, logits_pad="circular")


def _official_tips(channels: int, stride: int) -> nn.Module:
    return _FirstOutput(load_tips_anchor().TIPS(channels, stride=stride))


#: reference name -> (shiftpool operator, shiftpool options that compute the same, builder).
REFERENCES: dict[str, tuple[str, dict, Callable[[int, int], nn.Module]]] = {
    "adobe.BlurPool": ("blur", {"padding": "reflect"}, _adobe_blur),
    "timm.BlurPool2d": ("blur", {"padding": "reflect"}, _timm_blur),
    "kornia.BlurPool2D": ("blur", {"padding": "zero"}, _kornia_blur),
    "adobe.MaxBlurPool": ("maxblur", {"padding": "reflect"}, _adobe_maxblur),
    "kornia.MaxBlurPool2D": ("maxblur", {"padding": "zero"}, _kornia_maxblur),
    "official.APS": ("aps", {"padding": "zero"}, _official_aps),
    "official.LPS": ("lps", {"padding": "zero"}, _official_lps),
    "official.TIPS": ("tips", {"padding": "reflect", "pad_at": "start",
                               "pairing": "reference"}, _official_tips),
}


def reference_layer(name: str, channels: int, stride: int = 2) -> nn.Module:
    """Build reference ``name`` (a key of :data:`REFERENCES`) for ``channels`` at ``stride``.

    Raises:
        ReferenceMissing: the package or the anchors folder is not available.
    """
    return REFERENCES[name][2](channels, stride)


def copy_weights_to_shiftpool(reference: nn.Module, module: nn.Module) -> None:
    """Give the shiftpool ``module`` the learned weights of ``reference`` (LPS, TIPS; a no-op
    for the parameter-free operators), so that both compute the same function."""
    if isinstance(reference, _FirstOutput):
        module.load_reference_state_dict(reference.layer.state_dict())
    elif hasattr(reference, "component_selection") and hasattr(module, "logits"):
        module.load_reference_state_dict(reference.state_dict(),
                                         prefix="component_selection.get_logits.")

