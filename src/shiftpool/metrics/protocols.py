"""Evaluation protocols: which shifts, how large, and the metrics' settings, named after sources.

- ``zhang`` (Zhang 2019): windows cropped from larger images, corners in ``[0, 32)`` per axis
  (ImageNet: 224 from 256). The unshifted reference is the centre crop.
- ``aps`` (Chaman & Dokmanić 2021, CIFAR): circular shifts, ``|δ| <= 3``.
- ``tips`` (Saha & Gokhale 2025): zero-fill ("standard") and circular shifts, ``|δ| <= H/4``.

Every field can be overridden: ``get_protocol("tips", max_shift=4)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.downsample.geometry import pair
from shiftpool.metrics.homogeneity import DEFAULT_EPS, DEFAULT_WINDOW
from shiftpool.metrics.msb import DEFAULT_RTOL
from shiftpool.metrics.shifts import check_shift_mode


@dataclass(frozen=True)
class Protocol:
    """Settings of an evaluation.

    Attributes:
        name: the preset it came from (or a name of your own).
        shifts: shift modes measured, each of ``circular``, ``zero``, ``reflect``, ``crop``
            (``crop`` cannot be mixed with the others: its images are larger than the model's
            input).
        max_shift: largest offset per axis (int or ``(my, mx)``); ``None`` = a quarter of the
            image's height and width. For ``crop``, window corners lie in ``[0, max_shift)``.
        crop_size: ``crop`` window ``(h, w)``; ``None`` = image size − ``max_shift``.
        grid_max_shift: extent of the offset grid of the 2-D maps (offset map, worst-case
            accuracy, sensitivity); ``None`` = ``max_shift``.
        grid_step: spacing of that grid (1 = every offset).
        homogeneity_window: window of the data set's local homogeneity (layers use their stride).
        homogeneity_eps: tolerance of the homogeneity fraction, relative to the map's range.
        msb_rtol: relative tolerance of "equal to the block maximum".
        confidence: coverage of every interval.
        fill: what a ``zero`` shift brings in, in the model's input space: a number or one value
            per channel. For normalised inputs, ``-mean / std`` fills with black.
    """

    name: str
    shifts: tuple[str, ...]
    max_shift: int | tuple[int, int] | None
    crop_size: int | tuple[int, int] | None = None
    grid_max_shift: int | tuple[int, int] | None = None
    grid_step: int = 1
    homogeneity_window: int | tuple[int, int] = DEFAULT_WINDOW
    homogeneity_eps: float = DEFAULT_EPS
    msb_rtol: float = DEFAULT_RTOL
    confidence: float = 0.95
    fill: float | tuple[float, ...] = 0.0

    def __post_init__(self) -> None:
        shifts = (self.shifts,) if isinstance(self.shifts, str) else tuple(self.shifts)
        object.__setattr__(self, "shifts", shifts)
        if not isinstance(self.fill, (int, float)):
            object.__setattr__(self, "fill", tuple(float(v) for v in self.fill))
        if not shifts:
            raise InputError("shiftpool.metrics.protocol: shifts must name at least one mode")
        for mode in shifts:
            check_shift_mode(mode)
        if "crop" in shifts and len(shifts) > 1:
            raise InputError(
                "shiftpool.metrics.protocol: 'crop' cannot be combined with other shift modes "
                f"(its images are larger than the model's input), got {shifts}"
            )
        for field in ("max_shift", "crop_size", "grid_max_shift"):
            value = getattr(self, field)
            if value is not None:
                pair(value, field, "metrics.protocol")
        for field in ("grid_step", "homogeneity_window"):
            pair(getattr(self, field), field, "metrics.protocol")
        if self.homogeneity_eps < 0 or self.msb_rtol < 0:
            raise InputError(
                "shiftpool.metrics.protocol: homogeneity_eps and msb_rtol must be >= 0, got "
                f"{self.homogeneity_eps} and {self.msb_rtol}"
            )
        if not 0 < self.confidence < 1:
            raise InputError(
                f"shiftpool.metrics.protocol: confidence must lie in (0, 1), got {self.confidence}"
            )

    def to_dict(self) -> dict[str, Any]:
        items = dataclasses.asdict(self).items()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in items}


PROTOCOLS: dict[str, Protocol] = {
    "zhang": Protocol("zhang", ("crop",), max_shift=32),
    "aps": Protocol("aps", ("circular",), max_shift=3),
    "tips": Protocol("tips", ("zero", "circular"), max_shift=None),
}


def list_protocols() -> list[str]:
    """Names of the preset protocols.

    Example:
        >>> list_protocols()
        ['aps', 'tips', 'zhang']
    """
    return sorted(PROTOCOLS)


def get_protocol(protocol: str | Protocol = "tips", **overrides: Any) -> Protocol:
    """A preset (or the given protocol) with ``overrides`` applied.

    Example:
        >>> get_protocol("aps", max_shift=2).max_shift
        2
    """
    if isinstance(protocol, str):
        if protocol not in PROTOCOLS:
            raise InputError(
                f"shiftpool.metrics: unknown protocol {protocol!r}; "
                f"available: {', '.join(list_protocols())}"
            )
        protocol = PROTOCOLS[protocol]
    elif not isinstance(protocol, Protocol):
        raise InputTypeError(
            "shiftpool.metrics: protocol must be a name or a Protocol, got "
            f"{type(protocol).__name__}"
        )
    fields = [f.name for f in dataclasses.fields(Protocol)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise InputTypeError(
            f"shiftpool.metrics: unknown protocol option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(fields)}"
        )
    return dataclasses.replace(protocol, **overrides) if overrides else protocol


@dataclass(frozen=True)
class ShiftGeometry:
    """A protocol resolved for one image size: concrete shifts, crop window, grid."""

    image_size: tuple[int, int]
    max_shift: tuple[int, int]
    crop_size: tuple[int, int] | None
    grid_max_shift: tuple[int, int]
    grid_step: tuple[int, int]

    @property
    def input_size(self) -> tuple[int, int]:
        """The size of the images the model sees."""
        return self.crop_size or self.image_size


def resolve_geometry(protocol: Protocol, image_size: tuple[int, int]) -> ShiftGeometry:
    """Resolve ``protocol``'s sizes for images of ``image_size``; a clear error if they don't fit.

    Example:
        >>> resolve_geometry(get_protocol("tips"), (32, 32)).max_shift
        (8, 8)
    """
    h, w = image_size
    crop = "crop" in protocol.shifts
    if protocol.max_shift is None:
        max_shift = (max(h // 4, 1), max(w // 4, 1))
    else:
        max_shift = pair(protocol.max_shift, "max_shift", "metrics.protocol")
    if max_shift[0] >= h or max_shift[1] >= w:
        raise InputError(
            f"shiftpool.metrics: max_shift {max_shift} must be smaller than the image "
            f"{(h, w)} (protocol {protocol.name!r})"
        )
    grid = max_shift if protocol.grid_max_shift is None else pair(
        protocol.grid_max_shift, "grid_max_shift", "metrics.protocol"
    )
    if grid[0] >= h or grid[1] >= w:
        raise InputError(
            f"shiftpool.metrics: grid_max_shift {grid} must be smaller than the image {(h, w)}"
        )
    crop_size = None
    if crop:
        crop_size = (
            (h - max_shift[0], w - max_shift[1])
            if protocol.crop_size is None
            else pair(protocol.crop_size, "crop_size", "metrics.protocol")
        )
        # window corners go up to max_shift - 1 (and grid_max_shift - 1)
        reach = (max(max_shift[0], grid[0]) - 1, max(max_shift[1], grid[1]) - 1)
        if crop_size[0] + reach[0] > h or crop_size[1] + reach[1] > w:
            raise InputError(
                f"shiftpool.metrics: a crop window of {crop_size} at corners up to {reach} does "
                f"not fit in images of {(h, w)}"
            )
    elif protocol.crop_size is not None:
        raise InputError("shiftpool.metrics: crop_size is only used by the 'crop' shift mode")
    step = pair(protocol.grid_step, "grid_step", "metrics.protocol")
    return ShiftGeometry((h, w), max_shift, crop_size, grid, step)
