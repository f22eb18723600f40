"""Compare downsampling methods: train each with the same seed and budget, evaluate each under
the same protocol, and write one table (JSON, CSV, Markdown) plus figures. Under ``torchrun``
every process trains each method (DDP) and rank 0 evaluates and writes.

Everything the user chose (methods and their options, metrics, protocol, model) is checked
before the first method trains. The output folder is locked for the whole run (a second
``compare`` into it fails at once, naming the holder's PID), and the results and figures are
written as one set: a reader never sees files of two runs side by side.

Each method runs in ``out_dir/<method>/`` (its checkpoint, logs, ``evaluation.json`` and
``row.json``). A comparison that was interrupted resumes: a method whose ``row.json`` matches
the settings is not run again; a method cut short continues from its checkpoint.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.core.io import FolderLock, FolderLockedError, atomic_write_json, atomic_write_set
from shiftpool.harness.evaluation import COMPARE_METRICS, evaluate_model
from shiftpool.metrics import MODE_PREFIX, Estimate, EvaluationResult, get_protocol
from shiftpool.metrics.evaluate import check_metrics
from shiftpool.models import create_model
from shiftpool.report import (
    FIGURE_FILES,
    ReportFile,
    markdown_table,
    render_figures,
    result_files,
)
from shiftpool.train.config import TrainConfig
from shiftpool.train.loop import train
from shiftpool.train.runtime import (
    Runtime,
    barrier,
    broadcast_object,
    resolve_device,
    setup_runtime,
    teardown_runtime,
)

ROW_JSON = "row.json"
EVALUATION_JSON = "evaluation.json"
LOCK_PURPOSE = "compare"
FIGURES_DIR = "figures"

#: Decimals of the Markdown table's columns that are not fractions (seconds to 0.1 s).
TABLE_DIGITS: dict[str, int] = {"train_time_s": 1}

#: How the sensitivity columns are marked: a mean over the offset grid, with no interval (the
#: grid's cells are measured on the same images, so they are not independent samples).
GRID_MEAN = "grid mean"

Log = Callable[[str], None]


def stderr_log(text: str) -> None:
    """The default ``log`` of :func:`compare`: one line on stderr."""
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class MethodResult:
    """One method's row of a comparison.

    Attributes:
        method: the operator's name.
        estimates: ``{column: Estimate}`` in table order: ``acc``; per shift mode of the
            protocol (prefix ``s`` zero, ``c`` circular, ``r`` reflect, ``crop``) ``{p}_cons``,
            ``{p}_fid``, ``{p}_worst`` (worst-case accuracy over the offset grid), ``{p}_sens``
            (mean feature cosine similarity over the grid; its ``method`` is ``"grid mean"``
            and it has no interval); ``msb``. Only what was measured.
        params: trainable parameters of the model.
        train_time_s: seconds spent training (summed over resumed sessions).

    Example:
        >>> acc = Estimate(0.9, 0.88, 0.92, 1000, "wilson")
        >>> result = MethodResult("max", {"acc": acc}, params=1200, train_time_s=234.62)
        >>> MethodResult.from_dict(result.to_dict()) == result
        True
        >>> result.table_row()["acc"]["value"], result.table_row()["train_time_s"]
        (0.9, 234.62)
    """

    method: str
    estimates: dict[str, Estimate]
    params: int
    train_time_s: float

    @classmethod
    def from_evaluation(cls, method: str, evaluation: EvaluationResult, params: int,
                        train_time_s: float) -> MethodResult:
        """The row of ``method`` from its evaluation and its training run."""
        estimates: dict[str, Estimate] = {}
        if evaluation.accuracy is not None:
            estimates["acc"] = evaluation.accuracy
        confidence = evaluation.protocol.confidence
        for mode in evaluation.protocol.shifts:
            p = MODE_PREFIX[mode]
            for key, table in (("cons", evaluation.consistency), ("fid", evaluation.fidelity),
                               ("worst", evaluation.worst_case)):
                if mode in table:
                    estimates[f"{p}_{key}"] = table[mode]
            if mode in evaluation.sensitivity:
                grid = evaluation.sensitivity[mode]
                estimates[f"{p}_sens"] = Estimate(grid.overall, math.nan, math.nan, grid.n,
                                                  GRID_MEAN, confidence)
        if "mean" in evaluation.msb:
            estimates["msb"] = evaluation.msb["mean"]
        return cls(method, estimates, params, round(train_time_s, 2))

    def table_row(self) -> dict[str, Any]:
        """The row of the results table: ``method``, each estimate as a dict (value and
        interval), ``params``, ``train_time_s``."""
        return {"method": self.method,
                **{column: e.to_dict() for column, e in self.estimates.items()},
                "params": self.params, "train_time_s": self.train_time_s}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (as saved in the method's ``row.json``)."""
        return {"method": self.method,
                "estimates": {column: e.to_dict() for column, e in self.estimates.items()},
                "params": self.params, "train_time_s": self.train_time_s}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MethodResult:
        """Inverse of :meth:`to_dict`; a malformed dict is an :class:`InputError`."""
        try:
            estimates = {str(k): Estimate.from_dict(dict(v))
                         for k, v in data["estimates"].items()}
            return cls(str(data["method"]), estimates, int(data["params"]),
                       float(data["train_time_s"]))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InputError(f"shiftpool.compare: not a saved method row ({error!r})") from None


@dataclass
class Comparison:
    """What :func:`compare` returns.

    Attributes:
        rows: one :class:`MethodResult` per method, in the order asked (empty on the processes
            of a ``torchrun`` other than rank 0).
        files: the files written (results.json/.csv/.md and figures), by kind.
        table: the Markdown table (as in results.md).
    """

    rows: list[MethodResult]
    files: dict[str, Path] = field(default_factory=dict)
    table: str = ""


@dataclass(frozen=True)
class ComparePlan:
    """A comparison's checked settings: what :func:`compare` will run, decided before any run.

    Attributes:
        configs: the run of each method, by method, in the order asked.
        metrics: metric names, each once.
        protocol: the protocol's name.
    """

    configs: dict[str, TrainConfig]
    metrics: tuple[str, ...]
    protocol: str


def method_config(config: TrainConfig, method: str, out_dir: Path,
                  options: Mapping[str, Mapping[str, Any]] | None = None) -> TrainConfig:
    """The run of ``method`` in a comparison: ``config`` with that operator and its folder."""
    return config.replace(
        downsample=method,
        downsample_options=dict((options or {}).get(method, {})),
        out_dir=str(out_dir / method),
    )


def plan_comparison(config: TrainConfig, methods: Sequence[str], out_dir: str | Path, *,
                    method_options: Mapping[str, Mapping[str, Any]] | None = None,
                    metrics: Sequence[str] | str | None = None,
                    protocol: str | None = None) -> ComparePlan:
    """Check everything a comparison was given, before anything runs; the arguments are
    :func:`compare`'s.

    Each method's model is built once (on the CPU, then dropped; the global RNG is left as it
    was) so that its operator options and the model options are checked with the values
    given, not only their names.

    Raises:
        InputError: one line naming the bad value and what is allowed.

    Example:
        >>> base = TrainConfig(model="simple_cnn", dataset="mnist5k")
        >>> plan_comparison(base, ["max", "blur"], "runs/compare", metrics=["accuracy"]).metrics
        ('accuracy',)
        >>> plan_comparison(base, ["max"], "runs/compare", protocol="nosuch")
        Traceback (most recent call last):
        ...
        shiftpool.core.errors.InputError: shiftpool.metrics: unknown protocol 'nosuch'; \
available: aps, tips, zhang
    """
    if isinstance(methods, str) or not methods:
        raise InputError("shiftpool.compare: give at least one downsampling method, as a list")
    if len(set(methods)) != len(methods):
        raise InputError(f"shiftpool.compare: methods repeat: {', '.join(methods)}")
    options = dict(method_options or {})
    if not all(isinstance(v, Mapping) for v in options.values()):
        raise InputTypeError(
            "shiftpool.compare: method options must map each method to its options, e.g. "
            f"{{'blur': {{'filter_size': 5}}}}; got {options!r}"
        )
    strays = sorted(set(options) - set(methods))
    if strays:
        raise InputError(
            f"shiftpool.compare: method options for {', '.join(map(str, strays))}, which are not "
            f"compared (methods: {', '.join(methods)})"
        )
    chosen_metrics = check_metrics(metrics or config.eval_metrics or COMPARE_METRICS)
    chosen_protocol = get_protocol(protocol or config.eval_protocol).name
    out = Path(out_dir)
    configs = {m: method_config(config, m, out, options) for m in methods}
    with torch.random.fork_rng(devices=[]):  # building draws weights: leave the caller's RNG
        for method_run in configs.values():
            create_model(method_run.model, downsample=method_run.downsample,
                         downsample_options=method_run.downsample_options,
                         circular=method_run.circular, **method_run.model_options)
    return ComparePlan(configs, chosen_metrics, chosen_protocol)


def _row_settings(config: TrainConfig, metrics: Sequence[str], protocol: str) -> dict[str, Any]:
    """What a saved row depends on: the trained weights' settings and the evaluation's."""
    return {"config": config.result_fields(), "metrics": list(metrics), "protocol": protocol,
            "max_images": config.eval_max_images}


def _finished(run_dir: Path, settings: dict[str, Any]) -> tuple[MethodResult, dict] | None:
    """``(row, evaluation dict)`` of a method already done with the same settings, else None."""
    try:
        saved = json.loads((run_dir / ROW_JSON).read_text())
        evaluation = json.loads((run_dir / EVALUATION_JSON).read_text())
        if saved.get("settings") != settings:
            return None
        return MethodResult.from_dict(saved["row"]), evaluation
    except (OSError, json.JSONDecodeError, InputError, KeyError, TypeError, AttributeError):
        return None  # missing, from another version or other settings: run it again


def run_method(config: TrainConfig, metrics: Sequence[str], protocol: str,
               runtime: Runtime | None = None, log: Log = stderr_log, fresh: bool = False,
               label: str | None = None) -> tuple[MethodResult, Any] | None:
    """Train (or resume) and evaluate one method; ``fresh`` ignores earlier results.

    Under ``torchrun`` every process trains; rank 0 alone evaluates (in float32, see
    :func:`~shiftpool.harness.evaluation.evaluate_model`) and writes. ``log`` gets one line:
    what is done for the method.

    Returns:
        ``(MethodResult, evaluation)`` on rank 0 (``None`` on other ranks): the evaluation is
        an :class:`~shiftpool.metrics.EvaluationResult`, or its dict when reused from
        ``evaluation.json``. Both are also saved in the method's folder.
    """
    runtime = runtime or Runtime(resolve_device(config.device))
    run_dir = Path(config.out_dir)
    name = label or config.downsample
    settings = _row_settings(config, metrics, protocol)
    done = None if fresh or not runtime.is_main else _finished(run_dir, settings)
    done = broadcast_object(runtime, done)
    if done is not None:
        log(f"{name}: already done ({run_dir / ROW_JSON})")
        return done if runtime.is_main else None
    log(f"{name}: training {config.model} on {config.dataset} for {config.epochs} epoch(s), "
        f"then evaluating ({protocol} protocol: {', '.join(metrics)})")
    result = train(config, resume=not fresh)
    if not runtime.is_main:
        barrier(runtime)  # wait while rank 0 evaluates
        return None
    evaluation = evaluate_model(result.model, config, metrics=list(metrics), protocol=protocol)
    evaluation.save_json(run_dir / EVALUATION_JSON)
    row = MethodResult.from_evaluation(config.downsample, evaluation, result.params,
                                       result.train_time_s)
    atomic_write_json(run_dir / ROW_JSON, {"settings": settings, "row": row.to_dict()})
    barrier(runtime)
    return row, evaluation


def compare(
    config: TrainConfig,
    methods: Sequence[str],
    out_dir: str | Path,
    *,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    metrics: Sequence[str] | str | None = None,
    protocol: str | None = None,
    figures: bool = True,
    fresh: bool = False,
    log: Log = stderr_log,
) -> Comparison:
    """Train and evaluate each of ``methods`` and write the comparison into ``out_dir``.

    Every input is checked first (:func:`plan_comparison`): a bad method, option, metric or
    protocol fails before anything is trained or written. The folder is then locked for the
    whole run (rank 0 holds the lock under ``torchrun``).

    Args:
        config: the shared settings (model, data, budget, seed); its ``downsample`` and
            ``out_dir`` are replaced per method.
        methods: operator names, e.g. ``["max", "blur", "aps", "tips"]``.
        out_dir: output folder (one sub-folder per method, results.* and figures at the top).
        method_options: per-method operator options, e.g. ``{"blur": {"filter_size": 5}}``.
        metrics / protocol: default ``config.eval_metrics`` (else accuracy, consistency,
            fidelity, MSB) and ``config.eval_protocol``; ``worst_case`` and ``sensitivity``
            add columns to the table and the summary figure.
        figures: also draw the figures (skipped with a note without matplotlib); figures of
            an earlier run into ``out_dir`` that this run does not draw are removed.
        fresh: train and evaluate every method again, ignoring earlier results and checkpoints
            (by default a method already done is reused and one cut short resumes).
        log: gets one line per method (what is being done), progress bars or not, and a note
            where figures are skipped; default: stderr.

    Returns:
        A :class:`Comparison`.

    Raises:
        InputError: a bad input (before anything runs).
        FolderLockedError: another process is writing into ``out_dir``; names its PID.

    Example:
        >>> base = TrainConfig(model="simple_cnn", dataset="mnist5k", epochs=2)
        >>> compare(base, ["max", "blur", "tips"], "runs/compare").table  # doctest: +SKIP
    """
    plan = plan_comparison(config, methods, out_dir, method_options=method_options,
                           metrics=metrics, protocol=protocol)
    out = Path(out_dir)
    runtime = setup_runtime(config.device)  # under torchrun: one process group for all runs
    try:
        with _rank0_lock(runtime, out):
            quiet = log if runtime.is_main else _silent
            count = len(plan.configs)
            done = [run_method(run, plan.metrics, plan.protocol, runtime, quiet, fresh,
                               label=f"[{i}/{count}] {run.downsample}")
                    for i, run in enumerate(plan.configs.values(), start=1)]
            if not runtime.is_main:
                return Comparison([])
            rows = [row for row, _ in done]
            evaluations = {row.method: evaluation for row, evaluation in done}
            files = _write_report(rows, evaluations, out, figures, log)
    finally:
        teardown_runtime(runtime)
    table_rows = [row.table_row() for row in rows]
    return Comparison(rows, files, markdown_table(table_rows, column_digits=TABLE_DIGITS))


@contextmanager
def _rank0_lock(runtime: Runtime, folder: Path) -> Iterator[None]:
    """Lock ``folder`` on rank 0; every rank learns whether that worked (none waits forever)."""
    lock = FolderLock(folder, LOCK_PURPOSE)
    refused = None
    if runtime.is_main:
        try:
            lock.acquire()
        except FolderLockedError as error:
            refused = str(error)
    refused = broadcast_object(runtime, refused)
    if refused is not None:
        raise FolderLockedError(refused)
    try:
        yield
    finally:
        lock.release()


def _write_report(rows: list[MethodResult], evaluations: dict[str, Any], out: Path,
                  figures: bool, log: Log) -> dict[str, Path]:
    """results.json/.csv/.md and the figures, all drawn up first, then written as one set;
    then the figures of an earlier run that this one did not draw are removed (they would
    show other results beside these)."""
    table_rows = [row.table_row() for row in rows]
    files: dict[str, ReportFile] = result_files(table_rows, out, column_digits=TABLE_DIGITS)
    if figures:
        try:
            files.update(render_figures(table_rows, out / FIGURES_DIR, evaluations))
        except InputError as error:  # no matplotlib, or nothing to draw
            log(f"figures skipped: {error}")
    atomic_write_set({f.path: f.content for f in files.values()})
    for kind, name in FIGURE_FILES.items():
        if kind not in files:
            (out / FIGURES_DIR / name).unlink(missing_ok=True)
    return {kind: f.path for kind, f in files.items()}


def _silent(text: str) -> None:
    pass
