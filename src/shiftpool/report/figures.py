"""Figures of evaluation results (matplotlib, an optional extra: ``pip install shiftpool[plots]``).

Every function takes results and a path, draws with the Agg canvas (no pyplot, no global
state, no display needed), writes the file atomically and returns its path. The format
follows the suffix (``.png``, ``.pdf``, ``.svg``).

Results may be given as one :class:`~shiftpool.metrics.EvaluationResult`, its ``to_dict()`` (as
read back from JSON), or a mapping ``{label: result}`` to compare several runs in one figure.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shiftpool.core.errors import InputError, InputTypeError, MissingExtraError
from shiftpool.metrics.result import EvaluationResult

SUMMARY_KEYS = ("acc", "s_cons", "s_fid", "c_cons", "c_fid", "r_cons", "r_fid", "crop_cons",
                "crop_fid", "msb")
_ANNOTATE_MAX_CELLS = 81


def plot_accuracy_vs_offset(results: Any, path: str | os.PathLike[str]) -> Path:
    """Accuracy and agreement with the unshifted prediction against the shift's size.

    The x axis is ``max(|dy|, |dx|)`` (from the centre crop for ``crop``); each point averages
    the offset-map cells at that distance. One line per run and shift mode.
    """
    runs = _labelled(results)
    fig = _figure(10, 4)
    axes = fig.subplots(1, 2, sharex=True)
    drawn = 0
    for label, result in runs.items():
        for mode, grid in (result.get("offset_maps") or {}).items():
            name = _join(label, mode)
            for ax, quantity in zip(axes, ("accuracy", "agreement"), strict=True):
                radii, values = _by_radius(grid, grid[quantity])
                ax.plot(radii, values, marker="o", label=name)
            drawn += 1
    _require(drawn, "offset maps", "offset_map")
    for ax, title in zip(axes, ("accuracy", "agreement with the unshifted prediction"),
                         strict=True):
        ax.set_title(title)
        ax.set_xlabel("shift max(|dy|, |dx|) (pixels)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of images")
    axes[1].legend(fontsize="small")
    return _save(fig, path)


def plot_consistency_map(
    results: Any, path: str | os.PathLike[str], quantity: str = "agreement"
) -> Path:
    """The 2-D map over offsets ``(dy, dx)`` of ``agreement`` (with the unshifted prediction)
    or ``accuracy``; one panel per run and shift mode."""
    if quantity not in ("agreement", "accuracy"):
        raise InputError(
            f"shiftpool.report: quantity must be 'agreement' or 'accuracy', got {quantity!r}"
        )
    panels = [
        (_join(label, mode), grid, grid[quantity])
        for label, result in _labelled(results).items()
        for mode, grid in (result.get("offset_maps") or {}).items()
    ]
    _require(len(panels), "offset maps", "offset_map")
    return _heatmaps(panels, path, f"{quantity} by offset", quantity)


def plot_sensitivity_map(results: Any, path: str | os.PathLike[str]) -> Path:
    """The map over offsets of the mean cosine similarity of features (translation
    sensitivity); one panel per run and shift mode."""
    panels = [
        (_join(label, f"{mode}, {grid['layer']} ({grid['where']})"), grid, grid["mean"])
        for label, result in _labelled(results).items()
        for mode, grid in (result.get("sensitivity") or {}).items()
    ]
    _require(len(panels), "sensitivity maps", "sensitivity")
    return _heatmaps(panels, path, "feature cosine similarity by offset", "cosine similarity")


def plot_msb(results: Any, path: str | os.PathLike[str]) -> Path:
    """Maximum-sampling bias per downsampling layer (and the mean), bars with 95% intervals,
    grouped by run. Flat table rows (with ``msb``) give one bar per row instead."""
    if _is_rows(results):
        rows = [r for r in results if r.get("msb") is not None]
        _require(len(rows), "MSB values", "msb")
        series = {"msb": [{"value": r["msb"]} for r in rows]}
        return _bars([_row_label(r, i) for i, r in enumerate(rows)], series, path,
                     "maximum-sampling bias", "fraction of outputs equal to the block maximum")
    runs = {k: v.get("msb") or {} for k, v in _labelled(results).items()}
    layers = list(dict.fromkeys(layer for msb in runs.values() for layer in msb))
    _require(len(layers), "MSB values", "msb")
    series = {label or "msb": [msb.get(layer) for layer in layers] for label, msb in runs.items()}
    return _bars(layers, series, path, "maximum-sampling bias per downsampling layer",
                 "fraction of outputs equal to the block maximum", rotate=len(layers) > 6,
                 xlabel="layer")


def plot_homogeneity(data: Any, path: str | os.PathLike[str]) -> Path:
    """Local homogeneity (``fraction`` and ``score``) per data set, with 95% intervals.

    ``data``: ``{name: Homogeneity | its to_dict() | EvaluationResult}``, or rows with
    ``dataset``, ``fraction`` and ``score`` keys (as ``shiftpool homogeneity`` writes).
    """
    if _is_rows(data):
        entries = {str(r.get("dataset", i)): r for i, r in enumerate(data)}
    elif isinstance(data, Mapping):
        entries = {str(k): _homogeneity_dict(v) for k, v in data.items()}
    else:
        raise InputTypeError("shiftpool.report: plot_homogeneity needs {name: homogeneity} or rows")
    entries = {k: v for k, v in entries.items() if v is not None}
    _require(len(entries), "homogeneity values", "homogeneity")
    series = {q: [e.get(q) for e in entries.values()] for q in ("fraction", "score")}
    return _bars(list(entries), series, path, "local homogeneity", "homogeneity")


def plot_summary(
    rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str],
    keys: Sequence[str] | None = None,
) -> Path:
    """Bars of the summary metrics (``acc``, ``s_cons``, ``c_cons``, ...) of each row."""
    rows = list(rows)
    keys = [k for k in (keys or SUMMARY_KEYS) if any(_number(r.get(k)) for r in rows)]
    _require(len(keys), "summary metrics", "accuracy/consistency")
    series = {_row_label(r, i): [{"value": r.get(k)} for k in keys] for i, r in enumerate(rows)}
    return _bars(keys, series, path, "accuracy and shift invariance", "fraction")


def write_figures(
    rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str],
    results: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Every figure the inputs allow, into ``out_dir``.

    Args:
        rows: table rows (flat summaries with ``method`` or ``name``): the summary bars, and
            MSB bars when rows hold ``msb``.
        results: optional ``{label: EvaluationResult or its dict}``: adds the offset,
            consistency and sensitivity maps and MSB per layer where they were measured.

    Returns:
        ``{figure kind: path}``.
    """
    out = Path(out_dir)
    files: dict[str, Path] = {"summary": plot_summary(rows, out / "summary.png")}
    if any(_number(r.get("msb")) for r in rows):
        files["msb"] = plot_msb(list(rows), out / "msb.png")
    if not results:
        return files
    runs = _labelled(results)
    if any(r.get("offset_maps") for r in runs.values()):
        files["accuracy_vs_offset"] = plot_accuracy_vs_offset(runs, out / "accuracy_vs_offset.png")
        files["consistency_map"] = plot_consistency_map(runs, out / "consistency_map.png")
    if any(r.get("sensitivity") for r in runs.values()):
        files["sensitivity_map"] = plot_sensitivity_map(runs, out / "sensitivity_map.png")
    if any(r.get("msb") for r in runs.values()):
        files["msb_layers"] = plot_msb(runs, out / "msb_layers.png")
    return files


# -- inputs --------------------------------------------------------------------------------------

def _as_dict(result: Any) -> dict[str, Any]:
    if isinstance(result, EvaluationResult):
        return result.to_dict()
    if isinstance(result, Mapping):
        return dict(result)
    raise InputTypeError(
        f"shiftpool.report: expected an EvaluationResult or its dict, got {type(result).__name__}"
    )


def _labelled(results: Any) -> dict[str, dict[str, Any]]:
    """``{label: result dict}`` from one result or a mapping of them."""
    if isinstance(results, EvaluationResult) or (
        isinstance(results, Mapping) and "protocol" in results
    ):
        return {"": _as_dict(results)}
    if isinstance(results, Mapping):
        return {str(k): _as_dict(v) for k, v in results.items()}
    raise InputTypeError(
        "shiftpool.report: expected an EvaluationResult, its dict, or {label: result}, got "
        f"{type(results).__name__}"
    )


def _homogeneity_dict(value: Any) -> dict[str, Any] | None:
    if isinstance(value, EvaluationResult) or (isinstance(value, Mapping) and "protocol" in value):
        return _as_dict(value).get("homogeneity")
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)


def _is_rows(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and all(
        isinstance(r, Mapping) for r in value
    )


def _row_label(row: Mapping[str, Any], index: int) -> str:
    return str(row.get("method", row.get("name", row.get("dataset", index))))


def _join(label: str, detail: str) -> str:
    return f"{label} · {detail}" if label else detail


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(count: int, what: str, metric: str) -> None:
    if not count:
        raise InputError(
            f"shiftpool.report: the results hold no {what}; evaluate with the {metric!r} metric"
        )


def _by_radius(grid: Mapping[str, Any], values: list[list[float]]) -> tuple[list[int], list[float]]:
    """Mean of the cells at each Chebyshev distance from the reference offset."""
    ry, rx = grid.get("reference", (0, 0))
    sums: dict[int, list[float]] = {}
    for i, dy in enumerate(grid["dys"]):
        for j, dx in enumerate(grid["dxs"]):
            sums.setdefault(max(abs(dy - ry), abs(dx - rx)), []).append(values[i][j])
    radii = sorted(sums)
    return radii, [sum(sums[r]) / len(sums[r]) for r in radii]


# -- drawing -------------------------------------------------------------------------------------

def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise MissingExtraError(
            "shiftpool.report: figures need matplotlib; install it with "
            "`pip install shiftpool[plots]`"
        ) from error
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix or ".png"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, format=suffix.lstrip("."))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _heatmaps(
    panels: list[tuple[str, Mapping[str, Any], list[list[float | None]]]],
    path: str | os.PathLike[str], title: str, colour_label: str,
) -> Path:
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig = _figure(4.2 * cols + 0.8, 3.8 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    values = [v for _, _, grid in panels for row in grid for v in row if v is not None]
    low = min(min(values), 0.999)
    image = None
    for ax, (name, grid, data) in zip(axes.flat, panels, strict=False):
        cells = [[math.nan if v is None else v for v in row] for row in data]
        image = ax.imshow(cells, vmin=low, vmax=1.0, cmap="viridis", origin="upper")
        ax.set_xticks(range(len(grid["dxs"])), [str(d) for d in grid["dxs"]], fontsize="small")
        ax.set_yticks(range(len(grid["dys"])), [str(d) for d in grid["dys"]], fontsize="small")
        ax.set_xlabel("dx")
        ax.set_ylabel("dy")
        ax.set_title(name, fontsize="medium")
        if len(grid["dys"]) * len(grid["dxs"]) <= _ANNOTATE_MAX_CELLS:
            for i, row in enumerate(cells):
                for j, v in enumerate(row):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize="x-small",
                            color="white" if v < (low + 1) / 2 else "black")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes, label=colour_label, shrink=0.8)
    fig.suptitle(title)
    return _save(fig, path)


def _bars(
    groups: list[str], series: Mapping[str, list[Mapping[str, Any] | None]],
    path: str | os.PathLike[str], title: str, ylabel: str, rotate: bool = False,
    xlabel: str | None = None,
) -> Path:
    """Grouped bars: one group per ``groups`` entry, one bar per series, with error bars
    where the entries hold ``low`` and ``high``."""
    fig = _figure(max(6.0, 0.9 * len(groups) * max(1, len(series)) ** 0.5 + 2), 4)
    ax = fig.subplots()
    width = 0.8 / max(len(series), 1)
    for k, (name, entries) in enumerate(series.items()):
        xs, heights, errors = [], [], [[], []]
        for g, entry in enumerate(entries):
            value = None if entry is None else entry.get("value")
            if not _number(value):
                continue
            xs.append(g + (k - (len(series) - 1) / 2) * width)
            heights.append(value)
            low, high = entry.get("low"), entry.get("high")
            errors[0].append(value - low if _number(low) else 0.0)
            errors[1].append(high - value if _number(high) else 0.0)
        has_interval = any(errors[0]) or any(errors[1])
        ax.bar(xs, heights, width, yerr=errors if has_interval else None, capsize=3, label=name)
    ax.set_xticks(range(len(groups)), groups, rotation=45 if rotate else 0,
                  ha="right" if rotate else "center")
    ax.set_ylabel(ylabel)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize="small")
    return _save(fig, path)
