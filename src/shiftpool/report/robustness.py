"""Figures of the robustness metrics (matplotlib, ``pip install shiftpool[plots]``): robust
accuracy against ε (one line per method, 95% Wilson band) and corruption accuracy per corruption
and severity (a heatmap per method).

Results are given as in :mod:`shiftpool.report.figures`: one
:class:`~shiftpool.metrics.EvaluationResult`, its ``to_dict()``, or ``{label: result}``.

Example:
    >>> import torch, tempfile, pathlib
    >>> from torch import nn
    >>> from shiftpool.metrics import evaluate
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    >>> data = [(torch.rand(6, 3, 4, 4), torch.randint(0, 3, (6,)))]
    >>> r = evaluate(net, data, metrics="adversarial", eps="4/255,8/255", progress=False)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     plot_accuracy_vs_eps({"linear": r}, pathlib.Path(d) / "eps.png").name
    'eps.png'
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shiftpool.core.errors import InputError
from shiftpool.metrics.adversarial import format_eps
from shiftpool.metrics.corruptions import corruption_errors
from shiftpool.report.figures import _caption, _colours, _labelled, _save, figure_bytes, new_figure
from shiftpool.report.tables import ReportFile, ReportInfo

__all__ = ["ROBUSTNESS_FIGURE_FILES", "mce_table", "plot_accuracy_vs_eps",
           "plot_corruption_heatmap", "plot_mce", "render_robustness_figures"]

#: The file of each robustness figure :func:`render_robustness_figures` draws, by kind.
ROBUSTNESS_FIGURE_FILES: dict[str, str] = {
    "accuracy_vs_eps": "accuracy_vs_eps.png",
    "corruption_heatmap": "corruption_heatmap.png",
    "mce": "mce.png",
}


def _section(result: dict[str, Any], key: str) -> dict[str, Any] | None:
    robustness = result.get("robustness") or {}
    return robustness.get(key)


def plot_accuracy_vs_eps(results: Any, path: str | os.PathLike[str], *,
                         info: ReportInfo | None = None) -> Path:
    """Robust accuracy against ε, one line per method with its 95% Wilson band.

    Needs results evaluated with the ``adversarial`` metric; ε on the x axis in the unit it
    was measured in (pixel units print as ``k/255``).
    """
    return _save(_accuracy_vs_eps(results, info), path)


def _accuracy_vs_eps(results: Any, info: ReportInfo | None) -> Any:
    curves = {label: _section(r, "adversarial") for label, r in _labelled(results).items()}
    curves = {label: c for label, c in curves.items() if c}
    if not curves:
        raise InputError(
            "shiftpool.report: no adversarial results to plot; evaluate with "
            "metrics=[..., 'adversarial']"
        )
    fig = new_figure(5.5, 4.0)
    ax = fig.subplots()
    units = set()
    for colour, (label, curve) in zip(_colours(len(curves)), curves.items(), strict=True):
        eps = list(curve["eps"])
        values = [a["value"] for a in curve["accuracy"]]
        low = [a["low"] if a["low"] is not None else v for a, v in zip(curve["accuracy"],
                                                                       values, strict=True)]
        high = [a["high"] if a["high"] is not None else v for a, v in zip(curve["accuracy"],
                                                                          values, strict=True)]
        attack = curve["attack"]
        name = attack["method"].upper() + (f"-{attack['steps']}" if attack["method"] == "pgd"
                                           else "")
        ax.plot(eps, values, marker="o", color=colour,
                label=f"{label} ({name}, {attack['norm']})".strip())
        ax.fill_between(eps, low, high, color=colour, alpha=0.2)
        units.add(curve["unit"])
        ax.set_xticks(eps, [format_eps(e) for e in eps], fontsize="small", rotation=30)
    ax.set_xlabel(f"ε ({', '.join(sorted(units))} units)")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _caption(fig, info, "Robust accuracy vs ε (95% Wilson bands)")
    return fig


def plot_corruption_heatmap(results: Any, path: str | os.PathLike[str], *,
                            info: ReportInfo | None = None) -> Path:
    """Accuracy per corruption (rows) and severity (columns), one heatmap per method.

    Needs results evaluated with the ``corruption`` metric.
    """
    return _save(_corruption_heatmap(results, info), path)


def _corruption_heatmap(results: Any, info: ReportInfo | None) -> Any:
    tables = {label: _section(r, "corruption") for label, r in _labelled(results).items()}
    tables = {label: t for label, t in tables.items() if t}
    if not tables:
        raise InputError(
            "shiftpool.report: no corruption results to plot; evaluate with "
            "metrics=[..., 'corruption']"
        )
    fig = new_figure(3.6 * len(tables) + 1.0, 0.35 * max(len(t["names"]) for t in tables.values())
                  + 1.6)
    axes = fig.subplots(1, len(tables), squeeze=False)[0]
    image = None
    for ax, (label, table) in zip(axes, tables.items(), strict=True):
        cells = [[cell["value"] for cell in row] for row in table["accuracy"]]
        image = ax.imshow(cells, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_yticks(range(len(table["names"])), table["names"], fontsize="small")
        ax.set_xticks(range(len(table["severities"])), [str(s) for s in table["severities"]])
        ax.set_xlabel("severity")
        ax.set_title(label or "accuracy", fontsize="medium")
        for i, row in enumerate(cells):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize="xx-small",
                        color="white" if v < 0.5 else "black")
    fig.colorbar(image, ax=list(axes), label="accuracy", shrink=0.8)
    _caption(fig, info, "Accuracy under common corruptions")
    return fig


def mce_table(results: Any, baseline: str) -> dict[str, dict[str, float]]:
    """``{label: {"mce": ..., "relative_mce": ..., "corr_acc": ...}}``: every method's mCE
    against the method labelled ``baseline`` (Hendrycks' normalisation: CE_c = Σ_s E_{s,c} /
    Σ_s E_{s,c}(baseline); the baseline's own mCE is 1).

    Example:
        >>> row = {"protocol": {}, "robustness": {"corruption": {
        ...     "names": ["fog"], "severities": [1], "clean": {"value": 0.9},
        ...     "accuracy": [[{"value": 0.6}]], "mean_accuracy": 0.6}}}
        >>> mce_table({"max": row, "blur": row}, "max")["blur"]["mce"]
        1.0
    """
    tables = {label: _section(r, "corruption") for label, r in _labelled(results).items()}
    tables = {label: t for label, t in tables.items() if t}
    if baseline not in tables:
        raise InputError(
            f"shiftpool.report: the baseline {baseline!r} has no corruption results; methods "
            f"with them: {', '.join(tables) or 'none'}"
        )

    def errors(table: dict[str, Any]) -> tuple[dict[str, list[float]], float]:
        rows = {c: [1 - a["value"] for a in row]
                for c, row in zip(table["names"], table["accuracy"], strict=True)}
        return rows, 1 - table["clean"]["value"]

    base, base_clean = errors(tables[baseline])
    out = {}
    for label, table in tables.items():
        mine, clean = errors(table)
        e = corruption_errors(mine, base, clean, base_clean)
        out[label] = {"mce": e.mce, "relative_mce": e.relative_mce,
                      "corr_acc": table["mean_accuracy"]}
    return out


def plot_mce(results: Any, path: str | os.PathLike[str], *, baseline: str = "max",
             info: ReportInfo | None = None) -> Path:
    """A bar chart of mCE (and relative mCE) across methods, relative to ``baseline``
    (:func:`mce_table`)."""
    table = mce_table(results, baseline)
    values = {k: {"mce": v["mce"], "rel_mce": v["relative_mce"]} for k, v in table.items()}
    return _save(_mce_bars(values, baseline, info), path)


def _mce_bars(values: Mapping[str, Mapping[str, Any]], baseline: str,
              info: ReportInfo | None) -> Any:
    """Bars of mCE and relative mCE per method; each value a number or an estimate dict
    (``value``, ``low``, ``high``: drawn as error bars where the interval is finite)."""
    labels = [k for k, v in values.items() if "mce" in v]
    if not labels:
        raise InputError("shiftpool.report: no mCE to plot; compare with the 'corruption' "
                         "metric")

    def split(key: str) -> tuple[list[float], list[list[float]] | None]:
        points, below, above = [], [], []
        for label in labels:
            v = values[label].get(key)
            value, low, high = (
                (v.get("value"), v.get("low"), v.get("high")) if isinstance(v, Mapping)
                else (v, None, None))
            value = math.nan if value is None else float(value)
            points.append(value)
            finite = low is not None and high is not None and math.isfinite(value)
            below.append(value - low if finite else 0.0)
            above.append(high - value if finite else 0.0)
        errors = [below, above] if any(below) or any(above) else None
        return points, errors

    fig = new_figure(max(6.0, 0.9 * len(labels) + 2), 3.8)
    ax = fig.subplots()
    width = 0.4
    positions = list(range(len(labels)))
    mce, mce_errors = split("mce")
    ax.bar([p - width / 2 for p in positions], mce, width, yerr=mce_errors, capsize=3,
           label="mCE")
    relative, relative_errors = split("rel_mce")
    if all(math.isfinite(v) for v in relative):
        ax.bar([p + width / 2 for p in positions], relative, width, yerr=relative_errors,
               capsize=3, label="relative mCE")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(positions, labels, rotation=30, fontsize="small")
    ax.set_ylabel(f"relative to {baseline}")
    ax.legend(fontsize="small")
    _caption(fig, info, f"mCE relative to {baseline} (frost: procedural texture)")
    return fig


def render_robustness_figures(
    results: Any, out_dir: str | os.PathLike[str], *,
    mce: Mapping[str, Mapping[str, Any]] | None = None, baseline: str = "max",
    info: ReportInfo | None = None, results_info: ReportInfo | None = None,
) -> dict[str, ReportFile]:
    """The robustness figures the inputs allow, as ``{kind: ReportFile(path, PNG bytes)}``
    (nothing written; files named by :data:`ROBUSTNESS_FIGURE_FILES`): the accuracy-vs-ε
    curves and the corruption heatmaps of ``results`` (``{label: result}``, one run each), and
    the mCE bars of ``mce`` (``{method: {"mce": value or estimate dict, "rel_mce": ...}}``,
    e.g. a comparison's columns with their intervals over seeds; default: computed from
    ``results`` against ``baseline``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from shiftpool.metrics import evaluate
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
        >>> data = [(torch.rand(4, 3, 4, 4), torch.randint(0, 3, (4,)))]
        >>> r = evaluate(net, data, metrics="corruption", corruptions="fog", progress=False)
        >>> sorted(render_robustness_figures({"max": r}, "figures"))
        ['corruption_heatmap', 'mce']
    """
    runs = _labelled(results) if results else {}
    each = info if results_info is None else results_info
    figures: dict[str, Any] = {}
    if any(_section(r, "adversarial") for r in runs.values()):
        figures["accuracy_vs_eps"] = _accuracy_vs_eps(runs, each)
    if any(_section(r, "corruption") for r in runs.values()):
        figures["corruption_heatmap"] = _corruption_heatmap(runs, each)
        if mce is None and baseline in runs and _section(runs[baseline], "corruption"):
            mce = {k: {"mce": v["mce"], "rel_mce": v["relative_mce"]}
                   for k, v in mce_table(runs, baseline).items()}
    if mce and any("mce" in v for v in mce.values()):
        figures["mce"] = _mce_bars(mce, baseline, info)
    out = Path(out_dir)
    return {kind: ReportFile(out / ROBUSTNESS_FIGURE_FILES[kind], figure_bytes(fig, "png"))
            for kind, fig in figures.items()}
