"""Run a study: train and evaluate every arm at every seed (reusing finished runs), then the
preset's analysis, the verdicts, and the report.

A study's folder holds ``runs/<arm>/seed<s>/`` (each a training run of
:func:`shiftpool.train.train` with its checkpoint, plus ``evaluation.json`` and ``cell.json``),
``report.md``, ``report.json``, ``figures/`` and, where :mod:`shiftpool.report.html` exists,
``report.html``. The folder is locked while the study runs (a second study into it fails at
once, naming the holder). An interrupted study resumes: a run whose ``cell.json`` records the
same settings is reused, one cut short continues from its checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

import shiftpool.harness.evaluation as hevaluation
import shiftpool.train as strain
from shiftpool.core.checks import check_int
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.core.io import FolderLock, atomic_write_json
from shiftpool.core.log import stderr_log
from shiftpool.harness.comparison import MethodResult
from shiftpool.harness.evaluation import EVALUATION_JSON
from shiftpool.harness.launch import Launcher
from shiftpool.harness.launch.study import run_cells
from shiftpool.harness.studies.framework import (
    Cell,
    Verdict,
    check_scale,
    decide,
    standard_error,
)
from shiftpool.harness.studies.plan import CELL_JSON, Log, Preset, StudyContext, StudyPlan
from shiftpool.harness.studies.report import write_report
from shiftpool.metrics import Estimate, EvaluationResult
from shiftpool.metrics.stats import normal_quantile
from shiftpool.train import inputs
from shiftpool.train.checkpoint import check_model_builds
from shiftpool.train.config import TrainConfig
from shiftpool.train.runtime import Runtime, cpu_threads, resolve_device

LOCK_PURPOSE = "study"
#: Where ``run_study`` writes unless told: ``runs/study/<name>-<scale>``.
DEFAULT_ROOT = Path("runs") / "study"



@dataclass
class StudyResult:
    """What :func:`run_study` returns.

    Attributes:
        plan: the preset at the scale that ran (seeds as run).
        cells: every measured run (and the measurements that need no training).
        verdicts: one per claim of the paper.
        files: what was written, by kind (``report_md``, ``report_json``, figures...).
        report: the Markdown report (as in report.md).
        trained, reused: runs trained (or resumed) now, and runs reused from earlier.
    """

    plan: StudyPlan
    cells: list[Cell]
    verdicts: list[Verdict]
    files: dict[str, Path]
    report: str
    trained: int = 0
    reused: int = 0


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """``seeds`` as a tuple if it is a non-empty list of distinct integers >= 0."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise InputTypeError(f"shiftpool.study: seeds must be a non-empty list of integers, "
                             f"got {seeds!r}")
    for seed in seeds:
        check_int(seed, "shiftpool.study: each seed", minimum=0)
    if len(set(seeds)) != len(seeds):
        raise InputError(f"shiftpool.study: seeds repeat: {', '.join(map(str, seeds))}")
    return tuple(seeds)


def plan_study(preset: Preset, scale: str, *, seeds: Sequence[int] | None = None,
               num_threads: int | None = None, data_dir: str | None = None,
               device: str | None = None) -> StudyPlan:
    """The preset's plan at ``scale`` with the caller's seeds, threads, data root and device;
    every arm's settings and model checked (each model built once, on the CPU, and dropped).

    Raises:
        InputError: a bad scale, seed or setting, before anything runs.
    """
    plan = preset.plan(check_scale(scale))
    changes: dict[str, Any] = {}
    if num_threads is not None:
        changes["num_threads"] = check_int(num_threads, "shiftpool.study: num_threads",
                                           minimum=1)
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise InputError(f"shiftpool.study: data_dir {data_dir!r} is not a folder")
        changes["data_dir"] = str(data_dir)
    if device is not None:
        changes["device"] = device
    plan = replace(plan, base=plan.base.replace(**changes),
                   seeds=plan.seeds if seeds is None else check_seeds(seeds))
    names = [arm.name for arm in plan.arms]
    if len(set(names)) != len(names):
        raise InputError(f"shiftpool.study: preset {preset.name!r} repeats arm names")
    for arm in plan.arms:
        check_model_builds(plan.config(arm, plan.seeds[0], "."))
    return plan


def default_out_dir(name: str, scale: str) -> Path:
    """``runs/study/<name>-<scale>``."""
    return DEFAULT_ROOT / f"{name}-{scale}"


def run_study(
    name: str,
    scale: str = "smoke",
    *,
    out_dir: str | Path | None = None,
    seeds: Sequence[int] | None = None,
    fresh: bool = False,
    num_threads: int | None = None,
    data_dir: str | None = None,
    device: str | None = None,
    figures: bool = True,
    log: Log = stderr_log,
    launcher: str | Launcher = "local",
) -> StudyResult:
    """Run study ``name`` at ``scale`` and write its report.

    Args:
        name: a preset of :func:`~shiftpool.harness.studies.list_studies` (``mouton``,
            ``s3pool``, ``tips``, ``zhang``).
        scale: ``smoke`` (minutes; checks the wiring, decides nothing of the papers), ``cpu``
            (under an hour on 2 CPU cores) or ``paper`` (the papers' budgets).
        out_dir: the study's folder; default ``runs/study/<name>-<scale>``.
        seeds: replace the preset's seeds.
        fresh: train and evaluate every run again, ignoring earlier results and checkpoints.
        num_threads: CPU threads for training and evaluation.
        data_dir: the data root (default ``$SHIFTPOOL_DATA``, else a cache).
        device: ``cpu``, ``cuda`` or ``auto`` (the preset's default: ``auto``).
        figures: draw the figures (skipped with a note without matplotlib).
        log: gets one line per run (what is done) and per step of the analysis.
        launcher: where the runs go: ``"local"`` (here, one after another), ``"ray"`` or a
            launcher (:func:`shiftpool.harness.launch.get_launcher`).

    Returns:
        A :class:`StudyResult`.

    Raises:
        InputError: a bad name, scale, seed or setting (before anything runs).
        FolderLockedError: another process is writing into ``out_dir``.

    Example:
        >>> run_study("zhang", "smoke", out_dir="runs/study/zhang-smoke")  # doctest: +SKIP
    """
    from shiftpool.harness.studies.registry import get_study

    preset = get_study(name)
    plan = plan_study(preset, scale, seeds=seeds, num_threads=num_threads, data_dir=data_dir,
                      device=device)
    out = Path(out_dir) if out_dir is not None else default_out_dir(preset.name, plan.scale)
    started = time.perf_counter()
    with FolderLock(out, LOCK_PURPOSE), cpu_threads(num_threads):
        runs = [(arm, seed) for arm in plan.arms for seed in plan.seeds]
        cells, trained = run_cells(plan, out, fresh=fresh, log=log, launcher=launcher)
        log(f"{preset.name}: analysis")
        extras = preset.analyse(StudyContext(plan, cells, out, plan.base.data_dir, log))
        everything = cells + extras.cells
        verdicts = [decide(claim, everything) for claim in plan.claims]
        files, report = write_report(preset, plan, everything, extras, verdicts, out,
                                     figures=figures, log=log,
                                     runs={"trained": trained, "reused": len(runs) - trained,
                                           "seconds": round(time.perf_counter() - started, 1)})
    return StudyResult(plan, everything, verdicts, files, report, trained, len(runs) - trained)




def _cell_settings(plan: StudyPlan, config: TrainConfig) -> dict[str, Any]:
    """What a saved cell depends on: the trained weights' settings and the evaluation's."""
    return {"config": config.result_fields(), "metrics": list(plan.metrics),
            "protocol": plan.protocol, "protocol_options": dict(plan.protocol_options),
            "max_images": config.eval_max_images, "train_accuracy": plan.train_accuracy}


def _saved_cell(run_dir: Path, settings: dict[str, Any]) -> Cell | None:
    """The cell saved in ``run_dir`` with the same settings, else None."""
    try:
        saved = json.loads((run_dir / CELL_JSON).read_text())
        kept = dict(saved["settings"])
        # through TrainConfig: a setting added since the run was saved takes its default
        kept["config"] = TrainConfig.from_dict(kept["config"]).result_fields()
        if json.loads(json.dumps(kept)) != json.loads(json.dumps(settings)):
            return None
        return Cell.from_dict(saved["cell"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None  # missing, from another version or other settings: run it again


def run_cell(plan: StudyPlan, arm_name: str, seed: int, out_dir: str | Path, *,
             fresh: bool = False, log: Log = stderr_log,
             label: str | None = None) -> tuple[Cell, bool]:
    """Train (or resume, or reuse) one arm at one seed and evaluate it.

    Returns:
        ``(cell, trained)``: ``trained`` is False when an earlier result was reused.
    """
    arm = plan.arm(arm_name)
    config = plan.config(arm, seed, out_dir)
    run_dir = Path(config.out_dir)
    settings = _cell_settings(plan, config)
    name = label or f"{arm.name} seed {seed}"
    saved = None if fresh else _saved_cell(run_dir, settings)
    if saved is not None:
        log(f"{name}: already done ({run_dir / CELL_JSON})")
        return saved, False
    log(f"{name}: training {config.model} with {config.downsample} on {config.dataset} for "
        f"{config.epochs} epoch(s), then evaluating ({plan.protocol} protocol)")
    # through the modules' attributes, so that the entry points can be patched
    result = strain.train(config, resume=not fresh)
    evaluation = hevaluation.evaluate_model(result.model, config, metrics=list(plan.metrics),
                                protocol=plan.protocol, progress=False,
                                **dict(plan.protocol_options))
    evaluation.save_json(run_dir / EVALUATION_JSON)
    estimates = dict(MethodResult.from_evaluation(arm.name, evaluation, result.params,
                                                  result.train_time_s).estimates)
    estimates.update(layer_homogeneity(evaluation))
    estimates.update(diagonal_estimates(evaluation))
    if plan.train_accuracy:
        estimates = add_gap({**estimates, **train_accuracy(result.model, config, plan)})
    cell = Cell(arm.name, seed, estimates, result.params, round(result.train_time_s, 2),
                str(run_dir))
    atomic_write_json(run_dir / CELL_JSON, {"settings": settings, "cell": cell.to_dict()})
    return cell, True


def layer_homogeneity(evaluation: EvaluationResult) -> dict[str, Estimate]:
    """The homogeneity of the maps each downsampling layer samples from: ``h_fraction`` and
    ``h_score`` (mean over layers) and ``h_fraction@<layer>`` per layer (empty when the
    evaluation did not measure it)."""
    found: dict[str, Estimate] = {}
    for layer, measures in evaluation.layer_homogeneity.items():
        for quantity, estimate in measures.items():
            found[f"h_{quantity}" if layer == "mean" else f"h_{quantity}@{layer}"] = estimate
    return found


def diagonal_estimates(evaluation: EvaluationResult) -> dict[str, Estimate]:
    """Accuracy and agreement along the diagonal shift ``(d, d)`` as ``diag_acc:<mode>@<d>``
    and ``diag_agree:<mode>@<d>`` (empty when the evaluation did not measure it)."""
    found: dict[str, Estimate] = {}
    for mode, curve in evaluation.diagonal.items():
        for d, accuracy, agreement in zip(curve.shifts, curve.accuracy, curve.agreement,
                                          strict=True):
            found[f"diag_acc:{mode}@{d}"] = accuracy
            found[f"diag_agree:{mode}@{d}"] = agreement
    return found


def train_accuracy(model: torch.nn.Module, config: TrainConfig,
                   plan: StudyPlan) -> dict[str, Estimate]:
    """Accuracy on the run's own training images (eval mode, no augmentation; as many as the
    test evaluation uses) as ``train_acc``, and the generalisation gap ``gap = train_acc -
    acc`` with a normal interval (train and test images are independent samples)."""
    import shiftpool.metrics as smetrics

    device = resolve_device(config.device)
    seen = inputs.subset(inputs.load_split(config, "train"), config.train_subset, config.seed)
    chosen = inputs.subset(seen, config.eval_max_images, config.seed)
    loader = inputs.eval_loader(chosen, config, Runtime(device), sharded=False)
    with torch.autocast(device_type=device.type, enabled=False):
        result = smetrics.evaluate(model.to(device, hevaluation.EVAL_DTYPE), loader,
                                   metrics=("accuracy",), protocol=plan.protocol, device=device,
                                   seed=config.seed, progress=False,
                                   **dict(plan.protocol_options))
    train_acc = result.accuracy
    assert train_acc is not None
    return {"train_acc": train_acc}


def add_gap(estimates: dict[str, Estimate]) -> dict[str, Estimate]:
    """``estimates`` with ``gap = train_acc - acc`` (normal interval) where both are there."""
    if "train_acc" not in estimates or "acc" not in estimates:
        return estimates
    train_acc, test_acc = estimates["train_acc"], estimates["acc"]
    value = train_acc.value - test_acc.value
    se = math.hypot(standard_error(train_acc), standard_error(test_acc))
    z = normal_quantile(0.5 + train_acc.confidence / 2)
    gap = Estimate(value, value - z * se, value + z * se, min(train_acc.n, test_acc.n),
                   "normal difference", train_acc.confidence)
    return {**estimates, "gap": gap}
