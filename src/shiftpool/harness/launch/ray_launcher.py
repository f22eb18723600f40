"""The Ray launcher: each unit a Ray task with the CPUs and GPU it declares.

Ray is imported when a sweep runs, never when this module is imported. The driver (the process
that calls :meth:`RayLauncher.run`) joins the cluster at ``address`` (``ray.init(address=...)``)
or starts a local Ray instance when there is none, submits one task per unit, and waits: as
tasks start and end it logs the sweep's progress (done, running, failed, waiting, ETA); a failed
attempt (the unit raised, or its worker or node died) is said with its error and submitted again
up to ``retries`` times while the other units go on; an
:class:`~shiftpool.core.errors.InputError` (a bad setting that shows only once a unit starts)
is not retried, and reported in one line.

A task runs :func:`~shiftpool.harness.launch.unit.execute_unit` in the worker: its output goes
to the unit's log file, its run folder is locked while it runs, and its torch threads are the
unit's CPUs. Output folder and data root must be on a file system every node sees (paths are
passed as given: make them absolute); the driver's ``SHIFTPOOL_*`` environment variables
(``SHIFTPOOL_DATA``) are passed to the tasks. A unit is started when its log file grows (a
task's first act is to write its header there), which is how ``running`` is counted without
Ray's state API.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shiftpool.core.checks import check_int
from shiftpool.core.errors import InputError, MissingExtraError
from shiftpool.core.log import Log, stderr_log
from shiftpool.harness.launch.progress import SweepProgress, clock_text
from shiftpool.harness.launch.unit import (
    LOCK_WAIT_S,
    Attempt,
    Resources,
    SweepResult,
    Unit,
    UnitOutcome,
    check_units,
    execute_unit,
    log_path,
    one_line,
)

#: Environment variables of the driver passed on to every task (their prefix).
ENV_PREFIX = "SHIFTPOOL_"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtraError("shiftpool.launch: the ray launcher needs Ray: "
                                "pip install 'shiftpool[ray]'") from None
    return ray


def run_task(unit: Unit, number: int, log_file: str, threads: int,
             lock_wait_s: float) -> Attempt:
    """What a Ray task runs: one attempt at ``unit``, everything it prints in its log."""
    return execute_unit(unit, number, Path(log_file), capture_output=True, threads=threads,
                        lock_wait_s=lock_wait_s)


@dataclass
class _InFlight:
    unit: Unit
    number: int
    log_file: Path
    offset: int  # the log's size when submitted: it grows once the task has started
    submitted: float
    started: bool = False


@dataclass
class RayLauncher:
    """Each unit a Ray task; see the module's docstring.

    Attributes:
        address: the cluster (``"auto"``, ``"HOST:6379"``); ``None``: a local Ray instance,
            started for the sweep and shut down after it. A process already connected to Ray
            (``ray.is_initialized()``) uses that connection and leaves it open.
        retries: further attempts at a failed unit.
        num_cpus: CPUs of a local instance started here (default: all).
        poll_s: how often the driver looks at the tasks.
        heartbeat_s: a progress line at least this often while nothing changes.
        lock_wait_s: how long a task waits for its run folder's lock.
        init_options: more keyword arguments of ``ray.init`` (e.g. ``object_store_memory``).

    Example:
        >>> launcher = RayLauncher(address="auto", retries=2)
        >>> launcher.name, launcher.where()
        ('ray', 'the Ray cluster at auto')
    """

    address: str | None = None
    retries: int = 0
    num_cpus: int | None = None
    poll_s: float = 0.2
    heartbeat_s: float = 60.0
    lock_wait_s: float = LOCK_WAIT_S
    init_options: Mapping[str, Any] = field(default_factory=dict)
    name: str = "ray"

    def __post_init__(self) -> None:
        check_int(self.retries, "shiftpool.launch: retries", minimum=0)
        if self.num_cpus is not None:
            check_int(self.num_cpus, "shiftpool.launch: num_cpus", minimum=1)

    def where(self) -> str:
        if self.address is None:
            return "a local Ray instance"
        return f"the Ray cluster at {self.address}"

    def run(self, units: Sequence[Unit], log_dir: Path, log: Log = stderr_log, *,
            reused: int = 0) -> SweepResult:
        """Run ``units`` as Ray tasks; see :class:`~shiftpool.harness.launch.local.Launcher`.

        Raises:
            InputError: the cluster cannot be reached, or no node has what a unit asks for.
        """
        ray = _ray()
        units = check_units(units)
        clock, started = time.perf_counter(), time.time()
        if not units:  # everything was done already: no cluster needed
            return SweepResult(self.name, [], reused, 0.0, 0.0, started)
        with self._connected(ray) as where:
            startup = time.perf_counter() - clock
            nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
            resources = {unit.key: _fit(unit, nodes, where) for unit in units}
            total = {k: sum(n.get(k, 0) for n in nodes) for k in ("CPU", "GPU")}
            log(f"ray: {len(units)} unit(s) on {where} ({len(nodes)} node(s), "
                f"{total['CPU']:g} CPU(s), {total['GPU']:g} GPU(s)); logs in {log_dir}")
            at_once = max(1, int(total["CPU"]))  # no more units can run at once
            outcomes = self._sweep(ray, units, resources, Path(log_dir), log, reused, at_once)
        return SweepResult(self.name, outcomes, reused, time.perf_counter() - clock, startup,
                           started)

    @contextlib.contextmanager
    def _connected(self, ray: Any) -> Iterator[str]:
        if ray.is_initialized():
            yield f"the Ray cluster at {ray.get_runtime_context().gcs_address}"
            return
        env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                                   "runtime_env": {"env_vars": env} if env else None}
        if self.address is None:
            options.update(include_dashboard=False, num_cpus=self.num_cpus)
        options.update(self.init_options)
        check_reachable(self.address)
        try:
            ray.init(address=self.address, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            hint = ""
            if self.address is not None and os.environ.get("RAY_AUTH_MODE") != "token":
                hint = ("; a cluster with token authentication needs RAY_AUTH_MODE=token and "
                        "its token here too (ray get-auth-token)")
            raise InputError(f"shiftpool.launch: cannot start or join {self.where()}: "
                             f"{one_line(error)}{hint}") from None
        try:
            yield f"{self.where()} ({ray.get_runtime_context().gcs_address})"
        finally:
            ray.shutdown()

    def _sweep(self, ray: Any, units: list[Unit], resources: Mapping[str, Resources],
               log_dir: Path, log: Log, reused: int, at_once: int) -> list[UnitOutcome]:
        task = ray.remote(run_task)
        progress = SweepProgress(total=len(units) + reused, reused=reused)
        attempts: dict[str, list[Attempt]] = {unit.key: [] for unit in units}
        flying: dict[Any, _InFlight] = {}

        def submit(unit: Unit, number: int) -> None:
            need = resources[unit.key]
            path = log_path(log_dir, unit)
            offset = path.stat().st_size if path.exists() else 0
            ref = task.options(num_cpus=need.cpus, num_gpus=need.gpus, max_retries=0,
                               name=f"shiftpool {unit.key}").remote(
                unit, number, str(path), need.threads_in_task, self.lock_wait_s)
            flying[ref] = _InFlight(unit, number, path, offset, time.time())

        for unit in units:
            submit(unit, 1)
        said = time.monotonic()
        try:
            while flying:
                refs = list(flying)
                ready, _ = ray.wait(refs, num_returns=1, timeout=self.poll_s)
                if ready:
                    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                # which have started: the first waiting ones, in the order submitted (at most as
                # many as can run at once: a few file stats per poll, however long the sweep)
                waiting = [item for item in flying.values() if not item.started][:at_once]
                for item in waiting:
                    if _grew(item):
                        item.started = True
                        progress.start(item.unit.key)
                        log(f"[{progress.text()}] {item.unit.label}: started"
                            + (f" (attempt {item.number})" if item.number > 1 else ""))
                        said = time.monotonic()
                for ref in ready:
                    item = flying.pop(ref)
                    attempt = _result(ray, ref, item)
                    attempts[item.unit.key].append(attempt)
                    progress.stop(item.unit.key)
                    if not attempt.ok and not attempt.input_error and \
                            item.number <= self.retries:
                        log(f"[{progress.text()}] {item.unit.label}: attempt {item.number} "
                            f"failed ({attempt.error}); retrying")
                        submit(item.unit, item.number + 1)
                    else:
                        progress.finish(item.unit.key, attempt.seconds, ok=attempt.ok)
                        log(f"[{progress.text()}] {item.unit.label}: " + (
                            f"done in {attempt.seconds:.1f} s on {attempt.host}" if attempt.ok
                            else f"failed after {item.number} attempt(s): {attempt.error}; "
                                 f"log: {item.log_file}"))
                    said = time.monotonic()
                if flying and time.monotonic() - said >= self.heartbeat_s:
                    elapsed = clock_text(time.monotonic() - progress.started)
                    log(f"[{progress.text()}] {elapsed} so far")
                    said = time.monotonic()
        except BaseException:
            for ref in flying:  # the tasks stop at their next step and keep a checkpoint
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            raise
        return [UnitOutcome(unit, tuple(attempts[unit.key]), log_path(log_dir, unit))
                for unit in units]


def check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Refuse a ``HOST:PORT`` (or ``ray://HOST:PORT``) that takes no connection within
    ``timeout_s`` (``ray.init`` would retry for minutes); other addresses are left to Ray.

    Example:
        >>> check_reachable("auto")  # Ray finds it, or says it found none
        >>> check_reachable("127.0.0.1:1")
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.InputError: shiftpool.launch: no Ray cluster answers at \
127.0.0.1:1 (ConnectionRefusedError: [Errno 111] Connection refused); start one with `ray start \
--head` or give its address
    """
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", (address or "").strip())
    if match is None:
        return
    try:
        socket.create_connection((match[1], int(match[2])), timeout=timeout_s).close()
    except OSError as error:
        raise InputError(f"shiftpool.launch: no Ray cluster answers at {address} "
                         f"({one_line(error)}); start one with `ray start --head` or give its "
                         "address") from None


def _grew(item: _InFlight) -> bool:
    try:
        return item.log_file.stat().st_size > item.offset
    except OSError:
        return False


def _result(ray: Any, ref: Any, item: _InFlight) -> Attempt:
    """The task's attempt, or a failed one when Ray lost it (worker or node died, cancelled);
    that is also written to the unit's log."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        text = f"the task was lost: {one_line(error).splitlines()[0][:500]}"
        with contextlib.suppress(OSError), open(item.log_file, "a", encoding="utf-8") as handle:
            handle.write(f"=== {item.unit.label}: attempt {item.number}: {text} ===\n")
        return Attempt(item.number, False, time.time() - item.submitted, "?", 0, item.submitted,
                       error=text)


def _fit(unit: Unit, nodes: Sequence[Mapping[str, float]], where: str) -> Resources:
    """``unit``'s resources with ``gpus="auto"`` settled; refused when no node has them."""
    need = unit.resources
    if need.gpus == "auto":
        need = Resources(need.cpus, int(any(n.get("GPU", 0) >= 1 for n in nodes)), need.threads)
    if not any(n.get("CPU", 0) >= need.cpus and n.get("GPU", 0) >= need.gpus for n in nodes):
        sizes = sorted((n.get("GPU", 0), n.get("CPU", 0)) for n in nodes)
        biggest = f"{sizes[-1][1]:g} CPU(s), {sizes[-1][0]:g} GPU(s)" if sizes else "no node"
        raise InputError(f"shiftpool.launch: {unit.label} asks for {need.cpus} CPU(s) and "
                         f"{need.gpus} GPU(s), but no node of {where} has them (largest: "
                         f"{biggest}); use fewer threads, --device cpu, or add nodes")
    return need
