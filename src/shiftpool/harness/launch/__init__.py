"""Sweeps of training-and-evaluation units, run here or on a Ray cluster.

A comparison or a study is a *sweep*: methods (or a study's arms) × seeds, each one
:class:`Unit` — train one model, evaluate it, write its run folder. A launcher runs the units:

- :class:`LocalLauncher` (``"local"``, the default): one after another in this process, as
  ``compare`` always did (under ``torchrun`` every rank runs each unit together);
- :class:`RayLauncher` (``"ray"``, needs ``shiftpool[ray]``): each unit a Ray task with the CPUs
  (its torch threads) and the GPU it declares, on the cluster ``ray.init(address=...)`` joins,
  or on a local Ray instance without an address. Ray is imported only then.

Multi-GPU units: a unit uses at most one GPU. A sweep has many independent units, so one GPU
per unit keeps every GPU busy with no communication at all, where data parallelism inside a
unit (``torchrun``, or Ray Train's ``TorchTrainer``) would add gradient all-reduces, a process
group per unit and Ray Train's extra for models that train in minutes on one device. One large
model on several GPUs is ``torchrun ... -m shiftpool.cli compare`` on one node.

The output folder is the single source of truth. A unit's run folder is finished when its
result file (``row.json``, ``cell.json``) is there, written last and atomically, after the
evaluation it summarises; a unit that starts removes a stale one first. The results are rebuilt
from the finished run folders, so a sweep can be interrupted (Ctrl-C, a killed driver, a lost
node) and run again, extended with methods or seeds, or run partly on one machine and partly on
a cluster: only what is missing runs, nothing is counted twice. Two sweeps into one folder: the
driver holds the folder's lock (:class:`~shiftpool.core.io.FolderLock`) for the whole sweep (a
second one fails at once), and each unit, wherever it runs, holds its own run folder's lock
while it writes there (the output folder must be on a file system every node sees, with
``flock``: NFSv4, Lustre, BeeGFS, CephFS).

Each unit logs into ``<out_dir>/logs/<key>.log`` (header, its lines, on a Ray worker all its
output, the traceback of a failure; attempts append). A failed unit is said with its error and
log and tried again up to ``retries`` times; the others go on, and the sweep's
:class:`SweepResult` says which failed (``compare`` and ``study`` then raise
:class:`SweepError`; the command exits with 1). An input error that shows only once a unit
runs (:class:`~shiftpool.core.errors.InputError`, e.g. a batch larger than the training set)
is not retried: the local launcher stops at it, raising it as before (exit 2, one line); on Ray
each unit that meets it is reported with that one line.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> units = [Unit(unit_key("max", seed), f"max seed {seed}", "max", seed,
    ...               folder / "max" / f"seed{seed}", work=lambda context: context.unit.seed)
    ...          for seed in (0, 1)]
    >>> result = get_launcher("local").run(units, folder / "logs", log=lambda text: None)
    >>> [outcome.value for outcome in result.outcomes], result.ok
    ([0, 1], True)
    >>> sorted(p.name for p in (folder / "logs").iterdir())
    ['max-seed0.log', 'max-seed1.log']
"""

from shiftpool.harness.launch.local import (
    LAUNCHERS,
    Launcher,
    LocalLauncher,
    get_launcher,
    ray_available,
)
from shiftpool.harness.launch.progress import SweepProgress
from shiftpool.harness.launch.ray_launcher import RayLauncher
from shiftpool.harness.launch.unit import (
    LOGS_DIR,
    Attempt,
    Resources,
    SweepError,
    SweepResult,
    Unit,
    UnitContext,
    UnitOutcome,
    execute_unit,
    unit_key,
)

__all__ = [
    "LAUNCHERS",
    "LOGS_DIR",
    "Attempt",
    "Launcher",
    "LocalLauncher",
    "RayLauncher",
    "Resources",
    "SweepError",
    "SweepProgress",
    "SweepResult",
    "Unit",
    "UnitContext",
    "UnitOutcome",
    "execute_unit",
    "get_launcher",
    "ray_available",
    "unit_key",
]
