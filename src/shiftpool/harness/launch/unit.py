"""The unit of a sweep and how one attempt at it runs, wherever that is.

A *unit* is one training-and-evaluation run: one method at one seed (and, in a study, one arm
of its grid), with its own run folder. Launchers (:mod:`.local`, :mod:`.ray_launcher`) decide
where units run; :func:`execute_unit` is what runs one attempt, in this process or in a Ray
worker, the same way:

- the attempt's log (``logs/<key>.log`` in the sweep's folder) gets a header line (which
  attempt, host, PID, time), every line the unit logs, with ``capture_output`` everything it
  prints, and on failure the traceback; attempts append, so the file keeps the unit's history;
- the unit's run folder is locked (:class:`~shiftpool.core.io.FolderLock`) while it runs, so
  two launchers never write one run folder at once, even from two machines (the sweep's own
  folder lock is held by the launcher's driver process for the whole sweep);
- torch's CPU threads are set to what the unit declares, then put back;
- an exception is caught and returned as a failed :class:`Attempt` (its one-line error; the
  traceback is in the log): the launcher decides whether to retry (not after an
  :class:`~shiftpool.core.errors.InputError`: the same input fails the same way).
  ``KeyboardInterrupt`` is not caught.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from shiftpool.core.checks import check_int
from shiftpool.core.errors import InputError
from shiftpool.core.io import FolderLock, FolderLockedError
from shiftpool.core.log import Log
from shiftpool.train.runtime import Runtime, cpu_threads

#: The sweep's folder of per-unit logs: ``<out_dir>/logs/<key>.log``.
LOGS_DIR = "logs"
#: How long an attempt waits for its run folder's lock (a unit of a killed driver that is still
#: being torn down), polling, before it fails.
LOCK_WAIT_S = 30.0
#: Lines of a failed unit's log shown in the sweep's report.
TAIL_LINES = 20

_KEY = re.compile(r"[^A-Za-z0-9._+=-]+")


def unit_key(method: str, seed: int | None = None, cell: str | None = None) -> str:
    """A unit's key, safe as a file name: ``<cell or method>-seed<k>`` (characters other than
    letters, digits and ``._+=-`` become ``_``).

    Example:
        >>> unit_key("max", 1), unit_key("max"), unit_key("blur", 0, cell="k3 s2")
        ('max-seed1', 'max', 'k3_s2-seed0')
    """
    name = _KEY.sub("_", cell if cell is not None else method)
    return name if seed is None else f"{name}-seed{seed}"


@dataclass(frozen=True)
class Resources:
    """What one unit declares it needs.

    Attributes:
        cpus: CPU cores (a Ray task reserves them; its torch threads default to this).
        gpus: GPUs: 0 or 1 (a unit trains on one device; see :mod:`shiftpool.harness.launch`),
            or ``"auto"``: one where the cluster has GPUs (a unit on device ``auto``).
        threads: torch CPU threads inside the unit; ``None``: the launcher's default (Ray:
            ``cpus``; in this process: left as they are).

    Example:
        >>> Resources(cpus=2).threads_in_task, Resources(cpus=2, threads=1).threads_in_task
        (2, 1)
    """

    cpus: int = 1
    gpus: int | Literal["auto"] = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        check_int(self.cpus, "shiftpool.launch: a unit's cpus", minimum=1)
        if self.gpus != "auto":
            check_int(self.gpus, "shiftpool.launch: a unit's gpus", minimum=0, maximum=1)
        if self.threads is not None:
            check_int(self.threads, "shiftpool.launch: a unit's threads", minimum=1)

    @property
    def threads_in_task(self) -> int:
        """torch's CPU threads in a task of its own (a Ray worker)."""
        return self.threads or self.cpus


@dataclass(frozen=True)
class UnitContext:
    """What a unit's work gets.

    Attributes:
        unit: the unit.
        attempt: 1 for the first attempt, 2 for the first retry...
        log: writes one line to the unit's log (and, in this process, to the sweep's log).
        runtime: the process group's runtime when the local launcher runs under ``torchrun``
            (every rank runs the unit); ``None`` elsewhere.
    """

    unit: Unit
    attempt: int
    log: Log
    runtime: Runtime | None = None


@dataclass(frozen=True)
class Unit:
    """One training-and-evaluation run of a sweep.

    Attributes:
        key: unique within the sweep and safe as a file name (:func:`unit_key`); names the
            unit's log, ``logs/<key>.log``.
        label: how the sweep's log names it (``"max seed 1"``).
        method: the downsampling method.
        seed: the training seed.
        run_dir: its run folder (locked while it runs; nothing else of the sweep writes there).
        work: ``work(context) -> value``; must be picklable for Ray (a module-level function or
            a :func:`functools.partial` of one); its value should be small (it travels back).
        resources: what it declares (:class:`Resources`).
        cell: a study's arm (the grid cell) it belongs to, if any.

    Example:
        >>> unit = Unit("max-seed0", "max seed 0", "max", 0, Path("out/max/seed0"),
        ...             work=len, resources=Resources(cpus=1))
        >>> unit.key, unit.resources.gpus
        ('max-seed0', 0)
    """

    key: str
    label: str
    method: str
    seed: int
    run_dir: Path
    work: Callable[[UnitContext], Any]
    resources: Resources = field(default_factory=Resources)
    cell: str | None = None


@dataclass(frozen=True)
class Attempt:
    """One attempt at a unit, as it ran.

    Attributes:
        number: 1, 2, ... (retries count up).
        ok: it finished without an exception.
        seconds: the unit's own work (training and evaluation), without scheduling.
        host, pid: where it ran.
        started: when it started (``time.time()``).
        error: one line (``"TypeError: ..."``) when it failed; the traceback is in the log.
        value: what the work returned (when ``ok``).
        input_error: the failure was an :class:`~shiftpool.core.errors.InputError` (a bad
            setting that shows only when the unit starts): not retried, reported in one line.
    """

    number: int
    ok: bool
    seconds: float
    host: str
    pid: int
    started: float
    error: str = ""
    value: Any = None
    input_error: bool = False


Status = Literal["done", "failed"]


@dataclass(frozen=True)
class UnitOutcome:
    """A unit at the end of a sweep: every attempt, and its log.

    Example:
        >>> unit = Unit("max", "max", "max", 0, Path("out/max"), work=len)
        >>> tried = Attempt(1, False, 0.5, "node", 7, 0.0, error="OSError: disk full")
        >>> UnitOutcome(unit, (tried,), Path("out/logs/max.log")).status
        'failed'
    """

    unit: Unit
    attempts: tuple[Attempt, ...]
    log_path: Path

    @property
    def status(self) -> Status:
        return "done" if self.attempts and self.attempts[-1].ok else "failed"

    @property
    def value(self) -> Any:
        """The value of the successful attempt (``None`` when it failed)."""
        return self.attempts[-1].value if self.status == "done" else None

    @property
    def error(self) -> str:
        """The last attempt's error line ("" when done)."""
        return self.attempts[-1].error if self.attempts else "never ran"

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines of the unit's log ("" when it cannot be read)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class SweepResult:
    """What a launcher returns: every unit's outcome, in the order given.

    Attributes:
        launcher: ``"local"`` or ``"ray"``.
        outcomes: one per unit.
        reused: units of the sweep that were already done before it started (not launched).
        seconds: wall time of the launch.
        startup_s: part of ``seconds`` spent starting or joining the engine (Ray).
        started: when the launch started (``time.time()``).
    """

    launcher: str
    outcomes: list[UnitOutcome]
    reused: int = 0
    seconds: float = 0.0
    startup_s: float = 0.0
    started: float = 0.0

    @property
    def done(self) -> list[UnitOutcome]:
        return [o for o in self.outcomes if o.status == "done"]

    @property
    def failed(self) -> list[UnitOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        """Every unit finished."""
        return not self.failed

    def summary(self) -> str:
        """One line: how many units ran, finished and failed, and the wall time.

        Example:
            >>> SweepResult("local", [], reused=2, seconds=1.25).summary()
            'local launcher: 0 unit(s) run, 0 failed, 2 already done; 1.2 s'
        """
        return (f"{self.launcher} launcher: {len(self.outcomes)} unit(s) run, "
                f"{len(self.failed)} failed, {self.reused} already done; {self.seconds:.1f} s")

    def report(self, lines: int = TAIL_LINES) -> str:
        """Each failed unit: its error, attempts, log file and the last ``lines`` of the log
        (not for an input error: its one line says it all; the traceback is in the log)."""
        parts = []
        for outcome in self.failed:
            parts.append(f"{outcome.unit.label}: failed after {len(outcome.attempts)} "
                         f"attempt(s): {outcome.error}\n  log: {outcome.log_path}")
            tail = "" if outcome.attempts[-1].input_error else outcome.log_tail(lines)
            if tail:
                parts.append("\n".join(f"  | {line}" for line in tail.splitlines()))
        return "\n".join(parts)


class SweepError(RuntimeError):
    """Some units of a sweep failed (after their retries); the others finished and their run
    folders are kept, so running the same sweep again runs only the failed ones.

    Attributes:
        result: the :class:`SweepResult` (``result.report()`` shows each failure with its log).
    """

    def __init__(self, what: str, result: SweepResult) -> None:
        failed = result.failed
        names = ", ".join(f"{o.unit.label} ({o.error})" for o in failed[:3])
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        super().__init__(
            f"{what}: {len(failed)} of {len(result.outcomes) + result.reused} unit(s) failed: "
            f"{names}{more}; logs in {failed[0].log_path.parent if failed else '?'}. "
            "Finished runs are kept: the same command runs only what is missing.")
        self.result = result


def check_units(units: Sequence[Unit]) -> list[Unit]:
    """``units`` as a list, refusing repeated keys or run folders (one writer per folder)."""
    units = list(units)
    for what, values in (("keys", [u.key for u in units]),
                         ("run folders", [str(u.run_dir) for u in units])):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise InputError(f"shiftpool.launch: units repeat {what}: {', '.join(repeated)}")
    return units


def log_path(log_dir: Path, unit: Unit) -> Path:
    """``log_dir/<key>.log``."""
    return Path(log_dir) / f"{unit.key}.log"


def one_line(error: BaseException) -> str:
    """``"TypeError: message"`` on one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def execute_unit(unit: Unit, attempt: int, log_file: Path, *, echo: Log | None = None,
                 capture_output: bool = False, runtime: Runtime | None = None,
                 threads: int | None = None, lock_wait_s: float = LOCK_WAIT_S,
                 reraise: tuple[type[Exception], ...] = ()) -> Attempt:
    """Run one attempt at ``unit`` and return how it went (see the module's docstring).

    Args:
        unit: the unit.
        attempt: its number (1 for the first).
        log_file: the unit's log (appended; its folder is created).
        echo: also gets every line the unit logs (the sweep's log, in this process).
        capture_output: also send everything printed to ``sys.stdout``/``sys.stderr`` during
            the attempt into the log (a Ray worker; not in the caller's own process).
        runtime: passed on in the :class:`UnitContext`.
        threads: torch CPU threads during the attempt (``None``: left alone).
        lock_wait_s: how long to wait for the run folder's lock before failing.
        reraise: exceptions raised again (once logged) instead of returned as a failure.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> unit = Unit("one", "one", "max", 0, folder / "run",
        ...             work=lambda context: context.log("hello") or 42)
        >>> tried = execute_unit(unit, 1, folder / "logs" / "one.log")
        >>> tried.ok, tried.value, (folder / "logs" / "one.log").read_text().count("hello")
        (True, 42, 1)
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    host, pid, started = socket.gethostname(), os.getpid(), time.time()
    with open(log_file, "a", encoding="utf-8") as handle:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        _write(handle, f"=== {unit.label}: attempt {attempt} on {host}, PID {pid}, {stamp} ===")

        def line(text: str) -> None:
            _write(handle, text)
            if echo is not None:
                echo(text)

        clock = time.perf_counter()
        try:
            with contextlib.ExitStack() as stack:
                if capture_output:
                    stack.enter_context(contextlib.redirect_stdout(handle))
                    stack.enter_context(contextlib.redirect_stderr(handle))
                stack.enter_context(_run_folder_lock(unit, attempt, lock_wait_s))
                stack.enter_context(cpu_threads(threads))
                value = unit.work(UnitContext(unit, attempt, line, runtime))
        except Exception as error:
            seconds = time.perf_counter() - clock
            handle.flush()
            traceback.print_exc(file=handle)
            _write(handle, f"=== {unit.label}: attempt {attempt} failed after {seconds:.1f} s: "
                           f"{one_line(error)} ===")
            if isinstance(error, reraise):
                raise
            return Attempt(attempt, False, seconds, host, pid, started, error=one_line(error),
                           input_error=isinstance(error, InputError))
        seconds = time.perf_counter() - clock
        _write(handle, f"=== {unit.label}: attempt {attempt} done in {seconds:.1f} s ===")
    return Attempt(attempt, True, seconds, host, pid, started, value=value)


def _write(handle: IO[str], text: str) -> None:
    handle.write(text + "\n")
    handle.flush()


@contextlib.contextmanager
def _run_folder_lock(unit: Unit, attempt: int, wait_s: float) -> Iterator[None]:
    """The unit's run folder locked for this attempt, waiting up to ``wait_s`` for it."""
    lock = FolderLock(unit.run_dir, f"{unit.label}, attempt {attempt}")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            lock.acquire()
            break
        except FolderLockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
    try:
        yield
    finally:
        lock.release()



