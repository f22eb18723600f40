"""What a study is made of: scales, arms, claims, measured cells, and the decision rule.

A *study* trains a grid of configurations (:class:`Arm`), each with several seeds; one trained
and evaluated run is a :class:`Cell`. A paper's claim (:class:`Claim`) names a contrast between
arms — a weighted sum of one metric over them, e.g. ``c_cons(kernel 4) - c_cons(kernel 2)`` —
and the direction the paper states. :func:`decide` turns the cells into a :class:`Verdict`.

The decision rule (:data:`DECISION_RULE`), fixed before anything is measured:

- Per seed ``s``, the contrast ``d_s = sum_a w_a * m(a, s)`` (arms paired by seed: same seed,
  same training subset, same test images and offsets). Its sampling standard error ``se_s``
  comes from each arm's 95% interval over test images (``se = (high - low) / (2 * 1.96)``),
  combined as if independent (conservative for paired images).
- Across ``S`` seeds: ``D = mean(d_s)``; standard error the larger of the seed-to-seed one
  (``sd(d_s) / sqrt(S)``) and the test-sampling one (``sqrt(sum se_s^2) / S``); the 95%
  interval is ``D +- q * se`` with ``q`` Student's t quantile with ``S - 1`` degrees of freedom
  (the normal one for a single seed, whose interval then covers test sampling only, not the
  training noise — the report says so).
- **reproduced** when the interval excludes 0 on the side the paper claims; **not
  reproduced** when it excludes 0 on the other side; **inconclusive** otherwise (or when a
  contrast could not be measured).
- A claim of an exact value (e.g. "APS's circular consistency is 100%") is reproduced when
  every seed measures exactly that value, and not reproduced otherwise.

Example:
    >>> from shiftpool.metrics import Estimate
    >>> cells = [Cell("k2", s, {"c_cons": Estimate(v, v - .01, v + .01, 1000, "wilson")})
    ...          for s, v in enumerate([.73, .74, .72])]
    >>> cells += [Cell("k4", s, {"c_cons": Estimate(v, v - .01, v + .01, 1000, "wilson")})
    ...           for s, v in enumerate([.80, .79, .81])]
    >>> claim = Claim("kernel", "larger kernels are more invariant", "c_cons",
    ...               (Term("k4"), Term("k2", -1.0)), direction=1)
    >>> verdict = decide(claim, cells)
    >>> verdict.outcome, round(verdict.estimate.value, 3)
    ('reproduced', 0.07)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from shiftpool.core.checks import check_choice
from shiftpool.core.jsonable import finite_or_none
from shiftpool.metrics import Estimate
from shiftpool.metrics.stats import normal_quantile, t_quantile

Scale = Literal["smoke", "cpu", "paper"]
#: The scales of every preset: ``smoke`` (minutes, what the tests run: checks the wiring, not
#: the science), ``cpu`` (under an hour on 2 CPU cores: the papers' directions at small scale),
#: ``paper`` (the papers' own budgets: a GPU).
SCALES: tuple[str, ...] = ("smoke", "cpu", "paper")

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
OUTCOMES: tuple[str, ...] = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)

CONFIDENCE = 0.95

DECISION_RULE = (
    "Each claim is a contrast between trained configurations (arms), paired by seed. Per seed, "
    "the contrast's value and its test-sampling standard error (from each arm's 95% interval "
    "over test images); across S seeds, the mean with a 95% interval: mean +- t(S-1) x the "
    "larger of the seed-to-seed and the test-sampling standard errors (normal quantile for one "
    "seed, whose interval then covers test sampling only). Reproduced: the interval excludes 0 "
    "on the side the paper claims. Not reproduced: it excludes 0 on the other side. "
    "Inconclusive: it contains 0. A claim of an exact value (e.g. 100% circular consistency) is "
    "reproduced only when every seed measures exactly that value."
)


def check_scale(scale: str) -> str:
    """``scale`` if it is one of :data:`SCALES`, else a one-line :class:`InputError`."""
    return check_choice(scale, "shiftpool.study: scale", SCALES)


@dataclass(frozen=True)
class Arm:
    """One trained configuration of a study.

    Attributes:
        name: unique within the study; names its run folder (``runs/<name>/seed<s>``).
        changes: :class:`~shiftpool.train.TrainConfig` fields that differ from the study's base
            (``downsample``, ``model_options``, ``augment``, ``dataset``...); each replaces the
            base's value, except ``model_options``, merged into the base's.
        factors: what the arm is in the study's design (``{"kernel": 3, "stride": 2}``), for
            tables and figures.
        paper: the paper's numbers for this arm, by metric (fractions), where it gives them.
    """

    name: str
    changes: Mapping[str, Any]
    factors: Mapping[str, Any] = field(default_factory=dict)
    paper: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "changes": dict(self.changes), "factors": dict(self.factors),
                "paper": dict(self.paper)}


@dataclass(frozen=True)
class Term:
    """One arm's weight in a claim's contrast (``metric`` default: the claim's)."""

    arm: str
    weight: float = 1.0
    metric: str | None = None


@dataclass(frozen=True)
class Claim:
    """A claim of a paper, as a contrast the study measures.

    Attributes:
        key: short identifier (``kernel_invariance``).
        text: the claim in words, as the paper makes it.
        metric: the column the contrast is taken over (``acc``, ``c_cons``, ``gap``...).
        terms: the contrast ``sum(weight * metric(arm))``; one term with weight 1 tests the
            sign of one quantity (a correlation, say).
        direction: ``+1`` when the paper says the contrast is positive, ``-1`` negative.
        exact: for a claim of an exact value: the value every seed must measure (``terms``
            then name the arms that must each have it; ``direction`` is unused).
        paper: the paper's number(s) behind the claim, in words; empty where it gives none.
        note: how the claim was turned into this contrast (our reading), shown in the report.
    """

    key: str
    text: str
    metric: str
    terms: tuple[Term, ...]
    direction: int = 1
    exact: float | None = None
    paper: str = ""
    note: str = ""

    def metric_of(self, term: Term) -> str:
        return term.metric or self.metric

    def contrast_text(self) -> str:
        """The contrast in symbols, e.g. ``c_cons[k4] - c_cons[k2] > 0``."""
        if self.exact is not None:
            arms = ", ".join(f"{self.metric_of(t)}[{t.arm}]" for t in self.terms)
            return f"{arms} == {self.exact:g}"
        parts = []
        for i, t in enumerate(self.terms):
            sign = "-" if t.weight < 0 else ("+" if i else "")
            size = abs(t.weight)
            scale = "" if size == 1 else f"{size:g}*"
            parts.append(f"{sign} {scale}{self.metric_of(t)}[{t.arm}]".strip())
        return f"{' '.join(parts)} {'>' if self.direction > 0 else '<'} 0"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "text": self.text, "metric": self.metric,
                "terms": [{"arm": t.arm, "weight": t.weight, "metric": self.metric_of(t)}
                          for t in self.terms],
                "direction": self.direction, "exact": self.exact, "paper": self.paper,
                "note": self.note, "contrast": self.contrast_text()}


@dataclass(frozen=True)
class Cell:
    """One arm trained and evaluated at one seed (or a measurement that needs no training, such
    as a data set's homogeneity, with seed 0).

    Attributes:
        arm, seed: what was run.
        estimates: ``{metric: Estimate}`` (each with its interval over test images).
        params, train_time_s: the model's size and the training time (0 where not trained).
        run_dir: where the run's files are ("" for measurements without a run).
    """

    arm: str
    seed: int
    estimates: Mapping[str, Estimate]
    params: int = 0
    train_time_s: float = 0.0
    run_dir: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"arm": self.arm, "seed": self.seed,
                "estimates": {k: e.to_dict() for k, e in self.estimates.items()},
                "params": self.params, "train_time_s": self.train_time_s,
                "run_dir": self.run_dir}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cell:
        estimates = {str(k): Estimate.from_dict(dict(v)) for k, v in data["estimates"].items()}
        return cls(str(data["arm"]), int(data["seed"]), estimates, int(data["params"]),
                   float(data["train_time_s"]), str(data["run_dir"]))


@dataclass(frozen=True)
class Pooled:
    """A quantity pooled over seeds with its 95% interval (see :data:`DECISION_RULE`).

    Attributes:
        value, low, high: the mean over seeds and its interval.
        seeds: the seeds it rests on; ``per_seed`` its value at each.
        method: ``"t over seeds"``, or ``"test sampling (one seed)"`` for a single seed.
    """

    value: float
    low: float
    high: float
    seeds: tuple[int, ...]
    per_seed: tuple[float, ...]
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": finite_or_none(self.value), "low": finite_or_none(self.low),
                "high": finite_or_none(self.high), "seeds": list(self.seeds),
                "per_seed": [finite_or_none(v) for v in self.per_seed], "method": self.method}

    def text(self, digits: int = 3) -> str:
        """``0.071 [0.052, 0.090]``."""
        def number(v: float) -> str:
            return f"{v:+.{digits}f}" if math.isfinite(v) else "n/a"
        return f"{number(self.value)} [{number(self.low)}, {number(self.high)}]"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim: one of :data:`OUTCOMES`, the estimate that decided it, and
    one sentence with the numbers."""

    claim: Claim
    outcome: str
    estimate: Pooled | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim.to_dict(), "outcome": self.outcome,
                "estimate": None if self.estimate is None else self.estimate.to_dict(),
                "reason": self.reason}


def standard_error(estimate: Estimate) -> float:
    """The sampling standard error behind ``estimate``'s interval (0 where it has none)."""
    if not (math.isfinite(estimate.low) and math.isfinite(estimate.high)):
        return 0.0
    z = normal_quantile(0.5 + estimate.confidence / 2)
    return (estimate.high - estimate.low) / (2 * z)


def pool_seeds(per_seed: Mapping[int, tuple[float, float]],
               confidence: float = CONFIDENCE) -> Pooled:
    """Pool ``{seed: (value, standard error)}`` over seeds by :data:`DECISION_RULE`.

    Example:
        >>> p = pool_seeds({0: (0.10, 0.01), 1: (0.12, 0.01), 2: (0.11, 0.01)})
        >>> round(p.value, 3), round(p.low, 3), round(p.high, 3), p.method
        (0.11, 0.085, 0.135, 't over seeds')
    """
    seeds = tuple(sorted(per_seed))
    values = [per_seed[s][0] for s in seeds]
    errors = [per_seed[s][1] for s in seeds]
    count = len(seeds)
    mean = math.fsum(values) / count
    within = math.sqrt(math.fsum(e * e for e in errors)) / count
    if count >= 2:
        between = statistics.stdev(values) / math.sqrt(count)
        q = t_quantile(0.5 + confidence / 2, count - 1)
        method = "t over seeds"
    else:
        between, q = 0.0, normal_quantile(0.5 + confidence / 2)
        method = "test sampling (one seed)"
    half = q * max(between, within)
    return Pooled(mean, mean - half, mean + half, seeds, tuple(values), method)


def index_cells(cells: Sequence[Cell]) -> dict[tuple[str, int], Cell]:
    """``{(arm, seed): cell}``."""
    return {(c.arm, c.seed): c for c in cells}


def contrast(claim: Claim, cells: Sequence[Cell]) -> Pooled | None:
    """The claim's contrast pooled over the seeds every term's arm was measured at (None when
    no seed has them all)."""
    table = index_cells(cells)
    seeds = sorted({s for (_, s) in table})
    per_seed: dict[int, tuple[float, float]] = {}
    single: tuple[int, float, Estimate] | None = None
    for seed in seeds:
        found = [table.get((t.arm, seed)) for t in claim.terms]
        estimates = [None if c is None else c.estimates.get(claim.metric_of(t))
                     for c, t in zip(found, claim.terms, strict=True)]
        if any(e is None or not math.isfinite(e.value) for e in estimates):
            continue
        chosen = [e for e in estimates if e is not None]
        value = math.fsum(t.weight * e.value for t, e in zip(claim.terms, chosen, strict=True))
        error = math.sqrt(math.fsum((t.weight * standard_error(e)) ** 2
                                    for t, e in zip(claim.terms, chosen, strict=True)))
        per_seed[seed] = (value, error)
        if len(chosen) == 1:
            single = (seed, claim.terms[0].weight, chosen[0])
    if not per_seed:
        return None
    if len(claim.terms) == 1 and len(per_seed) == 1:
        # one measured quantity (a correlation, say): keep its own, possibly asymmetric,
        # interval instead of a normal one built from its width
        assert single is not None
        seed, weight, estimate = single
        bounds = sorted((weight * estimate.low, weight * estimate.high))
        if all(math.isfinite(b) for b in bounds):
            return Pooled(weight * estimate.value, bounds[0], bounds[1], (seed,),
                          (weight * estimate.value,), estimate.method)
    return pool_seeds(per_seed)


def decide(claim: Claim, cells: Sequence[Cell]) -> Verdict:
    """The verdict on ``claim`` from the measured ``cells`` (see :data:`DECISION_RULE`).

    Example:
        >>> from shiftpool.metrics import Estimate
        >>> exact = Claim("aps_c", "APS: C-Cons 100%", "c_cons", (Term("aps"),), exact=1.0)
        >>> cells = [Cell("aps", 0, {"c_cons": Estimate(1.0, .99, 1.0, 500, "wilson")})]
        >>> decide(exact, cells).outcome
        'reproduced'
    """
    if claim.exact is not None:
        return _decide_exact(claim, cells)
    pooled = contrast(claim, cells)
    if pooled is None:
        return Verdict(claim, INCONCLUSIVE, None, "not measured: a term's arm has no result")
    sign = claim.direction
    if sign * pooled.low > 0 and sign * pooled.high > 0:
        outcome = REPRODUCED
    elif sign * pooled.low < 0 and sign * pooled.high < 0:
        outcome = NOT_REPRODUCED
    else:
        outcome = INCONCLUSIVE
    side = "above" if sign > 0 else "below"
    where = {REPRODUCED: f"the interval lies {side} 0, as claimed",
             NOT_REPRODUCED: "the interval lies on the other side of 0",
             INCONCLUSIVE: "the interval contains 0"}[outcome]
    seeds = len(pooled.seeds)
    reason = (f"{claim.contrast_text()}: {pooled.text()} over {seeds} seed(s) "
              f"({pooled.method}); {where}")
    return Verdict(claim, outcome, pooled, reason)


def _decide_exact(claim: Claim, cells: Sequence[Cell]) -> Verdict:
    table = index_cells(cells)
    measured: list[tuple[str, int, float]] = []
    for term in claim.terms:
        for (arm, seed), cell in sorted(table.items()):
            estimate = cell.estimates.get(claim.metric_of(term))
            if arm == term.arm and estimate is not None:
                measured.append((arm, seed, estimate.value))
    if not measured or {a for a, _, _ in measured} != {t.arm for t in claim.terms}:
        return Verdict(claim, INCONCLUSIVE, None, "not measured: an arm has no result")
    misses = [(a, s, v) for a, s, v in measured if v != claim.exact]
    values = tuple(v for _, _, v in measured)
    pooled = Pooled(math.fsum(values) / len(values), min(values), max(values),
                    tuple(sorted({s for _, s, _ in measured})), values, "min-max over runs")
    if misses:
        listed = ", ".join(f"{a} seed {s}: {v:.4f}" for a, s, v in misses[:4])
        return Verdict(claim, NOT_REPRODUCED, pooled,
                       f"{len(misses)} of {len(measured)} runs differ from {claim.exact:g} "
                       f"({listed})")
    return Verdict(claim, REPRODUCED, pooled,
                   f"all {len(measured)} runs measure exactly {claim.exact:g}")


#: Metrics that are not fractions in [0, 1] (their pooled intervals are not clipped).
UNBOUNDED_METRICS = ("gap", "pearson_")


def pooled_metric(arm: str, metric: str, cells: Sequence[Cell]) -> Pooled | None:
    """One arm's metric pooled over its seeds (the tables' mean and interval); the interval
    of a fraction is clipped to [0, 1] (a t interval over few seeds can reach past it)."""
    pooled = contrast(Claim("", "", metric, (Term(arm),)), cells)
    if pooled is None or metric.startswith(UNBOUNDED_METRICS):
        return pooled
    return replace(pooled, low=max(0.0, pooled.low), high=min(1.0, pooled.high))
