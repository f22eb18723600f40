"""Compare downsampling methods: train each with the same seed and budget, evaluate each under
the same protocol, and write one table (JSON, CSV, Markdown) plus figures. Under ``torchrun``
every process trains each method (DDP) and rank 0 evaluates and writes.

Each method runs in ``out_dir/<method>/`` (its checkpoint, logs, ``evaluation.json`` and
``row.json``). A comparison that was interrupted resumes: a method whose ``row.json`` matches
the settings is not run again; a method cut short continues from its checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shiftpool.core.errors import InputError
from shiftpool.core.io import atomic_write_json
from shiftpool.harness.evaluation import COMPARE_METRICS, evaluate_model
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


@dataclass
class Comparison:
    """What :func:`compare` returns.

    Attributes:
        rows: one dict per method (``method``, ``acc``, ``s_cons``, ``s_fid``, ``c_cons``,
            ``c_fid``, ``msb`` as estimates with 95% intervals, ``params``, ``train_time_s``),
            in the order asked.
        files: the files written (results.json/.csv/.md and figures), by kind.
        table: the Markdown table.
    """

    rows: list[dict[str, Any]]
    files: dict[str, Path] = field(default_factory=dict)
    table: str = ""


def method_config(config: TrainConfig, method: str, out_dir: Path,
                  options: dict[str, dict[str, Any]] | None = None) -> TrainConfig:
    """The run of ``method`` in a comparison: ``config`` with that operator and its folder."""
    return config.replace(
        downsample=method,
        downsample_options=dict((options or {}).get(method, {})),
        out_dir=str(out_dir / method),
    )


def _row_settings(config: TrainConfig, metrics: Sequence[str], protocol: str) -> dict[str, Any]:
    """What a saved row depends on: the trained weights' settings and the evaluation's."""
    return {"config": config.result_fields(), "metrics": list(metrics), "protocol": protocol,
            "max_images": config.eval_max_images}


def _finished(run_dir: Path, settings: dict[str, Any]) -> tuple[dict, dict] | None:
    """``(row, evaluation)`` of a method already done with the same settings, else None."""
    try:
        saved = json.loads((run_dir / ROW_JSON).read_text())
        evaluation = json.loads((run_dir / EVALUATION_JSON).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if saved.get("settings") != settings or "row" not in saved:
        return None
    return saved["row"], evaluation


def summary_row(method: str, evaluation: dict[str, Any], params: int,
                train_time_s: float) -> dict[str, Any]:
    """The table row of one method: accuracy, consistency and fidelity per shift mode (``s_``
    zero-fill, ``c_`` circular...) and MSB as estimates with 95% intervals, then the size and
    the training time.

    ``evaluation`` is an :meth:`EvaluationResult.to_dict` (as saved in ``evaluation.json``).
    """
    from shiftpool.metrics import MODE_PREFIX

    row: dict[str, Any] = {"method": method}
    if evaluation.get("accuracy"):
        row["acc"] = evaluation["accuracy"]
    for mode in evaluation["protocol"]["shifts"]:
        for key, table in (("cons", "consistency"), ("fid", "fidelity")):
            if mode in evaluation.get(table, {}):
                row[f"{MODE_PREFIX[mode]}_{key}"] = evaluation[table][mode]
    if "mean" in evaluation.get("msb", {}):
        row["msb"] = evaluation["msb"]["mean"]
    row["params"] = params
    row["train_time_s"] = round(train_time_s, 2)
    return row


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with every estimate replaced by its value (what the figures plot)."""
    return {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in row.items()}


def run_method(config: TrainConfig, metrics: Sequence[str], protocol: str,
               runtime: Runtime | None = None, log: Any = print,
               fresh: bool = False) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Train (or resume) and evaluate one method; ``fresh`` ignores earlier results.

    Under ``torchrun`` every process trains; rank 0 alone evaluates and writes.

    Returns:
        ``(table row, evaluation dict)`` (``None`` on other ranks); both are also saved in the
        method's folder.
    """
    runtime = runtime or Runtime(resolve_device(config.device))
    run_dir = Path(config.out_dir)
    settings = _row_settings(config, metrics, protocol)
    done = None if fresh or not runtime.is_main else _finished(run_dir, settings)
    done = broadcast_object(runtime, done)
    if done is not None:
        log(f"[{config.downsample}] already done: {run_dir / ROW_JSON}")
        return done if runtime.is_main else None
    log(f"[{config.downsample}] training {config.model} on {config.dataset} "
        f"for {config.epochs} epoch(s)")
    result = train(config, resume=not fresh)
    if not runtime.is_main:
        barrier(runtime)  # wait while rank 0 evaluates
        return None
    log(f"[{config.downsample}] evaluating ({protocol} protocol: {', '.join(metrics)})")
    evaluation = evaluate_model(result.model, config, metrics=list(metrics), protocol=protocol)
    evaluation.save_json(run_dir / EVALUATION_JSON)
    evaluation_dict = evaluation.to_dict()
    row = summary_row(config.downsample, evaluation_dict, result.params, result.train_time_s)
    atomic_write_json(run_dir / ROW_JSON, {"settings": settings, "row": row})
    barrier(runtime)
    return row, evaluation_dict


def compare(
    config: TrainConfig,
    methods: Sequence[str],
    out_dir: str | Path,
    *,
    method_options: dict[str, dict[str, Any]] | None = None,
    metrics: Sequence[str] | None = None,
    protocol: str | None = None,
    figures: bool = True,
    fresh: bool = False,
    log: Any = print,
) -> Comparison:
    """Train and evaluate each of ``methods`` and write the comparison into ``out_dir``.

    Args:
        config: the shared settings (model, data, budget, seed); its ``downsample`` and
            ``out_dir`` are replaced per method.
        methods: operator names, e.g. ``["max", "blur", "aps", "tips"]``.
        out_dir: output folder (one sub-folder per method, results.* and figures at the top).
        method_options: per-method operator options, e.g. ``{"blur": {"filter_size": 5}}``.
        metrics / protocol: default ``config.eval_metrics`` (else accuracy, consistency,
            fidelity, MSB) and ``config.eval_protocol``.
        figures: also draw the figures (needs matplotlib).
        fresh: train and evaluate every method again, ignoring earlier results and checkpoints
            (by default a method already done is reused and one cut short resumes).
        log: where progress lines go.

    Example:
        >>> base = TrainConfig(model="simple_cnn", dataset="mnist_embedded", epochs=2)
        >>> compare(base, ["max", "blur", "tips"], "runs/compare").table  # doctest: +SKIP
    """
    from shiftpool import report

    if not methods:
        raise InputError("shiftpool.compare: give at least one downsampling method")
    if len(set(methods)) != len(methods):
        raise InputError(f"shiftpool.compare: methods repeat: {', '.join(methods)}")
    out = Path(out_dir)
    chosen_metrics = list(metrics or config.eval_metrics or COMPARE_METRICS)
    chosen_protocol = protocol or config.eval_protocol
    runtime = setup_runtime(config.device)  # under torchrun: one process group for all runs
    try:
        done = [run_method(method_config(config, m, out, method_options), chosen_metrics,
                           chosen_protocol, runtime, log if runtime.is_main else _silent, fresh)
                for m in methods]
    finally:
        teardown_runtime(runtime)
    if not runtime.is_main:
        return Comparison([])
    rows = [row for row, _ in done]
    evaluations = {m: evaluation for m, (_, evaluation) in zip(methods, done, strict=True)}
    files = dict(report.write_results(rows, out))
    if figures:
        files.update(_draw_figures(report, rows, evaluations, out, log))
    return Comparison(rows, files, report.markdown_table(rows))


def _silent(text: str) -> None:
    pass


def _draw_figures(report: Any, rows: list[dict[str, Any]], evaluations: dict[str, Any],
                  out: Path, log: Any) -> dict[str, Path]:
    """The report's figures under ``out/figures``; skipped with a note without matplotlib."""
    try:
        return dict(report.write_figures([flat_row(r) for r in rows], out / "figures",
                                         evaluations))
    except ImportError as error:
        log(f"figures skipped: {error}")
        return {}
