"""The correlation scatter figure: MSB (or any per-model quantity) against each shift metric.

One panel per metric: one point per model, coloured by method (the same colour in every panel),
with its intervals as whiskers where known; the least-squares line with its pointwise bootstrap
band; the panel's title gives Pearson's and Spearman's coefficients with their intervals and
permutation p-values. Drawn with matplotlib's Agg canvas (the ``plots`` extra); without
matplotlib, :class:`~shiftpool.core.errors.MissingExtraError` names the extra.

Example:
    >>> models = [(1.0, 0.80, "max"), (0.6, 0.90, "blur"), (0.7, 0.93, "aps"), (0.4, 0.97, "tips")]
    >>> points = [ScatterPoint(x, y, method) for x, y, method in models]
    >>> png = correlation_figure([ScatterPanel("C-Cons", points)], title="MSB vs C-Cons")
    >>> png[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shiftpool.core.errors import InputError
from shiftpool.core.io import atomic_write
from shiftpool.metrics.correlation import Correlation, LinearFit
from shiftpool.report.figures import figure_bytes, new_figure

_COLUMNS = 3
_SYMBOLS = {"pearson": "r", "spearman": "ρ"}


@dataclass(frozen=True)
class ScatterPoint:
    """One model in a panel.

    Attributes:
        x, y: its values (e.g. MSB and C-Cons).
        method: the colour group (the downsampling method).
        x_low, x_high, y_low, y_high: its intervals, drawn as whiskers (``nan``: none).
    """

    x: float
    y: float
    method: str
    x_low: float = math.nan
    x_high: float = math.nan
    y_low: float = math.nan
    y_high: float = math.nan


@dataclass(frozen=True)
class ScatterPanel:
    """One panel: a shift metric against the x quantity.

    Attributes:
        y_name: the metric's name, the panel's y label.
        points: one per model.
        fit: the regression line and its band (none: no line).
        correlations: ``{"pearson": Correlation, "spearman": Correlation}`` for the title.
        note: shown in the panel instead of coefficients (e.g. "too few models").
    """

    y_name: str
    points: Sequence[ScatterPoint]
    fit: LinearFit | None = None
    correlations: dict[str, Correlation] | None = None
    note: str = ""


def correlation_figure(panels: Sequence[ScatterPanel], *, x_name: str = "MSB", title: str = "",
                       subtitle: str = "", image_format: str = "png") -> bytes:
    """The figure's bytes in ``image_format`` (``png``, ``svg``, ``pdf``).

    Args:
        panels: one per metric (at least one, each with at least one point).
        x_name: the x axis label.
        title: the figure's title; ``subtitle`` a second line (data set, model, epochs,
            seeds, n).
    """
    if not panels or any(not panel.points for panel in panels):
        raise InputError("shiftpool.report.correlation: nothing to draw (a panel without points)")
    fig = _canvas(len(panels))
    rows = math.ceil(len(panels) / _COLUMNS)
    columns = min(len(panels), _COLUMNS)
    axes = fig.subplots(rows, columns, squeeze=False)
    colours = _method_colours(panels)
    for ax, panel in zip(axes.flat, panels, strict=False):
        _panel(ax, panel, x_name, colours)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles = [_marker(fig, colour, method) for method, colour in colours.items()]
    fig.legend(handles=handles, loc="outside right upper", title="method", fontsize="small")
    heading = "\n".join(text for text in (title, subtitle) if text)
    if heading:
        fig.suptitle(heading, fontsize="medium")
    return figure_bytes(fig, image_format, dpi=110)


def plot_correlation(panels: Sequence[ScatterPanel], path: str | os.PathLike[str],
                     **options: str) -> Path:
    """Write :func:`correlation_figure` to ``path`` atomically (format from the suffix, PNG
    without one); ``options`` are its keyword arguments."""
    path = Path(path)
    data = correlation_figure(panels, image_format=path.suffix.lstrip(".") or "png", **options)
    return atomic_write(path, lambda handle: handle.write(data))


def coefficient_text(correlations: dict[str, Correlation] | None) -> str:
    """``r = -0.81 [-0.95, -0.40], p = 0.012; ρ = ...``: the coefficients of a panel.

    Example:
        >>> c = Correlation("pearson", -0.8, -0.95, -0.4, 0.0123, 6)
        >>> coefficient_text({"pearson": c})
        'r = -0.80 [-0.95, -0.40], p = 0.012'
    """
    parts = []
    for kind, c in (correlations or {}).items():
        parts.append(f"{_SYMBOLS.get(kind, kind)} = {c.value:.2f} [{c.low:.2f}, {c.high:.2f}], "
                     f"p = {c.p_value:.2g}")
    return "; ".join(parts)


# -- drawing ---------------------------------------------------------------------------------


def _canvas(panels: int) -> Any:
    rows = math.ceil(panels / _COLUMNS)
    return new_figure(4.4 * min(panels, _COLUMNS) + 1.6, 3.7 * rows + 0.6)


def _method_colours(panels: Sequence[ScatterPanel]) -> dict[str, Any]:
    from matplotlib import colormaps

    methods = list(dict.fromkeys(p.method for panel in panels for p in panel.points))
    palette = colormaps["tab10" if len(methods) <= 10 else "tab20"]
    return {method: palette(i % palette.N) for i, method in enumerate(methods)}


def _marker(fig: Any, colour: Any, method: str) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], marker="o", linestyle="", color=colour, label=method)


def _panel(ax: Any, panel: ScatterPanel, x_name: str, colours: dict[str, Any]) -> None:
    fit = panel.fit
    if fit is not None and fit.resamples:
        ax.fill_between(fit.xs, fit.low, fit.high, color="0.5", alpha=0.2, linewidth=0,
                        label=f"{100 * fit.confidence:.0f}% band")
    if fit is not None:
        ax.plot(fit.xs, fit.fit, color="0.25", linewidth=1.2)
    for point in panel.points:
        ax.errorbar(point.x, point.y, xerr=_whisker(point.x, point.x_low, point.x_high),
                    yerr=_whisker(point.y, point.y_low, point.y_high), fmt="o",
                    color=colours[point.method], markersize=5, capsize=2, elinewidth=0.8,
                    alpha=0.9)
    ax.set_ylim(*_limits(panel))  # the band of a few models can reach far beyond the data
    text = coefficient_text(panel.correlations) or panel.note
    ax.set_title(f"{panel.y_name} (n = {len(panel.points)})\n{text}", fontsize="small")
    ax.set_xlabel(x_name)
    ax.set_ylabel(panel.y_name)
    ax.grid(alpha=0.3)


def _limits(panel: ScatterPanel) -> tuple[float, float]:
    """The y range of the points, their whiskers and the fitted line, padded by 8%."""
    values = [v for p in panel.points for v in (p.y, p.y_low, p.y_high) if math.isfinite(v)]
    if panel.fit is not None:
        values += [v for v in panel.fit.fit if math.isfinite(v)]
    low, high = min(values), max(values)
    pad = 0.08 * (high - low) if high > low else max(0.02, 0.05 * abs(high))
    return low - pad, high + pad


def _whisker(value: float, low: float, high: float) -> list[list[float]] | None:
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return [[max(value - low, 0.0)], [max(high - value, 0.0)]]
