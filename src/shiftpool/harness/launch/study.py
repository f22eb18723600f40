"""A study's grid as a sweep: every arm at every seed one unit, through a launcher.

:func:`run_cells` is what :func:`shiftpool.harness.studies.run_study` calls for its runs. This
process looks for the runs already done (``cell.json`` with the same settings) and launches the
others; each unit is :func:`~shiftpool.harness.studies.runner.run_cell` of one arm and seed,
here or in a Ray task. The cells are then read back from the run folders, in the grid's order
(arm by arm, seed by seed), whichever launcher ran them.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from shiftpool.core.log import Log
from shiftpool.harness.launch.local import Launcher, LocalLauncher, get_launcher
from shiftpool.harness.launch.unit import (
    LOGS_DIR,
    Resources,
    SweepError,
    Unit,
    UnitContext,
    unit_key,
)

if TYPE_CHECKING:
    from shiftpool.harness.studies.framework import Cell
    from shiftpool.harness.studies.plan import StudyPlan


def run_cells(plan: StudyPlan, out_dir: str | Path, *, fresh: bool = False,
              log: Log, launcher: str | Launcher = "local") -> tuple[list[Cell], int]:
    """Every arm of ``plan`` at every seed, through ``launcher``.

    Args:
        plan: the study at its scale.
        out_dir: the study's folder (runs in ``runs/<arm>/seed<s>/``, unit logs in ``logs/``).
        fresh: run everything again, ignoring earlier results.
        log: one line per run already done; the launcher's lines (local: each run's own).
        launcher: ``"local"``, ``"ray"`` or a :class:`~shiftpool.harness.launch.Launcher`.

    Returns:
        ``(cells, trained)``: one cell per arm and seed, in the grid's order, and how many
        were trained now.

    Raises:
        SweepError: some runs failed after their retries (the others are kept).

    Example:
        >>> from shiftpool.harness.studies import get_study
        >>> plan = get_study("zhang").plan("smoke")
        >>> [unit_key(arm.changes["downsample"], seed, cell=arm.name)  # each unit's log name
        ...  for arm in plan.arms for seed in plan.seeds]
        ['f1-seed0', 'f2-seed0', 'f3-seed0', 'f5-seed0', 'f7-seed0']
        >>> run_cells(plan, "runs/study/zhang-smoke", log=print, launcher="ray")  # doctest: +SKIP
    """
    from shiftpool.harness.studies.runner import CELL_JSON, _cell_settings, _saved_cell

    chosen = get_launcher(launcher)
    out = Path(out_dir)
    if not isinstance(chosen, LocalLauncher):  # paths as every node sees them
        out = out.absolute()
        if plan.base.data_dir is not None:
            plan = replace(plan, base=plan.base.replace(
                data_dir=str(Path(plan.base.data_dir).absolute())))
    grid = [(arm, seed) for arm in plan.arms for seed in plan.seeds]
    saved: dict[tuple[str, int], Cell] = {}
    units = []
    for i, (arm, seed) in enumerate(grid, start=1):
        config = plan.config(arm, seed, out)
        label = f"[{i}/{len(grid)}] {arm.name} seed {seed}"
        cell = None if fresh else _saved_cell(Path(config.out_dir), _cell_settings(plan, config))
        if cell is not None:
            log(f"{label}: already done ({Path(config.out_dir) / CELL_JSON})")
            saved[arm.name, seed] = cell
            continue
        gpus = {"cpu": 0, "cuda": 1}.get(config.device, "auto")
        work = partial(run_study_unit, plan=plan, arm=arm.name, seed=seed, out_dir=str(out),
                       fresh=fresh, label=label)
        units.append(Unit(unit_key(config.downsample, seed, cell=arm.name),
                          f"{arm.name} seed {seed}", config.downsample, seed,
                          Path(config.out_dir), work,
                          Resources(cpus=config.num_threads or 1, gpus=gpus,
                                    threads=config.num_threads), cell=arm.name))
    result = chosen.run(units, out / LOGS_DIR, log, reused=len(saved))
    if not result.ok:
        raise SweepError("shiftpool.study", result)
    for unit in units:
        config = plan.config(plan.arm(unit.cell or ""), unit.seed, out)
        cell = _saved_cell(unit.run_dir, _cell_settings(plan, config))
        if cell is None:
            raise RuntimeError(f"shiftpool.study: {unit.label} finished, but {unit.run_dir} "
                               "holds no cell of its settings (did another process change it?)")
        saved[unit.cell or "", unit.seed] = cell
    trained = sum(bool(outcome.value) for outcome in result.outcomes)
    return [saved[arm.name, seed] for arm, seed in grid], trained


def run_study_unit(context: UnitContext, *, plan: StudyPlan, arm: str, seed: int, out_dir: str,
                   fresh: bool, label: str) -> bool:
    """A study's unit, wherever it runs: :func:`~shiftpool.harness.studies.runner.run_cell`
    of one arm and seed (a ``fresh`` one first removes the old ``cell.json``, so that a run cut
    short is not taken for finished). Returns whether it trained."""
    from shiftpool.harness.studies.runner import CELL_JSON, run_cell

    if fresh:
        (context.unit.run_dir / CELL_JSON).unlink(missing_ok=True)
    _, trained = run_cell(plan, arm, seed, out_dir, fresh=fresh, log=context.log, label=label)
    return trained
