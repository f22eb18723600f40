"""A preset at one scale (:class:`StudyPlan`), the preset itself (:class:`Preset`), and what a
preset's own analysis adds to the report (:class:`Extras`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shiftpool.core.log import Log
from shiftpool.harness.studies.framework import Arm, Cell, Claim, Verdict
from shiftpool.train.config import TrainConfig

#: Where each arm's seed runs (training files, evaluation.json, cell.json).
RUNS_DIR = "runs"
#: What a finished run of a study keeps: its cell (the estimates), written last.
CELL_JSON = "cell.json"



@dataclass(frozen=True)
class StudyPlan:
    """One preset at one scale: what is trained, how it is evaluated, what is decided.

    Attributes:
        preset, scale: which preset and scale this is.
        base: the settings every arm shares (its ``seed`` and ``out_dir`` are set per run).
        arms: the trained configurations, each with its :attr:`Arm.changes` to ``base``.
        seeds: the seeds each arm is trained with.
        claims: the paper's claims, as contrasts over the arms.
        metrics: what is measured on each trained model (names of
            :data:`shiftpool.metrics.METRICS`).
        protocol: the evaluation protocol's name; ``protocol_options`` overrides its fields
            (e.g. ``{"max_shift": 4}``).
        columns: the metrics shown in the results table, in order.
        scaled_down: plain sentences: what this scale changes from the paper's setting.
        train_accuracy: also measure accuracy on training images (eval mode), and the
            generalisation gap ``train_acc - acc``.
        notes: anything else the report must say (protocol details, what is left out).
    """

    preset: str
    scale: str
    base: TrainConfig
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    claims: tuple[Claim, ...]
    metrics: tuple[str, ...]
    protocol: str
    protocol_options: Mapping[str, Any] = field(default_factory=dict)
    columns: tuple[str, ...] = ("acc", "s_cons", "c_cons")
    scaled_down: tuple[str, ...] = ()
    train_accuracy: bool = False
    notes: tuple[str, ...] = ()

    def arm(self, name: str) -> Arm:
        """The arm called ``name`` (KeyError otherwise)."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)

    def config(self, arm: Arm, seed: int, out_dir: str | Path) -> TrainConfig:
        """The run of ``arm`` at ``seed``: the base with the arm's changes, in its folder."""
        folder = Path(out_dir) / RUNS_DIR / arm.name / f"seed{seed}"
        changes = dict(arm.changes)
        if "model_options" in changes:  # merged: an arm sets the kernel, the base the widths
            changes["model_options"] = {**self.base.model_options, **changes["model_options"]}
        return self.base.replace(**changes, seed=seed, out_dir=str(folder))

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "scale": self.scale, "base": self.base.to_dict(),
                "arms": [a.to_dict() for a in self.arms], "seeds": list(self.seeds),
                "claims": [c.to_dict() for c in self.claims], "metrics": list(self.metrics),
                "protocol": self.protocol, "protocol_options": dict(self.protocol_options),
                "columns": list(self.columns), "scaled_down": list(self.scaled_down),
                "train_accuracy": self.train_accuracy, "notes": list(self.notes)}


@dataclass
class StudyContext:
    """What a preset's analysis gets: the plan, every measured cell, where the study writes,
    where data sets are, and the log."""

    plan: StudyPlan
    cells: list[Cell]
    out_dir: Path
    data_dir: str | None
    log: Log


@dataclass
class Extras:
    """What a preset's analysis adds: cells for claims that need no training (a data set's
    homogeneity, a correlation), Markdown sections, figures (PNG bytes by file name) and JSON
    data for report.json."""

    cells: list[Cell] = field(default_factory=list)
    sections: dict[str, str] = field(default_factory=dict)
    figures: dict[str, bytes] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


def no_extras(context: StudyContext) -> Extras:
    """The analysis of a preset that adds nothing beyond the claims and the table."""
    return Extras()


@dataclass(frozen=True)
class Preset:
    """A study preset: a paper's experiment, at every scale.

    Attributes:
        name: what ``shiftpool study NAME`` takes.
        paper: the paper, as cited in the report.
        summary: one line on what the preset checks.
        plan: ``plan(scale) -> StudyPlan``.
        analyse: the preset's own analysis and figures, after every run is done.
        grid_figures: figures drawn from the cells alone (heatmaps, trade-offs), PNG bytes by
            file name; called with the plan, the cells and the verdicts.
    """

    name: str
    paper: str
    summary: str
    plan: Callable[[str], StudyPlan]
    analyse: Callable[[StudyContext], Extras] = no_extras
    grid_figures: Callable[[StudyPlan, Sequence[Cell], Sequence[Verdict]],
                           dict[str, bytes]] | None = None
