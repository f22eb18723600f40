"""A study's report: report.md (verdicts first, then what was scaled down, the setup, the
decision rule, the results table beside the paper's numbers, the preset's own sections and the
figures), report.json (everything, per seed), figures/*.png and report.html (the same report as
one self-contained page, figures embedded: :mod:`shiftpool.report.html`). All files are written
as one set."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from shiftpool.core.errors import InputError
from shiftpool.core.io import atomic_write_set, json_text
from shiftpool.harness.studies.figures import caption, verdict_figure
from shiftpool.harness.studies.framework import (
    DECISION_RULE,
    OUTCOMES,
    Cell,
    Verdict,
    pooled_metric,
)
from shiftpool.harness.studies.plan import Extras, Log, Preset, StudyPlan
from shiftpool.metrics import get_protocol
from shiftpool.report.html import Figure, Paragraph, Section, Table, html_report_file
from shiftpool.report.tables import ReportFile

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
FIGURES_DIR = "figures"
VERDICT_FIGURE = "verdicts.png"

#: What each column of the results table measures.
COLUMN_HELP: dict[str, str] = {
    "acc": "test accuracy",
    "s_cons": "consistency under zero-fill shifts",
    "c_cons": "consistency under circular shifts",
    "s_fid": "fidelity under zero-fill shifts",
    "c_fid": "fidelity under circular shifts",
    "crop_cons": "consistency under crop shifts",
    "crop_fid": "fidelity under crop shifts",
    "msb": "maximum-sampling bias (mean over layers)",
    "train_acc": "accuracy on training images (eval mode)",
    "gap": "train_acc - acc (generalisation gap)",
    "h_fraction": "feature-map homogeneity (fraction measure, mean over pooling layers)",
    "h_score": "feature-map homogeneity (score measure, mean over pooling layers)",
}


def number(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"


def results_rows(plan: StudyPlan, cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """One row per arm: its factors, each column pooled over seeds (value, interval, per seed)
    and the paper's number where it gives one."""
    rows = []
    for arm in plan.arms:
        row: dict[str, Any] = {"arm": arm.name, **dict(arm.factors)}
        for column in plan.columns:
            pooled = pooled_metric(arm.name, column, cells)
            row[column] = None if pooled is None else pooled.to_dict()
            if column in arm.paper:
                row[f"paper_{column}"] = arm.paper[column]
        rows.append(row)
    return rows


def results_table(plan: StudyPlan, cells: Sequence[Cell]) -> str:
    """The Markdown results table: arms × columns, ``mean [95% CI]`` over seeds, with a paper
    column beside each measured one where the paper gives numbers."""
    factor_keys = list(dict.fromkeys(k for arm in plan.arms for k in arm.factors))
    paper_columns = {c for arm in plan.arms for c in arm.paper}
    header = ["arm", *factor_keys]
    for column in plan.columns:
        header.append(f"{column} (95% CI)")
        if column in paper_columns:
            header.append(f"paper {column}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in plan.arms:
        line = [arm.name, *(str(arm.factors.get(k, "")) for k in factor_keys)]
        for column in plan.columns:
            pooled = pooled_metric(arm.name, column, cells)
            line.append("—" if pooled is None else
                        f"{number(pooled.value)} [{number(pooled.low)}, {number(pooled.high)}]")
            if column in paper_columns:
                paper = arm.paper.get(column)
                line.append("—" if paper is None else number(paper))
        lines.append("| " + " | ".join(line) + " |")
    return "\n".join(lines)


def verdict_table(verdicts: Sequence[Verdict]) -> str:
    """Claim, the paper's number, the measured contrast with its interval, the verdict."""
    lines = ["| claim | contrast | paper | measured (95% CI) | verdict |", "|---|---|---|---|---|"]
    for v in verdicts:
        measured = "—" if v.estimate is None else v.estimate.text()
        lines.append(f"| {v.claim.key}: {v.claim.text} | `{v.claim.contrast_text()}` | "
                     f"{v.claim.paper or '—'} | {measured} | **{v.outcome}** |")
    return "\n".join(lines)


def _setup(plan: StudyPlan, cells: Sequence[Cell]) -> list[str]:
    base = plan.base
    n = sorted({e.n for c in cells for k, e in c.estimates.items() if k == "acc"})
    lines = [
        f"- model: `{base.model}` {json.dumps(base.model_options)}; data: `{base.dataset}` "
        f"(arms may change it: see the table); train subset: "
        f"{'all' if base.train_subset is None else f'{base.train_subset:,}'} images",
        f"- training: {base.epochs} epochs, batch {base.batch_size}, {base.optimizer} lr "
        f"{base.lr} ({base.schedule}), weight decay {base.weight_decay}, augmentation "
        f"{json.dumps(base.augment) if base.augment else 'none'} (arms may add it), circular "
        f"padding {base.circular}",
        f"- seeds: {', '.join(map(str, plan.seeds))} (each arm trained once per seed; arms "
        "paired by seed)",
        f"- evaluation: protocol `{plan.protocol}` "
        f"{json.dumps(dict(plan.protocol_options)) if plan.protocol_options else ''}; "
        f"metrics {', '.join(plan.metrics)}; test images per run: "
        f"{', '.join(map(str, n)) or '—'}",
    ]
    lines.append(f"- protocol as run: {_protocol_details(plan)}")
    lines += [f"- {note}" for note in plan.notes]
    return lines


def _protocol_details(plan: StudyPlan) -> str:
    """Every detail of the protocol as run (fill, offsets, crop, diagonal, intervals)."""
    protocol = get_protocol(plan.protocol, **dict(plan.protocol_options))
    details = {k: v for k, v in protocol.describe().items() if k != "metrics"}  # the plan's
    return "; ".join(f"{k}: {v}" for k, v in details.items())


def markdown_report(preset: Preset, plan: StudyPlan, cells: Sequence[Cell], extras: Extras,
                    verdicts: Sequence[Verdict], figures: Sequence[str],
                    runs: Mapping[str, Any]) -> str:
    """The text of report.md."""
    counts = {o: sum(v.outcome == o for v in verdicts) for o in OUTCOMES}
    lines = [f"# Study `{preset.name}` at scale `{plan.scale}`", "",
             f"Paper: {preset.paper}", "", preset.summary, "",
             "Verdicts: " + ", ".join(f"{n} {o}" for o, n in counts.items()), ""]
    if plan.scale == "smoke":
        lines += ["**Smoke scale checks that the study runs end to end; its budgets are far too "
                  "small to decide anything about the paper. Read its verdicts as wiring "
                  "checks only.**", ""]
    lines += ["## Claims", "", verdict_table(verdicts), ""]
    lines += [f"- **{v.claim.key}** — {v.outcome}: {v.reason}."
              + (f" ({v.claim.note})" if v.claim.note else "") for v in verdicts]
    lines += ["", "## What this scale changes from the paper", ""]
    lines += [f"- {s}" for s in plan.scaled_down] or ["- nothing: the paper's setting"]
    lines += ["", "## Setup", "", *_setup(plan, cells), "", "## Decision rule", "",
              DECISION_RULE, "", "## Results", "",
              "Mean over seeds with the 95% interval of the decision rule; `paper` columns give "
              "the paper's numbers (fractions) where it reports them.", "",
              results_table(plan, cells), ""]
    lines += [f"- `{c}`: {COLUMN_HELP[c]}" for c in plan.columns if c in COLUMN_HELP]
    for title, text in extras.sections.items():
        lines += ["", f"## {title}", "", text]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{name}]({FIGURES_DIR}/{name})" for name in figures]
    lines += ["", "## Runs", "",
              f"{runs.get('trained', 0)} run(s) trained now, {runs.get('reused', 0)} reused; "
              f"{runs.get('seconds', 0)} s in this call; training time summed over runs: "
              f"{sum(c.train_time_s for c in cells):.0f} s.", ""]
    return "\n".join(lines)


def report_data(preset: Preset, plan: StudyPlan, cells: Sequence[Cell], extras: Extras,
                verdicts: Sequence[Verdict], runs: Mapping[str, Any]) -> dict[str, Any]:
    """Everything in report.json: the plan, the decision rule, the verdicts, the table rows
    (pooled and per seed), every cell, the preset's data."""
    return {"study": preset.name, "paper": preset.paper, "scale": plan.scale,
            "decision_rule": DECISION_RULE, "plan": plan.to_dict(),
            "verdicts": [v.to_dict() for v in verdicts],
            "results": results_rows(plan, cells),
            "cells": [c.to_dict() for c in cells], "extras": extras.data, "runs": dict(runs)}


def write_report(preset: Preset, plan: StudyPlan, cells: Sequence[Cell], extras: Extras,
                 verdicts: Sequence[Verdict], out: Path, *, figures: bool, log: Log,
                 runs: Mapping[str, Any]) -> tuple[dict[str, Path], str]:
    """Draw the figures, write report.md, report.json, the figures and report.html (where the
    HTML writer exists) as one set; returns ``({kind: path}, report text)``."""
    drawn: dict[str, bytes] = {}
    if figures:
        try:
            title = f"{preset.name} ({plan.scale}): claims\n{caption(plan, cells)}"
            drawn[VERDICT_FIGURE] = verdict_figure(verdicts, title)
            if preset.grid_figures is not None:
                drawn.update(preset.grid_figures(plan, cells, verdicts))
            drawn.update(extras.figures)
        except InputError as error:  # no matplotlib
            log(f"figures skipped: {error}")
            drawn = {}
    else:
        drawn = {}
    text = markdown_report(preset, plan, cells, extras, verdicts, list(drawn), runs)
    data = report_data(preset, plan, cells, extras, verdicts, runs)
    files: dict[str, str | bytes] = {str(out / REPORT_MD): text,
                                     str(out / REPORT_JSON): json_text(data)}
    files.update({str(out / FIGURES_DIR / name): content for name, content in drawn.items()})
    page = html_file(out, text, drawn)
    files[str(page.path)] = page.content
    atomic_write_set(files)
    written = {"report_md": out / REPORT_MD, "report_json": out / REPORT_JSON,
               "report_html": page.path}
    written.update({Path(name).stem: out / FIGURES_DIR / name for name in drawn})
    return written, text


def html_sections(text: str, figures: Mapping[str, bytes]) -> tuple[str, list[Section]]:
    """``(title, sections)`` of the HTML page of a Markdown report: each ``## heading`` a
    section; in it, Markdown tables become tables, ``![name](figures/name)`` lines the embedded
    figure, other lines paragraphs (bullets stay lists)."""
    lines = text.splitlines()
    title = lines[0].lstrip("# ").replace("`", "") if lines else "Study"
    sections: list[Section] = []
    heading = "Summary"
    blocks: list[Paragraph | Table | Figure] = []
    pending: list[str] = []
    table: list[str] = []

    def flush_text() -> None:
        if any(line.strip() for line in pending):
            blocks.append(Paragraph("\n".join(pending).strip()))
        pending.clear()

    def flush_table() -> None:
        if table:
            blocks.append(Table.from_markdown("\n".join(table)))
        table.clear()

    for line in [*lines[1:], "## "]:
        if line.startswith("## "):
            flush_text()
            flush_table()
            if blocks:
                sections.append(Section(heading, tuple(blocks)))
            heading, blocks = line[3:].strip(), []
        elif line.startswith("|"):
            flush_text()
            table.append(line)
        elif line.startswith("![") and "](" in line:
            flush_text()
            flush_table()
            name = Path(line.split("](", 1)[1].rstrip(")")).name
            if name in figures:
                blocks.append(Figure(figures[name], caption=name, format="png"))
        else:
            flush_table()
            pending.append(line)
    return title, sections


def html_file(out: Path, text: str, figures: Mapping[str, bytes]) -> ReportFile:
    """report.html (self-contained: figures embedded) as a file to write with the others."""
    title, sections = html_sections(text, figures)
    return html_report_file(out / REPORT_HTML, title, sections)


def plan_text(preset: Preset, plan: StudyPlan) -> str:
    """What a study will run, for ``shiftpool study NAME --plan``: the arms (their changes to
    the base), the seeds and the number of runs, the evaluation, and the claims.

    Example:
        >>> from shiftpool.harness.studies import get_study
        >>> preset = get_study("zhang")
        >>> print(plan_text(preset, preset.plan("smoke")).splitlines()[0])
        zhang at scale smoke: 5 arm(s) x 1 seed(s) = 5 run(s)
    """
    base = plan.base
    lines = [f"{preset.name} at scale {plan.scale}: {len(plan.arms)} arm(s) x "
             f"{len(plan.seeds)} seed(s) = {len(plan.arms) * len(plan.seeds)} run(s)",
             f"paper: {preset.paper}",
             f"base: {base.model} {json.dumps(base.model_options)} on {base.dataset}, "
             f"{base.epochs} epochs, train subset {base.train_subset or 'all'}, "
             f"augment {json.dumps(base.augment) or '{}'}, circular {base.circular}, "
             f"seeds {', '.join(map(str, plan.seeds))}",
             f"evaluation: {plan.protocol} {json.dumps(dict(plan.protocol_options))}, "
             f"metrics {', '.join(plan.metrics)}, test images {base.eval_max_images or 'all'}",
             "arms:"]
    lines += [f"  {arm.name}: {json.dumps(dict(arm.changes))}" for arm in plan.arms]
    lines.append("claims:")
    lines += [f"  {c.key}: {c.contrast_text()}" for c in plan.claims]
    lines.append("scaled down: " + ("; ".join(plan.scaled_down) or "nothing"))
    return "\n".join(lines)
