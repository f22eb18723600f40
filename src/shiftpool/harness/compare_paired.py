"""The paired comparison of a comparison's methods with its baseline: every column's difference
with its interval and p-values (:mod:`shiftpool.metrics.paired`), over seeds and, where both
methods kept every test image's outcome, over the same images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from shiftpool.core.errors import InputError
from shiftpool.core.log import Log
from shiftpool.harness.compare_results import MethodResult, column_range
from shiftpool.metrics import MODE_PREFIX, PerImage
from shiftpool.metrics.adversarial import format_eps
from shiftpool.metrics.paired import BOOTSTRAP_RESAMPLES, PairedDifference, paired_difference


def paired_differences(
    rows: Sequence[MethodResult], per_image: Mapping[tuple[str, int], PerImage],
    baseline: str, *, resamples: int = BOOTSTRAP_RESAMPLES, log: Log | None = None,
) -> dict[str, dict[str, PairedDifference]]:
    """Every method's difference from ``baseline`` in every column both measured.

    Args:
        rows: the comparison's rows (single runs or rows over seeds; the same seeds in each).
        per_image: ``{(method, seed): PerImage}``: where both the method and the baseline have
            them for every seed (and :meth:`~shiftpool.metrics.PerImage.check_paired` accepts
            them: same images, same offsets), the image-level tests are added (accuracy,
            consistency, fidelity and robust accuracy columns: McNemar and the bootstrap; mean
            corruption accuracy: the bootstrap). Columns whose value is undefined (NaN, e.g.
            a relative mCE over a zero denominator) in either method get no difference.
        baseline: the method compared with.
        resamples: of the paired bootstrap over images (seeded with 0: reproducible).
        log: told why image-level tests were left out for a method (images not paired).

    Returns:
        ``{method: {column: PairedDifference}}`` for every method but the baseline (see
        :func:`shiftpool.metrics.paired.paired_difference`); the reported interval
        (``difference``) is clipped to the range of a difference (``[-1, 1]`` for fractions),
        the tests' own estimates are not.
    """
    base = next((row for row in rows if row.method == baseline), None)
    if base is None:
        raise InputError(f"shiftpool.compare: the baseline {baseline!r} has no row")
    out: dict[str, dict[str, PairedDifference]] = {}
    for row in rows:
        if row.method == baseline:
            continue
        if row.seeds != base.seeds:
            raise InputError(f"shiftpool.compare: {row.method} ran with seeds {row.seeds}, the "
                             f"baseline {baseline} with {base.seeds}: not paired")
        images = _paired_images(row.method, baseline, row.seeds, per_image, log)
        out[row.method] = {}
        for column in row.estimates:
            if column not in base.estimates or not all(
                    math.isfinite(v) for v in (*row.values(column), *base.values(column))):
                continue  # not measured by both, or undefined (e.g. a ratio over zero)
            outcomes = None if images is None else _outcomes(images, column)
            difference = paired_difference(
                row.values(column), base.values(column),
                None if outcomes is None else outcomes[0],
                None if outcomes is None else outcomes[1],
                confidence=row.estimates[column].confidence, resamples=resamples)
            low, high = column_range(column)
            shown = difference.difference  # within the differences' range, like the means
            out[row.method][column] = replace(difference, difference=replace(
                shown, low=max(shown.low, low - high), high=min(shown.high, high - low)))
    return out


# Per-image outcome behind a column: accuracy, and per shift mode consistency and fidelity.
_PREFIX_MODE = {prefix: mode for mode, prefix in MODE_PREFIX.items()}


def _paired_images(method: str, baseline: str, seeds: Sequence[int],
                   per_image: Mapping[tuple[str, int], PerImage],
                   log: Log | None) -> list[tuple[PerImage, PerImage]] | None:
    """``[(method's, baseline's) per seed]`` if every seed has both and they are paired."""
    pairs = []
    for seed in seeds:
        mine, theirs = per_image.get((method, seed)), per_image.get((baseline, seed))
        if mine is None or theirs is None:
            return None
        try:
            theirs.check_paired(mine)
        except InputError as error:
            if log is not None:
                log(f"{method}: no paired tests over images (seed {seed}): {error}")
            return None
        pairs.append((mine, theirs))
    return pairs


def _outcome(per_image: PerImage, column: str) -> np.ndarray | None:
    """Each image's outcome behind ``column``: correct, consistent or faithful (bool); robust
    at the column's ε (bool); for ``corr_acc`` the fraction of corruption × severity cells
    classified correctly, for ``fp_<perturbation>`` the fraction of frame pairs whose
    prediction flipped (means: bootstrap only)."""
    if column == "acc":
        return per_image.correct
    if column.startswith("rob_acc@") and per_image.robust is not None:
        label = column.removeprefix("rob_acc@")
        hits = [i for i, eps in enumerate(per_image.robust_eps) if format_eps(eps) == label]
        return per_image.robust[:, hits[0]] if hits else None
    if column == "corr_acc" and per_image.corrupted is not None:
        return per_image.corrupted.reshape(per_image.n, -1).mean(axis=1)
    if column.startswith("fp_") and per_image.flipped is not None:
        name = column.removeprefix("fp_")
        if name in per_image.flip_perturbations:
            return per_image.flipped[:, per_image.flip_perturbations.index(name)]
        return None
    prefix, _, key = column.rpartition("_")
    tables = {"cons": per_image.consistent, "fid": per_image.faithful}
    mode = _PREFIX_MODE.get(prefix)
    return None if mode is None or key not in tables else tables[key].get(mode)


def _outcomes(pairs: list[tuple[PerImage, PerImage]],
              column: str) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """The per-seed outcome vectors of ``column`` of both methods, if every seed has them."""
    mine = [_outcome(a, column) for a, _ in pairs]
    theirs = [_outcome(b, column) for _, b in pairs]
    if any(v is None for v in mine + theirs):
        return None
    return [v for v in mine if v is not None], [v for v in theirs if v is not None]
