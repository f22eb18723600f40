"""Study presets: each paper's experiment as one command, with a verdict per claim.

``run_study(name, scale)`` trains and evaluates a preset's grid of configurations (arms) at
each of its seeds, reusing finished runs, and writes report.md, report.json and figures (and
report.html where :mod:`shiftpool.report.html` exists) into ``runs/study/<name>-<scale>``.
Every claim of the paper gets "reproduced", "not reproduced" or "inconclusive" by the fixed
rule :data:`DECISION_RULE`, with the numbers and interval that decide it; the report puts the
paper's numbers beside the measured ones and says what the scale changes from the paper.

Presets: ``mouton`` (stride, pooling kernel and local homogeneity), ``s3pool`` (stochastic
spatial sampling), ``tips`` (polyphase methods, TIPS ablations, MSB correlation), ``zhang``
(anti-aliasing: filter size against consistency). Scales: ``smoke`` (minutes, a wiring check),
``cpu`` (under an hour on 2 CPU cores), ``paper`` (the papers' budgets; a GPU).

Example:
    >>> list_studies()
    ['mouton', 's3pool', 'tips', 'zhang']
    >>> result = run_study("zhang", "smoke")  # doctest: +SKIP
    >>> [(v.claim.key, v.outcome) for v in result.verdicts]  # doctest: +SKIP
"""

from shiftpool.harness.studies.framework import (
    DECISION_RULE,
    OUTCOMES,
    SCALES,
    Arm,
    Cell,
    Claim,
    Pooled,
    Scale,
    Term,
    Verdict,
    decide,
    pool_seeds,
)
from shiftpool.harness.studies.plan import Extras, Preset, StudyContext, StudyPlan
from shiftpool.harness.studies.registry import get_study, list_studies
from shiftpool.harness.studies.runner import StudyResult, plan_study, run_study

__all__ = [
    "DECISION_RULE",
    "OUTCOMES",
    "SCALES",
    "Arm",
    "Cell",
    "Claim",
    "Extras",
    "Pooled",
    "Preset",
    "Scale",
    "StudyContext",
    "StudyPlan",
    "StudyResult",
    "Term",
    "Verdict",
    "decide",
    "get_study",
    "list_studies",
    "plan_study",
    "pool_seeds",
    "run_study",
]
