"""Figures of evaluation results (matplotlib, an optional extra: ``pip install shiftpool[plots]``).

Every function takes results and a path, draws with the Agg canvas (no pyplot, no global
state, no display needed), writes the file atomically (with the usual file mode, ``0644``
under umask ``022``) and returns its path. The format follows the suffix (``.png``, ``.pdf``,
``.svg``). :func:`write_figures` draws every figure first and then writes them as one set;
:func:`render_figures` gives their bytes, to write together with other files.

Results may be given as one :class:`~shiftpool.metrics.EvaluationResult`, its ``to_dict()`` (as
read back from JSON), or a mapping ``{label: result}`` to compare several runs in one figure.

Every figure draws the intervals its data carry (error bars, whiskers or bands: 95% unless the
estimates say otherwise) and, given ``info`` (a :class:`~shiftpool.report.tables.ReportInfo`),
states in its title what it rests on: data set, model, epochs, seeds and test images.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shiftpool.core.errors import InputError, InputTypeError, MissingExtraError
from shiftpool.core.io import atomic_write, atomic_write_set
from shiftpool.metrics.result import MODE_PREFIX, EvaluationResult
from shiftpool.metrics.stats import wilson_interval
from shiftpool.report.tables import ReportFile, ReportInfo

#: The columns the summary figure draws, where the rows hold them: accuracy; per shift mode
#: consistency, fidelity, worst-case accuracy and feature similarity; MSB.
SUMMARY_KEYS: tuple[str, ...] = (
    "acc",
    *(f"{p}_{q}" for p in MODE_PREFIX.values() for q in ("cons", "fid", "worst", "sens")),
    "msb",
)
_ANNOTATE_MAX_CELLS = 81

#: The file of each figure :func:`write_figures` draws, by kind.
FIGURE_FILES: dict[str, str] = {
    "summary": "summary.png",
    "consistency_vs_accuracy": "consistency_vs_accuracy.png",
    "differences": "differences.png",
    "msb": "msb.png",
    "accuracy_vs_diagonal": "accuracy_vs_diagonal.png",
    "accuracy_vs_offset": "accuracy_vs_offset.png",
    "consistency_map": "consistency_map.png",
    "sensitivity_map": "sensitivity_map.png",
    "msb_layers": "msb_layers.png",
}


def plot_accuracy_vs_offset(results: Any, path: str | os.PathLike[str], *,
                            info: ReportInfo | None = None) -> Path:
    """Accuracy and agreement with the unshifted prediction against the shift's size.

    The x axis is ``max(|dy|, |dx|)`` (from the centre crop for ``crop``); each point averages
    the offset-map cells at that distance. One line per run and shift mode, with a band: the
    95% Wilson interval of a proportion of the map's ``n`` images at the averaged value (exact
    for one cell; for an average of cells measured on the same images it is conservative: the
    average's variance is at most that of one proportion at the averaged value).
    """
    return _save(_accuracy_vs_offset(results, info), path)


def _accuracy_vs_offset(results: Any, info: ReportInfo | None = None) -> Any:
    runs = _labelled(results)
    fig = new_figure(10, 4)
    axes = fig.subplots(1, 2, sharex=True)
    drawn = 0
    for label, result in runs.items():
        for mode, grid in (result.get("offset_maps") or {}).items():
            name = _join(label, mode)
            for ax, quantity in zip(axes, ("accuracy", "agreement"), strict=True):
                radii, values = _by_radius(grid, grid[quantity])
                line = ax.plot(radii, values, marker="o", label=name)[0]
                n = grid.get("n")
                if _number(n) and n >= 1:
                    bands = [wilson_interval(round(v * n), int(n)) for v in values]
                    ax.fill_between(radii, [b.low for b in bands], [b.high for b in bands],
                                    color=line.get_color(), alpha=0.2, linewidth=0)
            drawn += 1
    _require(drawn, "offset maps", "offset_map")
    _offset_axes(axes, "shift max(|dy|, |dx|) (pixels)")
    _caption(fig, info, "accuracy and agreement by shift size (bands: 95% intervals)")
    return fig


def plot_accuracy_vs_diagonal(results: Any, path: str | os.PathLike[str], *,
                              info: ReportInfo | None = None) -> Path:
    """Accuracy and agreement with the unshifted prediction along the diagonal shift
    ``δ = (d, d)`` (Zhang's figure), with the 95% Wilson band of each point; one line per run
    and shift mode. Needs the ``diagonal`` curves of the results."""
    return _save(_accuracy_vs_diagonal(results, info), path)


def _accuracy_vs_diagonal(results: Any, info: ReportInfo | None = None) -> Any:
    fig = new_figure(10, 4)
    axes = fig.subplots(1, 2, sharex=True)
    drawn = 0
    for label, result in _labelled(results).items():
        for mode, curve in (result.get("diagonal") or {}).items():
            name = _join(label, mode)
            for ax, quantity in zip(axes, ("accuracy", "agreement"), strict=True):
                points = [_estimate(e) for e in curve[quantity]]
                line = ax.plot(curve["shifts"], [e.get("value") for e in points], marker="o",
                               label=name)[0]
                lows, highs = [e.get("low") for e in points], [e.get("high") for e in points]
                if all(_number(v) for v in lows + highs):
                    ax.fill_between(curve["shifts"], lows, highs, color=line.get_color(),
                                    alpha=0.2, linewidth=0)
            drawn += 1
    _require(drawn, "diagonal curves", "diagonal")
    _offset_axes(axes, "diagonal shift d, δ = (d, d) (pixels)")
    _caption(fig, info, "accuracy and agreement along the diagonal (bands: 95% intervals)")
    return fig


def _offset_axes(axes: Any, xlabel: str) -> None:
    for ax, title in zip(axes, ("accuracy", "agreement with the unshifted prediction"),
                         strict=True):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of images")
    axes[1].legend(fontsize="small")


def plot_consistency_map(
    results: Any, path: str | os.PathLike[str], quantity: str = "agreement", *,
    info: ReportInfo | None = None,
) -> Path:
    """The 2-D map over offsets ``(dy, dx)`` of ``agreement`` (with the unshifted prediction)
    or ``accuracy``; one panel per run and shift mode. A map has no interval per cell; its
    title gives ``n`` (a cell's 95% Wilson half-width is at most ``1/sqrt(n)``)."""
    return _save(_consistency_map(results, quantity, info), path)


def _consistency_map(results: Any, quantity: str = "agreement",
                     info: ReportInfo | None = None) -> Any:
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
    return _heatmaps(panels, f"{quantity} by offset", quantity, info)


def plot_sensitivity_map(results: Any, path: str | os.PathLike[str], *,
                         info: ReportInfo | None = None) -> Path:
    """The map over offsets of the mean cosine similarity of features (translation
    sensitivity); one panel per run and shift mode."""
    return _save(_sensitivity_map(results, info), path)


def _sensitivity_map(results: Any, info: ReportInfo | None = None) -> Any:
    panels = [
        (_join(label, f"{mode}, {grid['layer']} ({grid['where']})"), grid, grid["mean"])
        for label, result in _labelled(results).items()
        for mode, grid in (result.get("sensitivity") or {}).items()
    ]
    _require(len(panels), "sensitivity maps", "sensitivity")
    return _heatmaps(panels, "feature cosine similarity by offset", "cosine similarity", info)


def sensitivity_map_png(results: Any, *, info: ReportInfo | None = None) -> bytes:
    """The figure of :func:`plot_sensitivity_map`, as PNG bytes (to write in a set with other
    files)."""
    return figure_bytes(_sensitivity_map(results, info), "png")


def plot_msb(results: Any, path: str | os.PathLike[str], *,
             info: ReportInfo | None = None) -> Path:
    """Maximum-sampling bias per downsampling layer (and the mean), bars with 95% intervals,
    grouped by run. Table rows (with ``msb``, a number or an estimate) give one bar per row
    instead (with per-seed values as dots where the rows hold them)."""
    return _save(_msb(results, info), path)


def _msb(results: Any, info: ReportInfo | None = None) -> Any:
    if _is_rows(results):
        rows = [r for r in results if _number(_value(r.get("msb")))]
        _require(len(rows), "MSB values", "msb")
        series = {"msb": [_estimate(r["msb"]) for r in rows]}
        return _bars([_row_label(r, i) for i, r in enumerate(rows)], series,
                     "maximum-sampling bias", "fraction of outputs equal to the block maximum",
                     info=info)
    runs = {k: v.get("msb") or {} for k, v in _labelled(results).items()}
    layers = list(dict.fromkeys(layer for msb in runs.values() for layer in msb))
    _require(len(layers), "MSB values", "msb")
    series = {label or "msb": [msb.get(layer) for layer in layers] for label, msb in runs.items()}
    return _bars(layers, series, "maximum-sampling bias per downsampling layer",
                 "fraction of outputs equal to the block maximum", rotate=len(layers) > 6,
                 xlabel="layer", info=info)


def plot_homogeneity(data: Any, path: str | os.PathLike[str], *,
                     info: ReportInfo | None = None) -> Path:
    """Local homogeneity (``fraction`` and ``score``) per data set, with 95% intervals.

    ``data``: ``{name: Homogeneity | its to_dict() | EvaluationResult}``, or rows with
    ``dataset``, ``fraction`` and ``score`` keys (as ``shiftpool homogeneity`` writes).
    """
    return _save(_homogeneity(data, info), path)


def _homogeneity(data: Any, info: ReportInfo | None = None) -> Any:
    if _is_rows(data):
        entries = {str(r.get("dataset", i)): r for i, r in enumerate(data)}
    elif isinstance(data, Mapping):
        entries = {str(k): _homogeneity_dict(v) for k, v in data.items()}
    else:
        raise InputTypeError("shiftpool.report: plot_homogeneity needs {name: homogeneity} or rows")
    entries = {k: v for k, v in entries.items() if v is not None}
    _require(len(entries), "homogeneity values", "homogeneity")
    series = {q: [e.get(q) for e in entries.values()] for q in ("fraction", "score")}
    return _bars(list(entries), series, "local homogeneity", "homogeneity", info=info)


def plot_summary(
    rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str],
    keys: Sequence[str] | None = None, *, info: ReportInfo | None = None,
) -> Path:
    """Bars of the summary metrics (``acc``, ``s_cons``, ``c_cons``, ``c_worst``, ...) of each
    row; a value may be a number or an estimate (``{"value", "low", "high"}``: an error bar,
    the 95% interval; with ``per_seed`` values, also a dot per seed)."""
    return _save(_summary(rows, keys, info), path)


def _summary(rows: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None,
             info: ReportInfo | None = None) -> Any:
    rows = list(rows)
    keys = [k for k in (keys or SUMMARY_KEYS) if any(_number(_value(r.get(k))) for r in rows)]
    _require(len(keys), "summary metrics", "accuracy/consistency")
    series = {_row_label(r, i): [_estimate(r.get(k)) for k in keys] for i, r in enumerate(rows)}
    return _bars(keys, series, "accuracy and shift invariance (error bars: 95% intervals)",
                 "fraction", info=info)


def plot_consistency_vs_accuracy(
    rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *,
    info: ReportInfo | None = None,
) -> Path:
    """Consistency against accuracy, one point per row (method) with whiskers on both axes
    (the 95% intervals of the rows' estimates) and faint dots for the seeds where the rows hold
    ``per_seed`` values; one panel per shift mode measured (``s_cons``, ``c_cons``, ...)."""
    return _save(_consistency_vs_accuracy(rows, info), path)


def _consistency_vs_accuracy(rows: Sequence[Mapping[str, Any]],
                             info: ReportInfo | None = None) -> Any:
    rows = [r for r in rows if _number(_value(r.get("acc")))]
    modes = [(mode, f"{p}_cons") for mode, p in MODE_PREFIX.items()
             if any(_number(_value(r.get(f"{p}_cons"))) for r in rows)]
    _require(len(modes) * len(rows), "accuracy and consistency", "accuracy and consistency")
    fig = new_figure(4.6 * len(modes) + 0.6, 4.2)
    axes = fig.subplots(1, len(modes), squeeze=False)[0]
    colours = _colours(len(rows))
    for ax, (mode, key) in zip(axes, modes, strict=True):
        for i, row in enumerate(rows):
            x, y = _estimate(row["acc"]), _estimate(row.get(key))
            if not _number(y.get("value")):
                continue
            ax.errorbar([x["value"]], [y["value"]], xerr=_whisker(x), yerr=_whisker(y),
                        fmt="o", capsize=3, color=colours[i], label=_row_label(row, i))
            xs, ys = x.get("per_seed") or [], y.get("per_seed") or []
            if len(xs) == len(ys) > 1:
                ax.scatter(xs, ys, s=12, color=colours[i], alpha=0.35, linewidths=0)
            ax.annotate(_row_label(row, i), (x["value"], y["value"]), fontsize="x-small",
                        xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel("accuracy")
        ax.set_ylabel(f"consistency ({mode})")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize="small")
    _caption(fig, info, "consistency vs accuracy (whiskers: 95% intervals"
             + ("; dots: seeds)" if any(_per_seed(r) for r in rows) else ")"))
    return fig


def plot_differences(
    rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *,
    info: ReportInfo | None = None,
) -> Path:
    """Each method's difference from the baseline per metric, with its 95% interval (whiskers)
    and the marks of significant tests (``*``, ``†``), from the rows' ``paired`` sections (as
    :func:`shiftpool.harness.compare` writes them: ``{column: {"baseline", "difference":
    estimate, "marks"}}``)."""
    return _save(_differences(rows, info), path)


def _differences(rows: Sequence[Mapping[str, Any]], info: ReportInfo | None = None) -> Any:
    rows = [r for r in rows if isinstance(r.get("paired"), Mapping) and r["paired"]]
    _require(len(rows), "paired differences", "a baseline and another method")
    keys = list(dict.fromkeys(k for r in rows for k in r["paired"]))
    baseline = next(iter(rows[0]["paired"].values())).get("baseline", "baseline")
    fig = new_figure(max(6.0, 0.9 * len(keys) * max(1, len(rows)) ** 0.5 + 2), 4.2)
    ax = fig.subplots()
    width = 0.8 / len(rows)
    colours = _colours(len(rows))
    both = False
    for k, row in enumerate(rows):
        points = []  # (x, difference, interval over images or None, marks)
        for g, key in enumerate(keys):
            entry = row["paired"].get(key) or {}
            d = _estimate(entry.get("difference"))
            if _number(d.get("value")):
                images = entry.get("images") if entry.get("seeds") else None
                points.append((g + (k - (len(rows) - 1) / 2) * width, d, images,
                               entry.get("marks") or ""))
        whiskers = [_whisker(d) for _, d, _, _ in points]
        ax.errorbar([x for x, *_ in points], [d["value"] for _, d, _, _ in points],
                    yerr=[[w[0][0] for w in whiskers], [w[1][0] for w in whiskers]], fmt="o",
                    capsize=3, color=colours[k], label=_row_label(row, k))
        for (x, d, images, mark), (_, above) in zip(points, whiskers, strict=True):
            if isinstance(images, Mapping) and _number(images.get("value")):
                below_i, above_i = _whisker(images)
                ax.errorbar([x], [images["value"]], yerr=[below_i, above_i], fmt="none",
                            elinewidth=5, alpha=0.35, color=colours[k])
                both = True
            if mark:
                ax.annotate(mark, (x, d["value"] + above[0]), ha="center", va="bottom",
                            fontsize="small")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(keys)), keys)
    ax.set_ylabel(f"method − {baseline}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    intervals = ("thin whiskers: 95% interval over seeds, thick: over the same test images"
                 if both else "whiskers: 95% intervals")
    _caption(fig, info, f"difference from {baseline} ({intervals})\n* p < 0.05 paired t over "
             "seeds · † p < 0.05 McNemar over the same images")
    return fig


def write_figures(
    rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str],
    results: Mapping[str, Any] | None = None, *, info: ReportInfo | None = None,
    results_info: ReportInfo | None = None,
) -> dict[str, Path]:
    """Every figure the inputs allow, into ``out_dir``, written as one set (all drawn first,
    then all renamed into place: a failure leaves the earlier set whole).

    Args:
        rows: table rows (summaries with ``method`` or ``name``; values numbers or estimates,
            optionally with ``per_seed`` values; optionally a ``paired`` section): the summary
            bars, the consistency-vs-accuracy scatter when rows hold ``acc`` and a
            consistency, the differences from the baseline when rows hold ``paired``, MSB bars
            when rows hold ``msb``.
        results: optional ``{label: EvaluationResult or its dict}``: adds the diagonal curve,
            the offset, consistency and sensitivity maps and MSB per layer where they were
            measured.
        info: what the figures rest on, stated in each title.
        results_info: what the figures of ``results`` rest on, where it differs from ``info``
            (e.g. the maps of one seed beside rows over several); default ``info``.

    Returns:
        ``{figure kind: path}``.

    Example:
        >>> write_figures([{"method": "max", "acc": 0.9}], "runs/demo/figures")  # doctest: +SKIP
        {'summary': PosixPath('runs/demo/figures/summary.png')}
    """
    rendered = render_figures(rows, out_dir, results, info=info, results_info=results_info)
    atomic_write_set({f.path: f.content for f in rendered.values()})
    return {kind: f.path for kind, f in rendered.items()}


def render_figures(
    rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str],
    results: Mapping[str, Any] | None = None, *, info: ReportInfo | None = None,
    results_info: ReportInfo | None = None,
) -> dict[str, ReportFile]:
    """The figures :func:`write_figures` writes, as ``{kind: ReportFile(path, PNG bytes)}``,
    without writing anything (to write them in one set with other files).

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    out = Path(out_dir)
    rows = list(rows)
    figures: dict[str, Any] = {"summary": _summary(rows, info=info)}
    if any(_number(_value(r.get("acc"))) and any(
            _number(_value(r.get(f"{p}_cons"))) for p in MODE_PREFIX.values()) for r in rows):
        figures["consistency_vs_accuracy"] = _consistency_vs_accuracy(rows, info)
    if any(isinstance(r.get("paired"), Mapping) and r["paired"] for r in rows):
        figures["differences"] = _differences(rows, info)
    if any(_number(_value(r.get("msb"))) for r in rows):
        figures["msb"] = _msb(rows, info)
    runs = _labelled(results) if results else {}
    each = info if results_info is None else results_info
    if any(r.get("diagonal") for r in runs.values()):
        figures["accuracy_vs_diagonal"] = _accuracy_vs_diagonal(runs, each)
    if any(r.get("offset_maps") for r in runs.values()):
        figures["accuracy_vs_offset"] = _accuracy_vs_offset(runs, each)
        figures["consistency_map"] = _consistency_map(runs, info=each)
    if any(r.get("sensitivity") for r in runs.values()):
        figures["sensitivity_map"] = _sensitivity_map(runs, each)
    if any(r.get("msb") for r in runs.values()):
        figures["msb_layers"] = _msb(runs, each)
    return {kind: ReportFile(out / FIGURE_FILES[kind], figure_bytes(fig, "png"))
            for kind, fig in figures.items()}


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


def _value(cell: Any) -> Any:
    """The number of a table cell: the cell itself, or an estimate's ``value``."""
    return cell.get("value") if isinstance(cell, Mapping) else cell


def _estimate(cell: Any) -> Mapping[str, Any]:
    """A table cell as an estimate mapping (``{"value": cell}`` for a plain number)."""
    return cell if isinstance(cell, Mapping) else {"value": cell}


def _whisker(entry: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """``([below], [above])`` of an estimate's interval around its value (0 without one)."""
    value, low, high = entry.get("value"), entry.get("low"), entry.get("high")
    below = value - low if _number(low) and _number(value) else 0.0
    above = high - value if _number(high) and _number(value) else 0.0
    return [max(below, 0.0)], [max(above, 0.0)]


def _per_seed(row: Mapping[str, Any]) -> bool:
    return any(isinstance(v, Mapping) and len(v.get("per_seed") or []) > 1 for v in row.values())


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

def new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` of ``width`` × ``height`` inches on the Agg canvas (no pyplot
    state); a one-line error naming the ``plots`` extra without matplotlib."""
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


def figure_bytes(fig: Any, image_format: str = "png", dpi: int = 120) -> bytes:
    """``fig`` as the bytes of an image file (``png``, ``pdf``, ``svg``...)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format=image_format)
    return buffer.getvalue()


def _caption(fig: Any, info: ReportInfo | None, title: str | None = None) -> None:
    """The figure's title: ``title`` and, on a second line, what it rests on."""
    lines = [line for line in (title, info.caption() if info else None) if line]
    if lines:
        fig.suptitle("\n".join(lines), fontsize="medium")


def _colours(count: int) -> list[Any]:
    """``count`` distinct colours of matplotlib's default cycle (repeating past ten)."""
    from matplotlib import rcParams

    cycle = rcParams["axes.prop_cycle"].by_key()["color"]
    return [cycle[i % len(cycle)] for i in range(count)]


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``path`` atomically, in the format its suffix names (PNG without one)."""
    path = Path(path)
    data = figure_bytes(fig, path.suffix.lstrip(".") or "png")
    return atomic_write(path, lambda handle: handle.write(data))


def _heatmaps(
    panels: list[tuple[str, Mapping[str, Any], list[list[float | None]]]],
    title: str, colour_label: str, info: ReportInfo | None = None,
) -> Any:
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig = new_figure(4.2 * cols + 0.8, 3.8 * rows)
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
    sizes = sorted({int(grid["n"]) for _, grid, _ in panels if _number(grid.get("n"))})
    if sizes and info is None:
        title += f" (n = {', '.join(map(str, sizes))} images)"
    _caption(fig, info, title)
    return fig


def _bars(
    groups: list[str], series: Mapping[str, list[Mapping[str, Any] | None]],
    title: str, ylabel: str, rotate: bool = False, xlabel: str | None = None,
    info: ReportInfo | None = None,
) -> Any:
    """Grouped bars: one group per ``groups`` entry, one bar per series, with error bars
    where the entries hold ``low`` and ``high`` and a dot per seed where they hold
    ``per_seed`` values."""
    fig = new_figure(max(6.0, 0.9 * len(groups) * max(1, len(series)) ** 0.5 + 2), 4)
    ax = fig.subplots()
    width = 0.8 / max(len(series), 1)
    for k, (name, entries) in enumerate(series.items()):
        xs, heights, errors, seeds = [], [], [[], []], []
        for g, entry in enumerate(entries):
            value = None if entry is None else entry.get("value")
            if entry is None or not _number(value):
                continue
            xs.append(g + (k - (len(series) - 1) / 2) * width)
            heights.append(value)
            below, above = _whisker(entry)
            errors[0] += below
            errors[1] += above
            per_seed = [v for v in entry.get("per_seed") or [] if _number(v)]
            seeds += [(xs[-1], v) for v in per_seed] if len(per_seed) > 1 else []
        has_interval = any(errors[0]) or any(errors[1])
        ax.bar(xs, heights, width, yerr=errors if has_interval else None, capsize=3, label=name)
        if seeds:
            ax.scatter([x for x, _ in seeds], [v for _, v in seeds], s=8, color="black",
                       alpha=0.6, zorder=3, linewidths=0)
    ax.set_xticks(range(len(groups)), groups, rotation=45 if rotate else 0,
                  ha="right" if rotate else "center")
    ax.set_ylabel(ylabel)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize="medium")
    _caption(fig, info)
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize="small")
    return fig
