"""The results of a comparison (:func:`shiftpool.harness.comparison.compare`): one
:class:`MethodResult` per method (a training run, or the runs of several seeds pooled) and the
:class:`Comparison` that holds them, with the columns they show and the rows of results.json.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from shiftpool.core.errors import InputError
from shiftpool.core.jsonable import without_nan
from shiftpool.harness.launch import SweepResult
from shiftpool.metrics import MODE_PREFIX, Estimate, EvaluationResult
from shiftpool.metrics.adversarial import format_eps
from shiftpool.metrics.paired import PairedDifference
from shiftpool.metrics.stats import mean_interval
from shiftpool.report import ReportInfo

#: ``Estimate.method`` of a column pooled over seeds: mean and Student t interval over seeds.
ACROSS_SEEDS = "t over seeds"

#: How the sensitivity columns are marked: a mean over the offset grid, with no interval (the
#: grid's cells are measured on the same images, so they are not independent samples).
GRID_MEAN = "grid mean"
#: How the mCE, relative mCE and mFR columns of one seed are marked: a ratio to the robustness
#: baseline's errors on the same images, with no interval (over seeds: the t interval).
BASELINE_RATIO = "ratio to baseline"


@dataclass(frozen=True)
class MethodResult:
    """One method's row of a comparison: one training run, or the runs of several seeds.

    Attributes:
        method: the operator's name.
        estimates: ``{column: Estimate}`` in table order: ``acc``; per shift mode of the
            protocol (prefix ``s`` zero, ``c`` circular, ``r`` reflect, ``crop``) ``{p}_cons``,
            ``{p}_fid``, ``{p}_worst`` (worst-case accuracy over the offset grid), ``{p}_sens``
            (mean feature cosine similarity over the grid; its ``method`` is ``"grid mean"``
            and it has no interval); ``msb``. Only what was measured. Over several seeds: the
            mean over seeds with its Student t interval (``method`` ``"t over seeds"``, ``n`` the
            number of seeds).
        params: trainable parameters of the model.
        train_time_s: seconds spent training (summed over resumed sessions); over several
            seeds, the mean per seed.
        seed: the training seed of a single run (``None`` for a row over seeds, and in rows
            saved by earlier versions).
        per_seed: the single-seed rows a row over seeds rests on, in the order of the seeds
            asked (empty for a single run).

    Example:
        >>> acc = Estimate(0.9, 0.88, 0.92, 1000, "wilson")
        >>> result = MethodResult("max", {"acc": acc}, params=1200, train_time_s=234.62)
        >>> MethodResult.from_dict(result.to_dict()) == result
        True
        >>> result.table_row()["acc"]["value"], result.table_row()["train_time_s"]
        (0.9, 234.62)
        >>> runs = [MethodResult("max", {"acc": Estimate(v, v - .02, v + .02, 1000, "wilson")},
        ...                      1200, 230.0, seed=k) for k, v in enumerate([0.90, 0.92, 0.91])]
        >>> pooled = MethodResult.over_seeds(runs)
        >>> pooled.seeds, round(pooled.estimates["acc"].value, 4), pooled.estimates["acc"].n
        ((0, 1, 2), 0.91, 3)
    """

    method: str
    estimates: dict[str, Estimate]
    params: int
    train_time_s: float
    seed: int | None = None
    per_seed: tuple[MethodResult, ...] = ()

    @classmethod
    def from_evaluation(cls, method: str, evaluation: EvaluationResult, params: int,
                        train_time_s: float) -> MethodResult:
        """The row of ``method`` from its evaluation and its training run (its seed is the
        evaluation's, which the harness takes from the training config)."""
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
        estimates.update(_robustness_columns(evaluation, "acc" in estimates))
        return cls(method, _translate_beside_consistency(estimates), params,
                   round(train_time_s, 2), seed=evaluation.seed)

    @classmethod
    def over_seeds(cls, runs: Sequence[MethodResult],
                   confidence: float | None = None) -> MethodResult:
        """The row over the single-seed ``runs`` of one method: each column's mean over seeds
        with its Student t interval (``k - 1`` degrees of freedom), clipped to the column's
        range ([0, 1] for fractions, [-1, 1] for cosine similarities); with one run, that run's
        own estimates (per-image intervals). Columns measured in every run only.

        Raises:
            InputError: no runs, runs of several methods, or seeds missing or repeated.
        """
        if not runs:
            raise InputError("shiftpool.compare: no runs to pool over seeds")
        method = runs[0].method
        seeds = [run.seed for run in runs]
        if any(run.method != method for run in runs):
            raise InputError(f"shiftpool.compare: runs of several methods pooled: "
                             f"{', '.join(sorted({r.method for r in runs}))}")
        if None in seeds or len(set(seeds)) != len(seeds):
            raise InputError(f"shiftpool.compare: runs pooled over seeds need distinct seeds, "
                             f"got {seeds}")
        runs = tuple(runs)
        time_s = round(sum(run.train_time_s for run in runs) / len(runs), 2)
        if len(runs) == 1:
            return cls(method, dict(runs[0].estimates), runs[0].params, time_s, per_seed=runs)
        estimates = {}
        for column, first in runs[0].estimates.items():
            if not all(column in run.estimates for run in runs):
                continue
            values = np.array([run.estimates[column].value for run in runs], dtype=np.float64)
            level = first.confidence if confidence is None else confidence
            if not np.all(np.isfinite(values)):
                estimates[column] = Estimate(math.nan, math.nan, math.nan, len(runs),
                                             ACROSS_SEEDS, level)
                continue
            pooled = mean_interval(len(runs), float(values.mean()), float(values.var(ddof=1)),
                                   level)
            low, high = column_range(column)
            estimates[column] = replace(pooled, low=max(pooled.low, low),
                                        high=min(pooled.high, high), method=ACROSS_SEEDS)
        return cls(method, estimates, runs[0].params, time_s, per_seed=runs)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds this row rests on (empty for a single run of unknown seed)."""
        if self.per_seed:
            return tuple(run.seed for run in self.per_seed if run.seed is not None)
        return () if self.seed is None else (self.seed,)

    def values(self, column: str) -> list[float]:
        """The value of ``column`` in each seed (``[value]`` for a single run).

        Example:
            >>> MethodResult("max", {"acc": Estimate(0.9, 0.8, 1.0, 10, "wilson")}, 1,
            ...              1.0).values("acc")
            [0.9]
        """
        runs = self.per_seed or (self,)
        return [run.estimates[column].value for run in runs]

    def table_row(self) -> dict[str, Any]:
        """The row of the results table: ``method``, each estimate as a dict (value and
        interval; over seeds also ``per_seed``, the value in each seed), ``params``,
        ``train_time_s``; over seeds also ``seeds``."""
        row: dict[str, Any] = {"method": self.method}
        for column, estimate in self.estimates.items():
            row[column] = estimate.to_dict()
            if self.per_seed:
                row[column]["per_seed"] = [_json_number(v) for v in self.values(column)]
        row.update(params=self.params, train_time_s=self.train_time_s)
        if self.per_seed:
            row["seeds"] = list(self.seeds)
        return row

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (as saved in the run's ``row.json``)."""
        data: dict[str, Any] = {
            "method": self.method,
            "estimates": {column: e.to_dict() for column, e in self.estimates.items()},
            "params": self.params, "train_time_s": self.train_time_s,
        }
        if self.seed is not None:
            data["seed"] = self.seed
        if self.per_seed:
            data["per_seed"] = [run.to_dict() for run in self.per_seed]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MethodResult:
        """Inverse of :meth:`to_dict`; a malformed dict is an :class:`InputError`."""
        try:
            estimates = {str(k): Estimate.from_dict(dict(v))
                         for k, v in data["estimates"].items()}
            seed = data.get("seed")
            per_seed = tuple(cls.from_dict(run) for run in data.get("per_seed", ()))
            return cls(str(data["method"]), estimates, int(data["params"]),
                       float(data["train_time_s"]), None if seed is None else int(seed),
                       per_seed)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InputError(f"shiftpool.compare: not a saved method row ({error!r})") from None


def _robustness_columns(evaluation: EvaluationResult, has_accuracy: bool) -> dict[str, Estimate]:
    """The robustness columns of one evaluation: ``rob_acc@<ε>`` per ε of the grid (Wilson;
    ``rob_acc@0``, the clean accuracy of the attacked images, only without ``acc``),
    ``corr_acc`` (mean corruption accuracy, t over images) and ``fp_translate`` (flip
    probability of the 1-pixel translation sequence, Wilson over frame pairs). mCE, relative
    mCE and mFR depend on the baseline's run and are added by
    :func:`~shiftpool.harness.comparison.compare`."""
    robustness = evaluation.robustness
    out: dict[str, Estimate] = {}
    if robustness is None:
        return out
    if robustness.adversarial is not None:
        curve = robustness.adversarial
        for eps, estimate in zip(curve.eps, curve.accuracy, strict=True):
            if eps > 0 or not has_accuracy:
                out[f"rob_acc@{format_eps(eps)}"] = estimate
    if robustness.corruption is not None:
        out["corr_acc"] = robustness.corruption.mean_estimate()
    if robustness.flip_rate is not None and "translate" in robustness.flip_rate.flip_probability:
        out["fp_translate"] = robustness.flip_rate.flip_probability["translate"]
    return out


def _translate_beside_consistency(estimates: dict[str, Estimate]) -> dict[str, Estimate]:
    """``estimates`` with ``fp_translate`` moved right after the consistency columns (it is a
    shift-invariance measure of its own)."""
    if "fp_translate" not in estimates:
        return estimates
    keys = [k for k in estimates if k != "fp_translate"]
    after = max((i for i, k in enumerate(keys) if k.endswith("_cons")), default=len(keys) - 1)
    keys.insert(after + 1, "fp_translate")
    return {k: estimates[k] for k in keys}


# The range of each column's values (every column is a fraction in [0, 1] but these, by full
# name, then by the part after the last "_"): intervals over seeds are clipped to it (the true
# mean lies inside), and differences to the range of a difference.
_RANGE: dict[str, tuple[float, float]] = {
    "sens": (-1.0, 1.0), "mce": (0.0, math.inf), "rel_mce": (-math.inf, math.inf),
    "mfr": (0.0, math.inf),
}


def column_range(column: str) -> tuple[float, float]:
    """``(low, high)`` of a column's values.

    Example:
        >>> column_range("c_sens"), column_range("rel_mce"), column_range("rob_acc@8/255")
        ((-1.0, 1.0), (-inf, inf), (0.0, 1.0))
    """
    return _RANGE.get(column, _RANGE.get(column.rpartition("_")[2], (0.0, 1.0)))


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None



@dataclass
class Comparison:
    """What :func:`~shiftpool.harness.comparison.compare` returns.

    Attributes:
        rows: one :class:`MethodResult` per method, in the order asked (empty on the processes
            of a ``torchrun`` other than rank 0); over seeds when ``seeds`` were given.
        files: the files written (results.json/.csv/.md and figures), by kind.
        table: the Markdown of results.md: the table, its notes and the differences from the
            baseline.
        baseline: the method the others are compared with.
        seeds: the training seeds.
        paired: ``{method: {column: PairedDifference}}`` for every method but the baseline.
        info: what the results rest on (data set, model, epochs, seeds, n, protocol).
        sweep: how the units that ran now went (launcher, attempts, times); runs already done
            are counted in ``sweep.reused``.
    """

    rows: list[MethodResult]
    files: dict[str, Path] = field(default_factory=dict)
    table: str = ""
    baseline: str = ""
    seeds: tuple[int, ...] = ()
    paired: dict[str, dict[str, PairedDifference]] = field(default_factory=dict)
    info: ReportInfo | None = None
    sweep: SweepResult | None = None
    robustness: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    robustness_baseline: str = ""

    def result_rows(self) -> list[dict[str, Any]]:
        """The rows of results.json: :meth:`MethodResult.table_row` plus, for every method but
        the baseline, ``paired``: ``{column: PairedDifference.to_dict() + {"baseline"}}``; and
        with robustness metrics ``robustness``: per seed every cell of the evaluation's
        robustness results (robust accuracy per ε, accuracy per corruption and severity, flip
        probabilities) and ``relative`` (CE per corruption, mCE, relative mCE, FR, mFR against
        ``robustness_baseline``)."""
        rows = _result_rows(self.rows, self.paired, self.baseline)
        for row in rows:
            if row["method"] in self.robustness:
                row["robustness"] = without_nan(self.robustness[row["method"]])
        return rows


def _result_rows(rows: Sequence[MethodResult],
                 paired: Mapping[str, Mapping[str, PairedDifference]],
                 baseline: str) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        data = row.table_row()
        if row.method in paired:
            data["paired"] = {column: {"baseline": baseline, **difference.to_dict()}
                              for column, difference in paired[row.method].items()}
        out.append(data)
    return out
