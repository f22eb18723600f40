"""Result tables: one row per run, written as JSON, CSV and Markdown.

A row is a flat dict (``{"method": "aps", "acc": 0.91, "c_cons": 1.0, ...}``, e.g. a
:meth:`~shiftpool.metrics.EvaluationResult.summary` plus run details). A value may also be an
estimate dict (``{"value", "low", "high", ...}``, as :meth:`~shiftpool.metrics.Estimate.to_dict`
gives): Markdown shows it as ``value [low, high]``, CSV spreads it over ``key``, ``key_low``,
``key_high`` columns. Markdown rounds numbers to 4 decimals unless ``column_digits`` says
otherwise for a column (e.g. ``{"train_time_s": 1}``); JSON and CSV keep every digit.

:class:`ReportInfo` says what a table or figure rests on (data set, model, epochs, seeds, test
images, protocol); its :meth:`~ReportInfo.caption` is printed under tables and on every figure.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.core.io import atomic_write_set, json_text

_INTERVAL_KEYS = ("value", "low", "high")


class ReportFile(NamedTuple):
    """A file of a report, not yet written: where it goes and what it holds."""

    path: Path
    content: str | bytes


@dataclass(frozen=True)
class ReportInfo:
    """What a table or figure rests on, stated in its caption.

    Attributes:
        dataset, model: the data set and model names.
        epochs: training epochs of every run.
        seeds: the training seeds (each run once per seed).
        n: test images per seed (``None`` when not known).
        protocol: the evaluation protocol's name.

    Example:
        >>> ReportInfo("mnist5k", "simple_cnn", 3, (0, 1), n=500, protocol="aps").caption()
        'mnist5k · simple_cnn · 3 epochs · seeds 0, 1 · n = 500 test images per seed · aps protocol'
    """

    dataset: str
    model: str
    epochs: int
    seeds: tuple[int, ...] = ()
    n: int | None = None
    protocol: str | None = None

    def caption(self) -> str:
        """One line: data set · model · epochs · seeds · n · protocol."""
        parts = [self.dataset, self.model, f"{self.epochs} epoch{'s' * (self.epochs != 1)}"]
        if self.seeds:
            word = "seed" if len(self.seeds) == 1 else "seeds"
            parts.append(f"{word} {', '.join(map(str, self.seeds))}")
        if self.n is not None:
            parts.append(f"n = {self.n} test images" + (" per seed" if len(self.seeds) > 1
                                                          else ""))
        if self.protocol:
            parts.append(f"{self.protocol} protocol")
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "model": self.model, "epochs": self.epochs,
                "seeds": list(self.seeds), "n": self.n, "protocol": self.protocol}


def columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The union of the rows' keys, in first-seen order.

    Example:
        >>> columns([{"a": 1}, {"b": 2, "a": 3}])
        ['a', 'b']
    """
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def format_value(value: Any, digits: int = 4, *, signed: bool = False) -> str:
    """A table cell: floats to ``digits`` decimals, estimates as ``value [low, high]``;
    ``signed`` writes the sign of every number (differences).

    Example:
        >>> format_value({"value": 0.5, "low": 0.4, "high": 0.6, "n": 100})
        '0.5000 [0.4000, 0.6000]'
        >>> format_value({"value": 0.01, "low": -0.004, "high": 0.024}, signed=True)
        '+0.0100 [-0.0040, +0.0240]'
    """
    if value is None:
        return ""
    if _is_estimate(value):
        low, high = (format_value(value.get(k), digits, signed=signed) for k in ("low", "high"))
        interval = f" [{low}, {high}]" if low and high else ""
        return f"{format_value(value['value'], digits, signed=signed)}{interval}"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        sign = "+" if signed else ""
        return "nan" if math.isnan(value) else f"{value:{sign}.{digits}f}"
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, Any]], digits: int = 4,
    column_digits: Mapping[str, int] | None = None,
) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (one column per key).

    Numbers get ``digits`` decimals, or ``column_digits[key]`` in the columns it names.

    Example:
        >>> print(markdown_table([{"method": "max", "acc": 0.9, "train_time_s": 234.62}],
        ...                      column_digits={"train_time_s": 1}))
        | method | acc | train_time_s |
        |---|---|---|
        | max | 0.9000 | 234.6 |
    """
    if not rows:
        raise InputError("shiftpool.report: no rows to tabulate")
    keys = columns(rows)
    places = {k: (column_digits or {}).get(k, digits) for k in keys}

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    body = [line([format_value(row.get(k), places[k]) for k in keys]) for row in rows]
    return "\n".join([line(keys), "|" + "---|" * len(keys), *body])


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as CSV text, estimate dicts spread over ``key``, ``key_low``, ``key_high``.

    Example:
        >>> csv_text([{"a": 1, "b": {"value": 0.5, "low": 0.4, "high": 0.6}}]).splitlines()
        ['a,b,b_low,b_high', '1,0.5,0.4,0.6']
    """
    flat = [_flatten_estimates(row) for row in rows]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns(flat), lineterminator="\n")
    writer.writeheader()
    for row in flat:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return buffer.getvalue()


def write_results(
    rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str], stem: str = "results",
    *, column_digits: Mapping[str, int] | None = None,
) -> dict[str, Path]:
    """Write ``rows`` as ``{stem}.json``, ``{stem}.csv`` and ``{stem}.md`` in ``out_dir``.

    The three are written as one set (all written, then all renamed; see
    :func:`shiftpool.core.io.atomic_write_set`); the folder is created. ``column_digits``
    rounds columns of the Markdown table (see :func:`markdown_table`).

    Returns:
        ``{"json": path, "csv": path, "md": path}``.

    Example:
        >>> write_results([{"method": "max", "acc": 0.9}], "runs/demo")  # doctest: +SKIP
        {'json': PosixPath('runs/demo/results.json'), ...}
    """
    files = result_files(rows, out_dir, stem, column_digits=column_digits)
    atomic_write_set({f.path: f.content for f in files.values()})
    return {kind: f.path for kind, f in files.items()}


def result_files(
    rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str], stem: str = "results",
    *, column_digits: Mapping[str, int] | None = None,
    csv_rows: Sequence[Mapping[str, Any]] | None = None, markdown: str | None = None,
) -> dict[str, ReportFile]:
    """The files :func:`write_results` writes, as ``{"json" | "csv" | "md": ReportFile}``,
    without writing anything (to write them in one set with other files).

    ``csv_rows`` (default ``rows``) and ``markdown`` (default :func:`markdown_table` of
    ``rows``) replace what the CSV and the Markdown file hold, e.g. flatter rows for the CSV and
    a table with notes for the Markdown.

    Example:
        >>> files = result_files([{"method": "max", "acc": 0.9}], "runs/demo")
        >>> files["md"].path.name, files["md"].content.splitlines()[2]
        ('results.md', '| max | 0.9000 |')
    """
    rows = [dict(row) for row in rows]
    if not rows:
        raise InputError("shiftpool.report: no rows to write")
    out = Path(out_dir)
    texts = {
        "json": json_text(json.loads(json.dumps(rows, default=_json_default))),
        "csv": csv_text(rows if csv_rows is None else csv_rows),
        "md": (markdown_table(rows, column_digits=column_digits) if markdown is None
               else markdown.rstrip("\n")) + "\n",
    }
    return {kind: ReportFile(out / f"{stem}.{kind}", text) for kind, text in texts.items()}


def _is_estimate(value: Any) -> bool:
    return isinstance(value, Mapping) and "value" in value and "low" in value and "high" in value


def _flatten_estimates(row: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if _is_estimate(value):
            flat[key] = value["value"]
            flat[f"{key}_low"] = value["low"]
            flat[f"{key}_high"] = value["high"]
        else:
            flat[key] = value
    return flat


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, default=str)
    if isinstance(value, float) and math.isnan(value):
        return ""
    return "" if value is None else value


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise InputTypeError(f"shiftpool.report: cannot write {type(value).__name__} to JSON")
