"""Figures of studies (matplotlib, Agg canvas, PNG bytes): the verdicts as a forest plot, grids
as heatmaps, trade-offs as scatter plots with whiskers. Each figure's title or caption line
names the data set, model, epochs, seeds and images it rests on (:func:`caption`).

Every function returns PNG bytes; without matplotlib it raises
:class:`~shiftpool.core.errors.MissingExtraError` (the report then notes the figures skipped).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from shiftpool.harness.studies.framework import (
    NOT_REPRODUCED,
    REPRODUCED,
    Cell,
    Pooled,
    Verdict,
    pooled_metric,
)
from shiftpool.harness.studies.plan import StudyPlan
from shiftpool.report.figures import figure_bytes, new_figure

OUTCOME_COLOURS = {REPRODUCED: "tab:green", NOT_REPRODUCED: "tab:red"}
NEUTRAL = "tab:gray"


def png(fig: Any) -> bytes:
    """``fig`` as PNG bytes (110 dpi)."""
    return figure_bytes(fig, "png", dpi=110)


def caption(plan: StudyPlan, cells: Sequence[Cell], dataset: str | None = None) -> str:
    """``cifar10 · simple_cnn · 10 epochs · 2,000 train images · seeds 0,1,2 · n=1,000 test``."""
    base = plan.base
    n = max((e.n for c in cells for k, e in c.estimates.items() if k == "acc"), default=0)
    parts = [dataset or base.dataset, base.model, f"{base.epochs} epochs"]
    if base.train_subset is not None:
        parts.append(f"{base.train_subset:,} train images")
    parts += [f"seeds {','.join(map(str, plan.seeds))}", f"n={n:,} test images"]
    return " · ".join(parts)


def verdict_figure(verdicts: Sequence[Verdict], title: str) -> bytes:
    """Each claim's contrast with its 95% interval, coloured by outcome, beside the zero line;
    exact-value claims show the range over runs."""
    shown = [v for v in verdicts if v.estimate is not None]
    fig = new_figure(8, 0.5 + 0.45 * max(len(shown), 1))
    ax = fig.add_subplot()
    for row, verdict in enumerate(reversed(shown)):
        e = verdict.estimate
        assert e is not None
        colour = OUTCOME_COLOURS.get(verdict.outcome, NEUTRAL)
        low, high = (e.low, e.high) if math.isfinite(e.low) else (e.value, e.value)
        ax.errorbar([e.value], [row], xerr=[[e.value - low], [high - e.value]], fmt="o",
                    color=colour, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(shown)), [f"{v.claim.key} ({v.outcome})" for v in reversed(shown)])
    ax.set_xlabel("contrast, 95% interval (claimed side: see report)")
    ax.set_title(title, fontsize=9)
    return png(fig)


def heatmap_figure(panels: Sequence[tuple[str, list[list[float]]]], rows: Sequence[Any],
                   columns: Sequence[Any], row_label: str, column_label: str,
                   title: str) -> bytes:
    """One heatmap per panel ``(title, values[row][column])``, values annotated (NaN blank)."""
    fig = new_figure(3.6 * len(panels) + 0.5, 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, values) in zip(axes, panels, strict=True):
        image = ax.imshow(values, cmap="viridis", aspect="auto")
        finite = [v for line in values for v in line if math.isfinite(v)]
        middle = (min(finite) + max(finite)) / 2 if finite else 0.0
        for i, line in enumerate(values):
            for j, v in enumerate(line):
                if math.isfinite(v):  # dark text on the light (high) end of viridis
                    ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7,
                            color="black" if v > middle else "white")
        ax.set_xticks(range(len(columns)), [str(c) for c in columns])
        ax.set_yticks(range(len(rows)), [str(r) for r in rows])
        ax.set_xlabel(column_label)
        ax.set_ylabel(row_label)
        ax.set_title(name, fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(title, fontsize=9)
    return png(fig)


def grid_values(plan: StudyPlan, cells: Sequence[Cell], metric: str,
                arms: Mapping[tuple[Any, Any], str], rows: Sequence[Any],
                columns: Sequence[Any]) -> list[list[float]]:
    """``values[row][column]``: the mean over seeds of ``metric`` of the arm at each grid
    point (``arms[(row, column)]``), NaN where there is none."""
    values = []
    for r in rows:
        line = []
        for c in columns:
            pooled = pooled_metric(arms[(r, c)], metric, cells) if (r, c) in arms else None
            line.append(math.nan if pooled is None else pooled.value)
        values.append(line)
    return values


def tradeoff_figure(series: Mapping[str, Sequence[tuple[str, Pooled | None, Pooled | None]]],
                    x_label: str, y_label: str, title: str, connect: bool = True) -> bytes:
    """One colour per series, points ``(label, x, y)`` with interval whiskers on both axes,
    each point labelled; ``connect`` draws a line through a series' points in order (for an
    ordered factor such as a kernel size, not for unordered methods)."""
    fig = new_figure(6.5, 4.5)
    ax = fig.add_subplot()
    for name, points in series.items():
        drawn = [(label, x, y) for label, x, y in points if x is not None and y is not None]
        if not drawn:
            continue
        xs = [x.value for _, x, _ in drawn]
        ys = [y.value for _, _, y in drawn]
        line = ax.plot(xs, ys, linestyle="-" if connect else "none", marker="o", alpha=0.6,
                       label=name)[0]
        for label, x, y in drawn:
            ax.errorbar([x.value], [y.value], xerr=[[x.value - x.low], [x.high - x.value]],
                        yerr=[[y.value - y.low], [y.high - y.value]], fmt="o",
                        color=line.get_color(), capsize=2)
            ax.annotate(label, (x.value, y.value), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return png(fig)


def bars_figure(groups: Mapping[str, Mapping[str, Pooled | None]], y_label: str,
                title: str) -> bytes:
    """Grouped bars (group -> {bar label: pooled value}) with 95% interval whiskers."""
    fig = new_figure(max(5.0, 1.4 * len(groups) + 2), 4)
    ax = fig.add_subplot()
    labels = list(dict.fromkeys(k for bars in groups.values() for k in bars))
    width = 0.8 / max(len(labels), 1)
    for j, label in enumerate(labels):
        named = False
        for i, bars in enumerate(groups.values()):
            pooled = bars.get(label)
            if pooled is None:
                continue
            low = pooled.value - pooled.low if math.isfinite(pooled.low) else 0.0
            high = pooled.high - pooled.value if math.isfinite(pooled.high) else 0.0
            ax.bar(i + (j - (len(labels) - 1) / 2) * width, pooled.value, width,
                   yerr=[[low], [high]], capsize=3, color=f"C{j}",
                   label=None if named else label)
            named = True
    ax.set_xticks(range(len(groups)), list(groups), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(y_label)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return png(fig)


def curve_figure(panels: Mapping[str, Mapping[str, Sequence[tuple[float, Pooled | None]]]],
                 x_label: str, title: str) -> bytes:
    """One panel per quantity (``{panel: {line: [(x, pooled y)]}}``), each line with its 95%
    band."""
    fig = new_figure(5 * len(panels) + 0.5, 4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (panel, lines) in zip(axes, panels.items(), strict=True):
        for name, points in lines.items():
            drawn = [(x, y) for x, y in points if y is not None]
            if not drawn:
                continue
            xs = [x for x, _ in drawn]
            line = ax.plot(xs, [y.value for _, y in drawn], marker="o", label=name)[0]
            ax.fill_between(xs, [y.low for _, y in drawn], [y.high for _, y in drawn],
                            color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_xlabel(x_label)
        ax.set_ylabel(panel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return png(fig)
