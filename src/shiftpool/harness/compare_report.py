"""The written report of a comparison: results.json, results.csv, results.md (the table with
its marks, a note on what the values are and the differences from the baseline), the figures
and results.html, written as one set.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from shiftpool.core.errors import InputError
from shiftpool.core.io import atomic_write_set
from shiftpool.core.log import Log
from shiftpool.harness.compare_results import Comparison
from shiftpool.metrics.paired import BOOTSTRAP_RESAMPLES, IMAGES_MARK, SEEDS_MARK
from shiftpool.report import (
    FIGURE_FILES,
    ReportFile,
    format_value,
    html,
    markdown_table,
    render_figures,
    result_files,
)
from shiftpool.report.robustness import ROBUSTNESS_FIGURE_FILES, render_robustness_figures

FIGURES_DIR = "figures"

#: Decimals of the Markdown table's columns that are not fractions (seconds to 0.1 s).
TABLE_DIGITS: dict[str, int] = {"train_time_s": 1}


def _csv_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """Flat rows for results.csv: each column's value and interval, its value per seed
    (``{column}_seed{k}``), and against the baseline the difference with its interval
    (``d_{column}``, ``_low``, ``_high``), the p-value of the t-test over seeds
    (``p_{column}_seeds``) and of McNemar's test over images (``p_{column}_images``)."""
    flat = []
    for row in comparison.rows:
        data: dict[str, Any] = {"method": row.method}
        for column, estimate in row.estimates.items():
            data.update({column: estimate.value, f"{column}_low": estimate.low,
                         f"{column}_high": estimate.high})
            if row.per_seed:
                for seed, value in zip(row.seeds, row.values(column), strict=True):
                    data[f"{column}_seed{seed}"] = value
        data.update(params=row.params, train_time_s=row.train_time_s)
        if row.per_seed:
            data["seeds"] = " ".join(map(str, row.seeds))
        for column, d in comparison.paired.get(row.method, {}).items():
            data.update({f"d_{column}": d.difference.value, f"d_{column}_low": d.difference.low,
                         f"d_{column}_high": d.difference.high,
                         f"p_{column}_seeds": None if d.seeds is None else d.seeds.p_value,
                         f"p_{column}_images": None if d.mcnemar is None else d.mcnemar.p_value})
        flat.append(data)
    return flat


def comparison_markdown(comparison: Comparison) -> str:
    """results.md: the table (marks on significant differences from the baseline), a line
    saying what the values and intervals are, and the table of differences with its tests."""
    rows = comparison.rows
    marks = {m: {c: d.marks() for c, d in columns.items()}
             for m, columns in comparison.paired.items()}
    cells = []
    for row in rows:
        cell: dict[str, Any] = {"method": row.method}
        for column, estimate in row.estimates.items():
            text = format_value(estimate.to_dict(), TABLE_DIGITS.get(column, 4))
            mark = marks.get(row.method, {}).get(column, "")
            cell[column] = f"{text} {mark}" if mark else text
        cell.update(params=row.params, train_time_s=row.train_time_s)
        cells.append(cell)
    lines = [markdown_table(cells, column_digits=TABLE_DIGITS), "", _values_note(comparison)]
    if comparison.paired:
        lines += ["", *_differences(comparison)]
    return "\n".join(lines)


def _values_note(comparison: Comparison) -> str:
    seeds = comparison.seeds
    over_seeds = any(row.per_seed for row in comparison.rows) and len(seeds) > 1
    if over_seeds:
        what = (f"Mean over {len(seeds)} seeds ({', '.join(map(str, seeds))}) with a 95% "
                "Student t interval over seeds")
    else:
        what = ("Value with a 95% interval over the test images (Wilson for fractions, "
                "Student t for means; sensitivity: grid mean, no interval)")
    return f"{what}. {comparison.info.caption()}." if comparison.info else f"{what}."


def _differences(comparison: Comparison) -> list[str]:
    """The table of differences from the baseline and the legend of its marks."""
    baseline = comparison.baseline
    cells = []
    for method, columns in comparison.paired.items():
        cell: dict[str, Any] = {"method": f"{method} − {baseline}"}
        for column, d in columns.items():
            text = format_value(d.difference.to_dict(), TABLE_DIGITS.get(column, 4),
                                signed=True)
            mark = d.marks()
            cell[column] = f"{text} {mark}" if mark else text
        cells.append(cell)
    several = len(comparison.seeds) > 1 and any(row.per_seed for row in comparison.rows)
    interval = (f"paired Student t over the {len(comparison.seeds)} seeds" if several else
                f"paired bootstrap over the test images ({BOOTSTRAP_RESAMPLES} resamples) "
                "for accuracy, consistency, fidelity and the robustness columns measured per "
                "image (robust and corruption accuracy, flip rate)")
    seeds_test = (f"{SEEDS_MARK} p < 0.05 by the paired t-test over seeds; " if several else "")
    return [
        f"Differences from the baseline {baseline} (method − {baseline}), 95% interval: "
        f"{interval}.",
        "",
        markdown_table(cells),
        "",
        f"{seeds_test}{IMAGES_MARK} p < 0.05 by McNemar's exact test over the same test images "
        "and offsets (discordant images summed over seeds): these trained models differ on "
        "these images; it leaves out the variation between training runs, which only the test "
        "over seeds includes. p-values (also mid-p and per seed) in results.json (`paired`) "
        "and results.csv (`p_*`).",
    ]



def write_report(comparison: Comparison, evaluations: dict[str, Any], out: Path,
                  figures: bool, log: Log) -> dict[str, Path]:
    """results.json/.csv/.md and the figures, all drawn up first, then written as one set;
    then the figures of an earlier run that this one did not draw are removed (they would
    show other results beside these). ``evaluations``: each method's evaluation with the first
    seed, for the curves and maps (their captions name that seed alone)."""
    rows = comparison.result_rows()
    files: dict[str, ReportFile] = result_files(
        rows, out, column_digits=TABLE_DIGITS, csv_rows=_csv_rows(comparison),
        markdown=comparison.table)
    if figures:
        try:
            info = comparison.info
            one_seed = None if info is None else replace(info, seeds=info.seeds[:1])
            files.update(render_figures(rows, out / FIGURES_DIR, evaluations, info=info,
                                        results_info=one_seed))
            if comparison.robustness:
                mce = {row.method: {k: row.estimates[k].to_dict() for k in ("mce", "rel_mce")
                                    if k in row.estimates} for row in comparison.rows}
                files.update(render_robustness_figures(
                    evaluations, out / FIGURES_DIR, mce=mce,
                    baseline=comparison.robustness_baseline, info=info, results_info=one_seed))
        except InputError as error:  # no matplotlib, or nothing to draw
            log(f"figures skipped: {error}")
    files["html"] = _html_page(comparison, files, out)
    atomic_write_set({f.path: f.content for f in files.values()})
    for kind, name in {**FIGURE_FILES, **ROBUSTNESS_FIGURE_FILES}.items():
        if kind not in files:
            (out / FIGURES_DIR / name).unlink(missing_ok=True)
    return {kind: f.path for kind, f in files.items()}


def _html_page(comparison: Comparison, files: dict[str, ReportFile], out: Path) -> ReportFile:
    """``results.html``: the Markdown report's tables and notes and every PNG figure of
    ``files``, in one self-contained page (figures embedded; opens offline)."""
    blocks: list[html.Block] = []
    for part in comparison.table.split("\n\n"):
        text = part.strip()
        if not text:
            continue
        blocks.append(html.Table.from_markdown(text) if text.startswith("|")
                      else html.Paragraph(text))
    figures = [html.Figure(f.content, caption=f.path.stem.replace("_", " "))
               for f in files.values() if f.path.suffix == ".png" and isinstance(f.content, bytes)]
    sections = [html.Section("Results", blocks)]
    if figures:
        sections.append(html.Section("Figures", figures))
    title = f"shiftpool compare: {', '.join(row.method for row in comparison.rows)}"
    caption = "" if comparison.info is None else comparison.info.caption()
    return html.html_report_file(out / "results.html", title, sections, subtitle=caption)
