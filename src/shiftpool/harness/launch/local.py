"""The local launcher (one unit after another in this process) and the choice of a launcher."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from shiftpool.core.checks import check_choice, check_int
from shiftpool.core.errors import InputError, MissingExtraError
from shiftpool.core.log import Log, stderr_log
from shiftpool.harness.launch.progress import SweepProgress
from shiftpool.harness.launch.unit import (
    LOCK_WAIT_S,
    Attempt,
    SweepResult,
    Unit,
    UnitContext,
    UnitOutcome,
    check_units,
    execute_unit,
    log_path,
)
from shiftpool.train.runtime import Runtime

#: The launchers :func:`get_launcher` knows.
LAUNCHERS = ("local", "ray")


@runtime_checkable
class Launcher(Protocol):
    """Runs a sweep's units somewhere and says how each went.

    ``run(units, log_dir, log, reused=k)`` runs every unit (retrying a failed one up to
    ``retries`` times), writes each unit's log to ``log_dir/<key>.log``, tells ``log`` how the
    sweep goes, and returns a :class:`~shiftpool.harness.launch.unit.SweepResult`; a failed unit
    does not stop the others. ``reused``: units of the sweep already done (for the counts).
    """

    name: str
    retries: int

    def run(self, units: Sequence[Unit], log_dir: Path, log: Log = stderr_log, *,
            reused: int = 0) -> SweepResult: ...


@dataclass
class LocalLauncher:
    """Every unit in this process, one after another, in the order given (the default).

    A unit logs through the sweep's ``log`` as well as into its own log file; a failed unit is
    said with its error and log file, retried up to ``retries`` times, and the next unit runs.
    An :class:`~shiftpool.core.errors.InputError` raised by a unit (a bad setting that shows
    only once it starts, or its run folder locked by another process) stops the sweep, raised
    again as it is, as ``compare`` always did: the next units would meet it too.
    Under ``torchrun`` (``runtime`` distributed) every rank runs every unit together, and an
    error stops the sweep on every rank at once, as without a launcher (ranks must stay in
    step): neither retries nor per-unit logs nor run-folder locks apply there.

    Attributes:
        retries: further attempts at a failed unit.
        runtime: the process group's runtime (``torchrun``), passed to each unit.
        lock_wait_s: how long a unit waits for its run folder's lock.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> units = [Unit(k, k, "max", 0, folder / k, work=lambda context: 1 / 0 if
        ...               context.unit.key == "b" else "fine") for k in ("a", "b", "c")]
        >>> result = LocalLauncher(retries=1).run(units, folder / "logs", log=lambda text: None)
        >>> [(o.unit.key, o.status, len(o.attempts)) for o in result.outcomes]
        [('a', 'done', 1), ('b', 'failed', 2), ('c', 'done', 1)]
        >>> result.failed[0].error
        'ZeroDivisionError: division by zero'
    """

    retries: int = 0
    runtime: Runtime | None = None
    lock_wait_s: float = LOCK_WAIT_S
    name: str = "local"

    def __post_init__(self) -> None:
        check_int(self.retries, "shiftpool.launch: retries", minimum=0)

    def run(self, units: Sequence[Unit], log_dir: Path, log: Log = stderr_log, *,
            reused: int = 0) -> SweepResult:
        units = check_units(units)
        clock, started = time.perf_counter(), time.time()
        progress = SweepProgress(total=len(units) + reused, reused=reused)
        outcomes = []
        for unit in units:
            attempts: list[Attempt] = []
            path = log_path(log_dir, unit)
            for number in range(1, self.retries + 2):
                progress.start(unit.key)
                attempt = self._attempt(unit, number, path, log)
                progress.stop(unit.key)
                attempts.append(attempt)
                if attempt.ok or attempt.input_error:
                    break
                if number <= self.retries:
                    log(f"{unit.label}: attempt {number} failed ({attempt.error}); retrying "
                        f"[{progress.text()}]")
            last = attempts[-1]
            progress.finish(unit.key, last.seconds, ok=last.ok)
            if not last.ok:
                log(f"{unit.label}: failed after {len(attempts)} attempt(s): {last.error}; "
                    f"log: {path} [{progress.text()}]")
            outcomes.append(UnitOutcome(unit, tuple(attempts), path))
        return SweepResult(self.name, outcomes, reused, time.perf_counter() - clock,
                           started=started)

    def _attempt(self, unit: Unit, number: int, path: Path, log: Log) -> Attempt:
        if self.runtime is not None and self.runtime.distributed:
            started = time.time()
            clock = time.perf_counter()
            value = unit.work(UnitContext(unit, number, log, self.runtime))
            return Attempt(number, True, time.perf_counter() - clock, "", 0, started,
                           value=value)
        return execute_unit(unit, number, path, echo=log, runtime=self.runtime,
                            threads=unit.resources.threads, lock_wait_s=self.lock_wait_s,
                            reraise=(InputError,))


def ray_available() -> bool:
    """Whether Ray is installed (found without importing it)."""
    return importlib.util.find_spec("ray") is not None


def get_launcher(name: str | Launcher = "local", *, address: str | None = None,
                 retries: int = 0, runtime: Runtime | None = None) -> Launcher:
    """The launcher ``name`` (``"local"`` or ``"ray"``), checked before any work; a
    :class:`Launcher` is returned as it is (then ``address`` and ``retries`` must be left out).

    Args:
        name: ``"local"`` (this process, one unit after another) or ``"ray"`` (each unit a Ray
            task; needs ``shiftpool[ray]``).
        address: the Ray cluster (``"auto"``, ``"HOST:PORT"``); ``None``: a local instance.
        retries: further attempts at a failed unit.
        runtime: the local launcher's process group (``torchrun``); refused with ``"ray"``.

    Raises:
        InputError: an unknown launcher, an address without ``"ray"`` or where nothing
            answers, bad retries, ``"ray"`` under ``torchrun``;
            :class:`~shiftpool.core.errors.MissingExtraError` when Ray is not installed. Ray
            itself is not imported here.

    Example:
        >>> get_launcher("local", retries=2)
        LocalLauncher(retries=2, runtime=None, lock_wait_s=30.0, name='local')
        >>> get_launcher("ray", address="auto").name if ray_available() else "ray"
        'ray'
        >>> get_launcher("local", address="auto")
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.InputError: shiftpool.launch: a Ray address needs the ray \
launcher (got launcher 'local')
    """
    if not isinstance(name, str):
        if not isinstance(name, Launcher):
            raise InputError(f"shiftpool.launch: a launcher must be one of "
                             f"{', '.join(LAUNCHERS)} or a Launcher, got {name!r}")
        if address is not None or retries:
            raise InputError("shiftpool.launch: give the address and retries to the launcher "
                             "itself, not beside it")
        return name
    check_choice(name, "shiftpool.launch: launcher", LAUNCHERS)
    check_int(retries, "shiftpool.launch: retries", minimum=0)
    if address is not None and name != "ray":
        raise InputError(f"shiftpool.launch: a Ray address needs the ray launcher (got "
                         f"launcher {name!r})")
    if name == "local":
        return LocalLauncher(retries=retries, runtime=runtime)
    if runtime is not None and runtime.distributed:
        raise InputError("shiftpool.launch: the ray launcher runs units as Ray tasks; do not "
                         "start it under torchrun")
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise InputError(f"shiftpool.launch: a Ray address must be a non-empty text such as "
                         f"'auto' or 'HOST:6379', got {address!r}")
    if not ray_available():
        raise MissingExtraError("shiftpool.launch: the ray launcher needs Ray: "
                                "pip install 'shiftpool[ray]'")
    from shiftpool.harness.launch.ray_launcher import RayLauncher, check_reachable

    check_reachable(address)
    return RayLauncher(address=address, retries=retries)
