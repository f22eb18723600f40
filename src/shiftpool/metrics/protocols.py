"""Evaluation protocols: which shifts, drawn from where, filled with what, named after sources.

Each preset reproduces the evaluation code its paper's numbers came from (read there, not copied);
every detail is a field, and :meth:`Protocol.describe` names them all for a report.

- ``aps`` (Chaman & Dokmanić 2021, CIFAR-10): circular shifts; the code draws each axis with
  ``randint(-3, 3)``, i.e. offsets in ``[-3, 2]`` (not ``±3``): ``offsets="half-open"``.
- ``tips`` (Saha & Gokhale 2025): zero-fill ("standard") and circular shifts, each axis drawn
  from ``[-m, m]`` with ``m = H/4``; zero shifts bring in 0 *after* normalisation, i.e. the
  data set's mean colour (``fill="mean"``), not black.
- ``zhang`` (Zhang 2019, ImageNet): ``224`` windows cut from ``256`` images, corners drawn from
  ``[0, 32)`` per axis (``randint(32)``); the unshifted view is the centre crop; the diagonal
  sweep covers corners ``(d, d)``, ``d = 0 .. 32`` (33 windows, offset 32 included).

The LPS paper (Rojas-Gomez et al. 2022) evaluates CIFAR-10 like ``aps`` for circular shifts and
adds zero-padded shifts: ``get_protocol("aps", name="lps", shifts=("zero", "circular"),
offsets={"circular": "half-open", "zero": (-2, 3)})`` (its pad-then-crop moves the content by
``-s`` for a drawn ``s`` in ``[-3, 2]``).

Where the papers' code draws one offset per *batch*, shiftpool draws one per *image* (seeded,
reproducible image by image): the same expected values, with intervals 1.5–2× narrower across
repeats. ``reference=True`` draws per batch, as the papers' code does, for exact replication.

Every field can be overridden: ``get_protocol("tips", max_shift=4)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from shiftpool.core.checks import is_int
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.downsample.geometry import pair
from shiftpool.metrics.homogeneity import DEFAULT_EPS, DEFAULT_WINDOW
from shiftpool.metrics.msb import DEFAULT_RTOL
from shiftpool.metrics.robustness import ROBUSTNESS_METRICS
from shiftpool.metrics.shifts import OffsetRanges, check_shift_mode, default_ranges

METRICS: tuple[str, ...] = (
    "accuracy",
    "consistency",
    "fidelity",
    "diagonal",
    "offset_map",
    "worst_case",
    "sensitivity",
    "msb",
    "homogeneity",
)
#: What a protocol measures unless told otherwise: the papers' columns and the diagonal curve
#: (about one forward pass per diagonal shift; the full offset maps are opt-in).
DEFAULT_METRICS: tuple[str, ...] = ("accuracy", "consistency", "fidelity", "diagonal")
FILLS: tuple[str, ...] = ("mean", "black")

#: One offset range for both axes ``(low, high)`` or one per axis ``((low, high), (low, high))``,
#: inclusive.
OffsetSpec = Union[str, tuple[int, int], tuple[tuple[int, int], tuple[int, int]]]  # noqa: UP007
#: Named offset supports, as functions of ``max_shift``.
OFFSET_SUPPORTS: tuple[str, ...] = ("symmetric", "half-open")
Fill = Union[str, float, tuple[float, ...]]  # noqa: UP007
_WHERE = "shiftpool.metrics.protocol"


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
        offsets: where the consistency/fidelity offsets are drawn: ``None`` or ``"symmetric"``
            = ``[-m, m]`` per axis for ``m = max_shift`` (``crop``: corners ``[0, m - 1]``);
            ``"half-open"`` = ``[-m, m - 1]``, what ``randint(-m, m)`` draws (``aps``); or
            inclusive ranges: ``(low, high)`` for both axes, ``((low, high), (low, high))`` per
            axis; or ``{mode: any of these}`` (modes left out: symmetric).
        crop_size: ``crop`` window ``(h, w)``; ``None`` = image size − ``max_shift``.
        fill: what a ``zero`` shift brings in: ``"mean"`` = 0 in the model's (normalised) input
            space, the data set's mean colour, as the APS, LPS and TIPS code does; ``"black"``
            = ``-mean / std``, which needs the data's statistics
            (``evaluate(..., normalization=(mean, std))``); or a number, or one per channel.
        reference: ``True`` draws one offset per batch for each shifted view, as the papers'
            evaluation code does (for exact replication: its estimates are 1.5–2× noisier and
            the intervals, which assume independent images, are too narrow); ``False`` (default)
            one per image.
        diagonal: the diagonal shifts ``δ = (d, d)`` of the accuracy-vs-shift curve, inclusive:
            ``(low, high)``, or ``m`` for ``[-m, m]`` (``crop``: corners ``[0, m]``); ``None`` =
            ``m = min(max_shift)`` (``crop``: up to the last corner where the window fits, 32 for
            Zhang's 224 of 256). One forward pass per ``d`` and mode per batch.
        grid_max_shift: extent of the offset grid of the 2-D maps (offset map, worst-case
            accuracy, sensitivity); ``None`` = ``max_shift``.
        grid_step: spacing of that grid (1 = every offset).
        metrics: what :func:`~shiftpool.metrics.evaluate` measures when not told.
        homogeneity_window: window of the data set's local homogeneity (layers use their stride).
        homogeneity_eps: tolerance of the homogeneity fraction, relative to the map's range.
        msb_rtol: relative tolerance of "equal to the block maximum".
        confidence: coverage of every interval.
        source: where the preset's settings come from (printed by :meth:`describe`).
    """

    name: str
    shifts: tuple[str, ...]
    max_shift: int | tuple[int, int] | None
    offsets: str | OffsetRanges | dict[str, str | OffsetRanges] | None = None
    crop_size: int | tuple[int, int] | None = None
    fill: Fill = "mean"
    reference: bool = False
    diagonal: int | tuple[int, int] | None = None
    grid_max_shift: int | tuple[int, int] | None = None
    grid_step: int = 1
    metrics: tuple[str, ...] = DEFAULT_METRICS
    homogeneity_window: int | tuple[int, int] = DEFAULT_WINDOW
    homogeneity_eps: float = DEFAULT_EPS
    msb_rtol: float = DEFAULT_RTOL
    confidence: float = 0.95
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        shifts = (self.shifts,) if isinstance(self.shifts, str) else tuple(self.shifts)
        object.__setattr__(self, "shifts", shifts)
        if not shifts:
            raise InputError(f"{_WHERE}: shifts must name at least one mode")
        for mode in shifts:
            check_shift_mode(mode)
        if "crop" in shifts and len(shifts) > 1:
            raise InputError(
                f"{_WHERE}: 'crop' cannot be combined with other shift modes "
                f"(its images are larger than the model's input), got {shifts}"
            )
        object.__setattr__(self, "fill", _check_fill(self.fill))
        object.__setattr__(self, "offsets", _check_offsets(self.offsets))
        object.__setattr__(self, "metrics", check_metrics(self.metrics))
        if not isinstance(self.reference, bool):
            raise InputTypeError(f"{_WHERE}: reference must be True or False, got "
                                 f"{self.reference!r}")
        for name in ("max_shift", "crop_size", "grid_max_shift"):
            value = getattr(self, name)
            if value is not None:
                pair(value, name, "metrics.protocol")
        for name in ("grid_step", "homogeneity_window"):
            pair(getattr(self, name), name, "metrics.protocol")
        if isinstance(self.diagonal, list):
            object.__setattr__(self, "diagonal", tuple(self.diagonal))
        if self.diagonal is not None:
            _diagonal_bounds(self.diagonal, "circular")
        if self.homogeneity_eps < 0 or self.msb_rtol < 0:
            raise InputError(
                f"{_WHERE}: homogeneity_eps and msb_rtol must be >= 0, got "
                f"{self.homogeneity_eps} and {self.msb_rtol}"
            )
        if not 0 < self.confidence < 1:
            raise InputError(f"{_WHERE}: confidence must lie in (0, 1), got {self.confidence}")

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def describe(
        self,
        image_size: tuple[int, int] | None = None,
        normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> dict[str, str]:
        """Every detail of the protocol in words, one entry each, for a report; resolved for
        ``image_size`` (and the fill for the data's ``(mean, std)``) where given.

        Example:
            >>> details = get_protocol("aps").describe((32, 32))
            >>> details["offsets"]
            'circular: dy in [-3, 2], dx in [-3, 2]'
            >>> details["draw"]
            'one offset per image and view, seeded (the same for every model)'
        """
        geometry = None if image_size is None else resolve_geometry(self, image_size)
        out = {"protocol": self.name, "shifts": ", ".join(self.shifts)}
        if self.source:
            out["source"] = self.source
        if geometry is not None:
            out["image size"] = "×".join(map(str, geometry.image_size))
            ranges = geometry.ranges
        else:
            ranges = {}
        out["offsets"] = "; ".join(
            f"{mode}: {_ranges_text(ranges[mode])}" if mode in ranges
            else f"{mode}: {self._offsets_text(mode)}"
            for mode in self.shifts
        )
        if "crop" in self.shifts:
            size = geometry.crop_size if geometry is not None else self.crop_size
            out["crop"] = (f"window {_size_text(size)}, unshifted view = the centre crop"
                           if size is not None else "window = image size − max_shift, "
                           "unshifted view = the centre crop")
        out["draw"] = (
            "one offset per batch and view (the papers' code; intervals too narrow)"
            if self.reference else
            "one offset per image and view, seeded (the same for every model)"
        )
        if "zero" in self.shifts:
            out["fill"] = _fill_text(self.fill, normalization)
        if geometry is not None:
            out["diagonal"] = "; ".join(
                f"{mode}: d = {ds[0]} .. {ds[-1]} ({len(ds)} shifts)"
                for mode, ds in geometry.diagonal.items()
            )
        else:
            out["diagonal"] = _diagonal_text(self.diagonal)
        out["metrics"] = ", ".join(self.metrics)
        out["intervals"] = (f"{self.confidence:.0%} Wilson (proportions), Student t (means), "
                            "over images")
        return out

    def _offsets_text(self, mode: str) -> str:
        spec = self.offsets.get(mode) if isinstance(self.offsets, dict) else self.offsets
        if self.max_shift is not None or not (spec is None or isinstance(spec, str)):
            m = pair(self.max_shift or 1, "max_shift", "metrics.protocol")
            return _ranges_text(_spec_ranges(spec, mode, m))
        if mode == "crop":
            return "corners [0, m - 1] per axis, m = H/4"
        high = "m - 1" if spec == "half-open" else "m"
        return f"[-m, {high}] per axis, m = H/4"


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
    """A protocol resolved for one image size: offset ranges, crop window, diagonal, grid.

    Attributes:
        ranges: ``{mode: ((dy_low, dy_high), (dx_low, dx_high))}``, inclusive: where the
            consistency/fidelity offsets are drawn.
        diagonal: ``{mode: [d, ...]}``, the diagonal shifts ``(d, d)`` of the curve.
    """

    image_size: tuple[int, int]
    max_shift: tuple[int, int]
    crop_size: tuple[int, int] | None
    grid_max_shift: tuple[int, int]
    grid_step: tuple[int, int]
    ranges: dict[str, OffsetRanges] = field(default_factory=dict)
    diagonal: dict[str, list[int]] = field(default_factory=dict)

    @property
    def input_size(self) -> tuple[int, int]:
        """The size of the images the model sees."""
        return self.crop_size or self.image_size


def resolve_geometry(protocol: Protocol, image_size: tuple[int, int]) -> ShiftGeometry:
    """Resolve ``protocol``'s sizes for images of ``image_size``; a clear error if they don't fit.

    Example:
        >>> g = resolve_geometry(get_protocol("tips"), (32, 32))
        >>> g.max_shift, g.ranges["zero"], g.diagonal["zero"][0]
        ((8, 8), ((-8, 8), (-8, 8)), -8)
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
    ranges = {mode: _mode_ranges(protocol, mode, max_shift) for mode in protocol.shifts}
    crop_size = None
    if crop:
        crop_size = (
            (h - max_shift[0], w - max_shift[1])
            if protocol.crop_size is None
            else pair(protocol.crop_size, "crop_size", "metrics.protocol")
        )
        if not (crop_size[0] <= h and crop_size[1] <= w):
            raise InputError(
                f"shiftpool.metrics: a crop window of {crop_size} does not fit in images of "
                f"{(h, w)}"
            )
        last = min(min(max_shift), h - crop_size[0], w - crop_size[1])
        low, high = _diagonal_bounds(
            protocol.diagonal if protocol.diagonal is not None else last, "crop"
        )
        _check_crop_reach(crop_size, (h, w), ranges["crop"], grid, high)
    else:
        low, high = _diagonal_bounds(
            protocol.diagonal if protocol.diagonal is not None else min(max_shift), "circular"
        )
        if protocol.crop_size is not None:
            raise InputError("shiftpool.metrics: crop_size is only used by the 'crop' shift mode")
        for mode, mode_ranges in ranges.items():
            reach = max(abs(v) for axis in mode_ranges for v in axis)
            if reach >= min(h, w) or max(abs(low), abs(high)) >= min(h, w):
                raise InputError(
                    f"shiftpool.metrics: the {mode!r} offsets {_ranges_text(mode_ranges)} and "
                    f"diagonal d = {low} .. {high} must be smaller than the image {(h, w)}"
                )
    step = pair(protocol.grid_step, "grid_step", "metrics.protocol")
    diagonal = {mode: list(range(low, high + 1)) for mode in protocol.shifts}
    return ShiftGeometry((h, w), max_shift, crop_size, grid, step, ranges, diagonal)


def check_metrics(metrics: Iterable[str] | str) -> tuple[str, ...]:
    """The metric names ``metrics`` asks for (``"all"``, one name or several), each once and in
    the order given; an unknown or missing name is one clear error listing the allowed ones.

    Example:
        >>> check_metrics(["accuracy", "msb", "accuracy"])
        ('accuracy', 'msb')
        >>> check_metrics("robustness")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.InputError: shiftpool.metrics: unknown metric(s) 'robustness'; \
allowed: accuracy, consistency, fidelity, diagonal, ...
    """
    if metrics == "all":
        return METRICS
    if isinstance(metrics, str):
        names = [metrics]
    else:
        try:
            names = list(metrics)
        except TypeError:
            names = [metrics]  # type: ignore[list-item]
    unknown = [m for m in names if not isinstance(m, str) or m not in (*METRICS,
                                                                       *ROBUSTNESS_METRICS)]
    if unknown or not names:
        given = ", ".join(repr(m) for m in unknown) if unknown else "none given"
        raise InputError(
            f"shiftpool.metrics: unknown metric(s) {given}; "
            f"allowed: {', '.join((*METRICS, *ROBUSTNESS_METRICS))} or 'all' (without the "
            "robustness metrics)"
        )
    return tuple(dict.fromkeys(names))


def resolve_fill(
    fill: Fill,
    channels: int,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
) -> float | tuple[float, ...]:
    """The value a ``zero`` shift brings in, in the model's input space.

    Args:
        fill: ``"mean"`` (0: the mean colour of normalised inputs), ``"black"``
            (``-mean / std``), a number or one per channel.
        channels: the images' channels.
        normalization: the data's per-channel ``(mean, std)``, needed by ``"black"``.

    Example:
        >>> resolve_fill("mean", 3), resolve_fill("black", 1, ([0.5], [0.25]))
        (0.0, (-2.0,))
    """
    if fill == "mean":
        return 0.0
    if fill == "black":
        if normalization is None:
            raise InputError(
                "shiftpool.metrics: fill='black' needs the data's mean and std: "
                "evaluate(..., normalization=(mean, std)); or use fill='mean' or a number"
            )
        mean, std = (tuple(float(v) for v in values) for values in normalization)
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise InputError(
                f"shiftpool.metrics: normalization must give {channels} means and {channels} "
                f"positive stds for {channels}-channel images, got {mean} and {std}"
            )
        return tuple(-m / s for m, s in zip(mean, std, strict=True))
    if isinstance(fill, tuple) and len(fill) != channels:
        raise InputError(
            f"shiftpool.metrics: fill must be a number or one value per channel ({channels}), "
            f"got {fill}"
        )
    return fill  # type: ignore[return-value]


# -- checks and words ---------------------------------------------------------------------------


def _check_fill(fill: object) -> Fill:
    if isinstance(fill, str):
        if fill not in FILLS:
            raise InputError(
                f"{_WHERE}: fill must be 'mean', 'black', a number or one number per channel, "
                f"got {fill!r}"
            )
        return fill
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        return float(fill)
    if isinstance(fill, (tuple, list)) and fill and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in fill
    ):
        return tuple(float(v) for v in fill)
    raise InputError(
        f"{_WHERE}: fill must be 'mean', 'black', a number or one number per channel, "
        f"got {fill!r}"
    )


def _check_range(value: object) -> tuple[int, int]:
    if (isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value)
            and value[0] <= value[1]):
        return int(value[0]), int(value[1])
    raise InputError(
        f"{_WHERE}: an offset range must be (low, high) with low <= high, got {value!r}"
    )


def _check_spec(spec: object) -> str | OffsetRanges:
    """A named support, ``(low, high)`` for both axes, or ``((low, high), (low, high))``."""
    if isinstance(spec, str):
        if spec not in OFFSET_SUPPORTS:
            raise InputError(
                f"{_WHERE}: offsets must be one of {', '.join(OFFSET_SUPPORTS)} or ranges "
                f"(low, high), got {spec!r}"
            )
        return spec
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and all(is_int(v) for v in spec):
        axis = _check_range(spec)
        return axis, axis
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return _check_range(spec[0]), _check_range(spec[1])
    raise InputError(
        f"{_WHERE}: offsets must be 'symmetric', 'half-open', (low, high), ((low, high), "
        f"(low, high)) per axis, or {{mode: any of these}}, got {spec!r}"
    )


def _check_offsets(offsets: object) -> str | OffsetRanges | dict[str, str | OffsetRanges] | None:
    if offsets is None:
        return None
    if isinstance(offsets, Mapping):
        out = {}
        for mode, spec in offsets.items():
            check_shift_mode(mode)
            out[mode] = _check_spec(spec)
        return out
    return _check_spec(offsets)


def _mode_ranges(protocol: Protocol, mode: str, max_shift: tuple[int, int]) -> OffsetRanges:
    spec = protocol.offsets.get(mode) if isinstance(protocol.offsets, dict) else protocol.offsets
    return _spec_ranges(spec, mode, max_shift)


def _spec_ranges(
    spec: str | OffsetRanges | None, mode: str, max_shift: tuple[int, int]
) -> OffsetRanges:
    if spec is None or spec == "symmetric" or (spec == "half-open" and mode == "crop"):
        ranges = default_ranges(max_shift, mode)
    elif spec == "half-open":
        ranges = ((-max_shift[0], max_shift[0] - 1), (-max_shift[1], max_shift[1] - 1))
    else:
        ranges = spec  # type: ignore[assignment]
    if mode == "crop" and min(ranges[0][0], ranges[1][0]) < 0:
        raise InputError(
            f"shiftpool.metrics: crop offsets are window corners and must be >= 0, got "
            f"{_ranges_text(ranges)}"
        )
    return ranges


def _diagonal_bounds(diagonal: object, mode: str) -> tuple[int, int]:
    if is_int(diagonal):
        m = int(diagonal)  # type: ignore[call-overload]
        if m < 0:
            raise InputError(f"{_WHERE}: diagonal must be >= 0 or (low, high), got {m}")
        return (0, m) if mode == "crop" else (-m, m)
    low, high = _check_range(diagonal)
    if mode == "crop" and low < 0:
        raise InputError(f"{_WHERE}: crop diagonal corners must be >= 0, got {(low, high)}")
    return low, high


def _check_crop_reach(
    crop_size: tuple[int, int], image: tuple[int, int], ranges: OffsetRanges,
    grid: tuple[int, int], diagonal_high: int,
) -> None:
    """Every window (random corners, grid corners up to ``grid - 1``, diagonal corners) fits."""
    for axis in (0, 1):
        reach = max(ranges[axis][1], grid[axis] - 1, diagonal_high)
        if crop_size[axis] + reach > image[axis]:
            raise InputError(
                f"shiftpool.metrics: a crop window of {crop_size} at corners up to {reach} "
                f"does not fit in images of {image}"
            )


def _plain(value: object) -> object:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _ranges_text(ranges: OffsetRanges) -> str:
    (y0, y1), (x0, x1) = ranges
    return f"dy in [{y0}, {y1}], dx in [{x0}, {x1}]"


def _size_text(size: int | tuple[int, int]) -> str:
    return "×".join(map(str, pair(size, "crop_size", "metrics.protocol")))


def _fill_text(fill: Fill, normalization: tuple[Sequence[float], Sequence[float]] | None) -> str:
    if fill == "mean":
        return "0 in normalised space (the data set's mean colour)"
    if fill == "black":
        if normalization is None:
            return "black (-mean / std of the data)"
        values = resolve_fill(fill, len(normalization[0]), normalization)
        return "black (-mean / std = " + ", ".join(f"{v:.4g}" for v in values) + ")"  # type: ignore[union-attr]
    return f"{fill} in the model's input space"


def _diagonal_text(diagonal: int | tuple[int, int] | None) -> str:
    if diagonal is None:
        return "d = -m .. m with m = min(max_shift) (crop: 0 .. m)"
    if is_int(diagonal):
        return f"d = -{diagonal} .. {diagonal} (crop: 0 .. {diagonal})"
    low, high = diagonal  # type: ignore[misc]
    return f"d = {low} .. {high}"


PROTOCOLS: dict[str, Protocol] = {
    "zhang": Protocol(
        "zhang", ("crop",), max_shift=32,
        source="Zhang 2019 (antialiased-cnns): 224 windows of 256 images, corners "
        "randint(32) = [0, 31] per axis; diagonal sweep over corners (d, d), d = 0..32",
    ),
    "aps": Protocol(
        "aps", ("circular",), max_shift=3, offsets="half-open",
        source="Chaman & Dokmanić 2021 (CIFAR-10 evaluation): torch.roll by "
        "randint(-3, 3) = [-3, 2] per axis",
    ),
    "tips": Protocol(
        "tips", ("zero", "circular"), max_shift=None,
        source="Saha & Gokhale 2025: standard (zero-fill after normalisation) and circular "
        "shifts, randint(-H/4, H/4 + 1) per axis",
    ),
}
