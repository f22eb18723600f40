"""``mouton``: stride, pooling kernel and local homogeneity (Mouton, Myburgh & Davel, 2020).

``simple_cnn`` (3 stages of conv → BN → ReLU → max pool of kernel ``k`` and stride ``s``) on
MNIST, Fashion-MNIST and CIFAR-10, over a grid of ``k x s``, with a global-average-pooling head
and no augmentation; at ``k = s = 2`` also a fully connected head, random-translation
augmentation (4-pixel random crops of the zero-padded image) and anti-aliasing (MaxBlurPool,
filter 3). Invariance is the consistency of predictions under circular shifts (``c_cons``,
TIPS protocol, shifts up to a quarter of the image): a circular shift moves the content without
bringing anything in at the border, so it isolates what the paper studies — the phase of
subsampling. The zero-fill column (``s_cons``) is in the table too.

Homogeneity (our reading of the paper, SPEC §4): the *fraction* measure counts the windows
(k = 2, the stride) whose range is at most 5% of the image's range — windows on which
subsampling at any phase gives the same value, the mechanism the paper names; the *score*
measure is ``1 - mean(range / image range)``, which also rewards windows that are merely
similar. The paper's claim (MNIST > Fashion-MNIST > CIFAR-10) rests on the mechanism, so its
verdict uses the fraction measure; the score measure is reported beside it as a secondary
check, with its own verdicts.

Grids (every data set; arms ``<data>:k<k>s<s>``, plus ``<data>:k2s2-fc``, ``+aug``, ``-blur``):

====== ======================= ===================== ======== ====== ========= ===========
scale  model                   kernel x stride       train    epochs seeds     test images
====== ======================= ===================== ======== ====== ========= ===========
smoke  simple_cnn [8, 16, 32]  {2, 3} x {2}          256      1      0         200
cpu    simple_cnn [16, 32, 64] {2, 3, 4} x {2, 3}    5,000    8      0, 1, 2   1,000
paper  simple_cnn [32, 64, 128] {1, ..., 5} x {2, 3, 4} all   30     0, 1, 2   10,000
====== ======================= ===================== ======== ====== ========= ===========

Example:
    >>> len(PRESET.plan("cpu").arms)
    27
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import shiftpool.harness.evaluation as hevaluation
import shiftpool.harness.homogeneity as hhomogeneity
from shiftpool.core.io import atomic_write_json
from shiftpool.data import dataset_info
from shiftpool.harness.homogeneity import HomogeneityRow
from shiftpool.harness.studies.common import by_scale, study_config
from shiftpool.harness.studies.figures import (
    bars_figure,
    caption,
    grid_values,
    heatmap_figure,
    tradeoff_figure,
)
from shiftpool.harness.studies.framework import (
    Arm,
    Cell,
    Claim,
    Pooled,
    Term,
    Verdict,
    pooled_metric,
)
from shiftpool.harness.studies.plan import CELL_JSON, Extras, Preset, StudyContext, StudyPlan
from shiftpool.report.figures import sensitivity_map_png
from shiftpool.train.checkpoint import LAST

DATASETS: tuple[str, ...] = ("mnist", "fashionmnist", "cifar10")
#: Homogeneity window (the stride of the reference grid point) and tolerance.
WINDOW, EPS = 2, 0.05
INVARIANCE = "c_cons"
DATA_TEXT = "MNIST, Fashion-MNIST, CIFAR-10"
#: Augmentation of the ``+aug`` arms: random translations by up to 4 pixels (zero fill).
TRANSLATE = {"crop_padding": 4}

_GRID = {"smoke": ((2, 3), (2,)), "cpu": ((2, 3, 4), (2, 3)),
         "paper": ((1, 2, 3, 4, 5), (2, 3, 4))}
_SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"model_options": {"channels": [8, 16, 32]}, "train_subset": 256, "epochs": 1,
              "eval_max_images": 200, "batch_size": 64},
    "cpu": {"model_options": {"channels": [16, 32, 64]}, "train_subset": 5000, "epochs": 8,
            "eval_max_images": 1000, "batch_size": 128},
    "paper": {"model_options": {"channels": [32, 64, 128]}, "train_subset": None, "epochs": 30,
              "eval_max_images": None, "batch_size": 128, "amp": "auto"},
}
_SEEDS = {"smoke": (0,), "cpu": (0, 1, 2), "paper": (0, 1, 2)}
#: Test images of each data set in the homogeneity measurement.
_HOMOGENEITY_IMAGES = {"smoke": 200, "cpu": 2000, "paper": None}
#: Test images of each translation-sensitivity map (one map per shown arm, its first seed).
_SENSITIVITY_IMAGES = {"smoke": 16, "cpu": 100, "paper": 1000}
#: Where a run keeps its sensitivity map (reused while the run's cell.json is unchanged).
SENSITIVITY_JSON = "sensitivity.json"
SENSITIVITY_FIGURE = "sensitivity_maps.png"
_SCALED_DOWN = {
    "smoke": ("256 training images, 1 epoch, 1 seed, 200 test images, kernels 2 and 3 at "
              "stride 2 only: a wiring check only",),
    "cpu": ("5,000 training images of each data set, 8 epochs, 3 seeds, 1,000 test images",
            "kernels 2-4 and strides 2-3 (the paper's grid is wider); widths 16-32-64"),
    "paper": ("the paper's exact architecture and budget are not in this repository's "
              "specification: a 3-stage simple_cnn of widths 32-64-128, 30 epochs",),
}


def arm_name(dataset: str, kernel: int, stride: int, variant: str = "") -> str:
    """``cifar10:k3s2`` (``variant``: ``-fc``, ``+aug``, ``-blur`` or empty)."""
    return f"{dataset}:k{kernel}s{stride}{variant}"


def _input_size(dataset: str) -> int:
    return dataset_info(dataset).image_size[0]


def _arms(scale: str) -> tuple[Arm, ...]:
    kernels, strides = _GRID[scale]
    arms = []
    for dataset in DATASETS:
        data = {"dataset": dataset}
        for stride in strides:
            for kernel in kernels:
                arms.append(Arm(arm_name(dataset, kernel, stride),
                                {**data, "model_options": {"pool_kernel": kernel,
                                                           "pool_stride": stride}},
                                {"dataset": dataset, "kernel": kernel, "stride": stride,
                                 "variant": "gap"}))
        reference = {"pool_kernel": 2, "pool_stride": 2}
        arms += [
            Arm(arm_name(dataset, 2, 2, "-fc"),
                {**data, "model_options": {**reference, "head": "fc",
                                           "input_size": _input_size(dataset)}},
                {"dataset": dataset, "kernel": 2, "stride": 2, "variant": "fc head"}),
            Arm(arm_name(dataset, 2, 2, "+aug"),
                {**data, "model_options": reference, "augment": dict(TRANSLATE)},
                {"dataset": dataset, "kernel": 2, "stride": 2, "variant": "augmentation"}),
            Arm(arm_name(dataset, 2, 2, "-blur"),
                {**data, "model_options": {"pool_stride": 2}, "downsample": "maxblur",
                 "downsample_options": {"kernel_size": 2, "filter_size": 3}},
                {"dataset": dataset, "kernel": 2, "stride": 2, "variant": "anti-aliasing"}),
        ]
    return tuple(arms)


def _mean_over_datasets(variant: str, reference: str = "") -> tuple[Term, ...]:
    """The contrast ``mean over data sets of (metric[variant] - metric[reference])``."""
    w = 1.0 / len(DATASETS)
    return tuple(term for d in DATASETS for term in
                 (Term(arm_name(d, 2, 2, variant), w), Term(arm_name(d, 2, 2, reference), -w)))


def _claims(scale: str) -> tuple[Claim, ...]:
    kernels, _ = _GRID[scale]
    large = max(kernels)
    claims = []
    order = (("mnist", "fashionmnist"), ("fashionmnist", "cifar10"))
    for measure, note in (("fraction", "the measure the claim rests on (phase-independent "
                           "windows)"),
                          ("score", "secondary measure: the claim does not rest on it")):
        for high, low in order:
            claims.append(Claim(
                f"homogeneity_{measure}_{high}_{low}", f"local homogeneity is data-set "
                f"specific: {high} is more homogeneous than {low} ({measure} measure)",
                measure, (Term(f"data:{high}"), Term(f"data:{low}", -1.0)), 1,
                paper="MNIST > Fashion-MNIST > CIFAR-10", note=note))
    for dataset in DATASETS:
        small, big = arm_name(dataset, 2, 2), arm_name(dataset, large, 2)
        claims.append(Claim(
            f"kernel_invariance_{dataset}", f"a larger pooling kernel ({large} vs 2, stride 2) "
            f"gives more invariance on {dataset}", INVARIANCE, (Term(big), Term(small, -1.0)),
            1))
        claims.append(Claim(
            f"kernel_generalisation_{dataset}", f"a larger pooling kernel ({large} vs 2, "
            f"stride 2) generalises worse on {dataset}", "acc", (Term(big), Term(small, -1.0)),
            -1))

    def gain(dataset: str, weight: float) -> tuple[Term, Term]:
        return (Term(arm_name(dataset, large, 2), weight),
                Term(arm_name(dataset, 2, 2), -weight))

    claims += [
        Claim("homogeneity_predicts_kernel_gain", f"less homogeneous data need larger kernels: "
              f"the invariance gained from kernel {large} over 2 is larger on CIFAR-10 than on "
              "MNIST", INVARIANCE, (*gain("cifar10", 1.0), *gain("mnist", -1.0)), 1,
              note="our reading of 'homogeneity dictates the kernel size needed'"),
        Claim("kernel_raises_homogeneity", f"a larger kernel ({large} vs 2) makes the maps "
              "that are subsampled more homogeneous (the mechanism)", "h_fraction",
              tuple(t for d in DATASETS for t in gain(d, 1.0 / len(DATASETS))), 1,
              note="mean over data sets of the feature maps' homogeneity (fraction measure, "
                   "mean over the pooling layers)"),
        Claim("gap_invariance", "global average pooling gives more invariance than a fully "
              "connected head", INVARIANCE, _mean_over_datasets("", "-fc"), 1,
              note="mean over data sets, kernel 2 stride 2"),
        Claim("augmentation_invariance", "augmentation with translations gives more "
              "invariance", INVARIANCE, _mean_over_datasets("+aug"), 1,
              note="mean over data sets, kernel 2 stride 2"),
        Claim("anti_aliasing_invariance", "anti-aliasing (MaxBlurPool) gives more invariance",
              INVARIANCE, _mean_over_datasets("-blur"), 1,
              note="mean over data sets, kernel 2 stride 2"),
        Claim("anti_aliasing_homogeneity", "anti-aliasing works through homogeneity: the maps "
              "it subsamples are more homogeneous", "h_fraction", _mean_over_datasets("-blur"),
              1, note="our reading; mean over data sets of the feature maps' homogeneity"),
    ]
    return tuple(claims)


def plan(scale: str) -> StudyPlan:
    """The ``mouton`` study at ``scale``."""
    base = study_config(by_scale(scale, _SCALES), model="simple_cnn", dataset=DATASETS[0])
    return StudyPlan(
        preset="mouton", scale=scale, base=base, arms=_arms(scale), seeds=_SEEDS[scale],
        claims=_claims(scale), metrics=("accuracy", "consistency", "fidelity", "homogeneity"),
        protocol="tips", columns=("acc", "c_cons", "s_cons", "h_fraction", "h_score"),
        scaled_down=_SCALED_DOWN[scale],
        notes=("invariance = consistency under circular shifts (c_cons); the translation "
               "sensitivity maps (the paper's own measure: cosine similarity of the "
               "penultimate features of x and of x shifted circularly by every offset of the "
               "grid) are measured for the kernel-2 and largest-kernel arms and the "
               f"interventions at the first seed, on {_SENSITIVITY_IMAGES[scale]} test images "
               "each: a description, not a claim",
               f"data-set homogeneity: window {WINDOW}, tolerance {EPS} of the image's range, "
               "test images"),
    )


def _homogeneity_cells(rows: Sequence[HomogeneityRow]) -> list[Cell]:
    return [Cell(f"data:{row.dataset}", 0, {"fraction": row.fraction, "score": row.score})
            for row in rows]


def analyse(context: StudyContext) -> Extras:
    """The data sets' homogeneity (both measures), the feature maps' homogeneity per layer,
    and the homogeneity figure."""
    rows = hhomogeneity.homogeneity_rows(list(DATASETS), split="test", window=WINDOW, eps=EPS,
                            max_images=_HOMOGENEITY_IMAGES[context.plan.scale],
                            data_dir=context.data_dir)
    extras = Extras(cells=_homogeneity_cells(rows))
    lines = ["| data set | images | fraction (95% CI) | score (95% CI) |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.dataset} | {row.images} | {_interval(row.fraction)} | "
                     f"{_interval(row.score)} |")
    extras.sections["Data-set homogeneity"] = (
        f"Window {WINDOW}, tolerance {EPS}; test images. The claim rests on the fraction "
        "measure (windows on which every subsampling phase agrees); the score measure rewards "
        "windows that are merely similar and is shown as a secondary check.\n\n"
        + "\n".join(lines))
    extras.sections["Feature-map homogeneity per pooling layer"] = _layer_table(context)
    extras.data["homogeneity"] = [row.to_dict() for row in rows]
    maps = sensitivity_maps(context)
    if maps:
        extras.sections["Translation sensitivity"] = _sensitivity_table(maps, context)
        extras.data["sensitivity"] = {arm: result["sensitivity"] for arm, result in maps.items()}
        try:
            extras.figures[SENSITIVITY_FIGURE] = sensitivity_map_png(maps)
        except ImportError as error:
            context.log(f"sensitivity figure skipped: {error}")
    return extras


def sensitivity_arms(scale: str) -> list[str]:
    """The arms whose translation-sensitivity map is measured: per data set, kernel 2 and the
    largest kernel at stride 2, and the three interventions."""
    large = max(_GRID[scale][0])
    return [arm_name(d, k, 2, v) for d in DATASETS
            for k, v in ((2, ""), (large, ""), (2, "-fc"), (2, "+aug"), (2, "-blur"))]


def sensitivity_maps(context: StudyContext) -> dict[str, dict[str, Any]]:
    """``{arm: evaluation dict}`` with the circular-shift sensitivity map of each arm of
    :func:`sensitivity_arms` at the plan's first seed (arms without a finished run are left
    out). A map is kept in the run's folder and measured again only when the run changed."""
    seed, arms = context.plan.seeds[0], sensitivity_arms(context.plan.scale)
    images = _SENSITIVITY_IMAGES[context.plan.scale]
    runs = {cell.arm: Path(cell.run_dir) for cell in context.cells
            if cell.seed == seed and cell.arm in arms}
    maps = {arm: _run_sensitivity(runs[arm], images, context) for arm in arms if arm in runs}
    return {arm: result for arm, result in maps.items() if result is not None}


def _run_sensitivity(run_dir: Path, images: int,
                     context: StudyContext) -> dict[str, Any] | None:
    checkpoint, cell_file, saved = run_dir / LAST, run_dir / CELL_JSON, run_dir / SENSITIVITY_JSON
    if not (checkpoint.is_file() and cell_file.is_file()):
        return None
    settings = {"images": images, "shifts": ["circular"], "protocol": context.plan.protocol,
                "cell": hashlib.sha256(cell_file.read_bytes()).hexdigest()}
    try:
        kept = json.loads(saved.read_text())
        if kept["settings"] == settings:
            return kept["result"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or from another run: measure
    context.log(f"translation sensitivity of {run_dir} ({images} images)")
    evaluation, _ = hevaluation.evaluate_checkpoint(
        checkpoint, data_dir=context.data_dir, metrics=["sensitivity"],
        protocol=context.plan.protocol, max_images=images, progress=False, shifts=("circular",))
    result = evaluation.to_dict()
    atomic_write_json(saved, {"settings": settings, "result": result})
    return result


def _sensitivity_table(maps: dict[str, dict[str, Any]], context: StudyContext) -> str:
    lines = ["| arm | mean cosine over the grid | lowest cell (95% CI) at (dy, dx) | grid |",
             "|---|---|---|---|"]
    for arm, result in maps.items():
        grid = result["sensitivity"]["circular"]
        cells = [(v, i, j) for i, row in enumerate(grid["mean"])
                 for j, v in enumerate(row) if v is not None]
        value, i, j = min(cells)
        overall = grid["overall"]
        lines.append(f"| {arm} | {'—' if overall is None else f'{overall:.4f}'} | {value:.4f} "
                     f"[{grid['low'][i][j]:.4f}, {grid['high'][i][j]:.4f}] at "
                     f"({grid['dys'][i]}, {grid['dxs'][j]}) | "
                     f"{len(grid['dys'])} x {len(grid['dxs'])} |")
    return ("Cosine similarity of the penultimate features of an image and of its circular "
            "shift by each offset of the grid, mean over "
            f"{_SENSITIVITY_IMAGES[context.plan.scale]} test images, first seed "
            f"({context.plan.seeds[0]}) only; 1 = the features do not move. The maps are in "
            "the figure.\n\n" + "\n".join(lines))


def _interval(estimate: Any) -> str:
    return f"{estimate.value:.4f} [{estimate.low:.4f}, {estimate.high:.4f}]"


def _layer_table(context: StudyContext) -> str:
    """Mean over seeds of each pooling layer's fraction measure, per arm at kernel 2 or the
    largest kernel, stride 2."""
    layers = sorted({k.split("@", 1)[1] for c in context.cells for k in c.estimates
                     if k.startswith("h_fraction@")})
    if not layers:
        return "not measured"
    kernels, _ = _GRID[context.plan.scale]
    shown = [a for a in context.plan.arms if a.factors.get("stride") == 2
             and (a.factors.get("variant") != "gap" or a.factors.get("kernel") in
                  (2, max(kernels)))]
    lines = ["| arm | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers)]
    for arm in shown:
        values = [pooled_metric(arm.name, f"h_fraction@{layer}", context.cells)
                  for layer in layers]
        lines.append(f"| {arm.name} | " + " | ".join(
            "—" if v is None else f"{v.value:.3f}" for v in values) + " |")
    return ("Fraction measure of the map each pooling layer subsamples (window = its stride), "
            "mean over seeds.\n\n" + "\n".join(lines))


def figures(study: StudyPlan, cells: Sequence[Cell],
            verdicts: Sequence[Verdict]) -> dict[str, bytes]:
    """Heatmaps of accuracy and invariance over kernel x stride per data set; the kernel
    trade-off; the interventions (head, augmentation, anti-aliasing); the homogeneity."""
    kernels, strides = _GRID[study.scale]
    drawn: dict[str, bytes] = {}
    for metric, label in (("acc", "accuracy"), (INVARIANCE, "circular consistency")):
        panels = []
        for dataset in DATASETS:
            arms = {(k, s): arm_name(dataset, k, s) for k in kernels for s in strides}
            panels.append((dataset, grid_values(study, cells, metric, arms, kernels, strides)))
        drawn[f"heatmap_{metric}.png"] = heatmap_figure(
            panels, kernels, strides, "pooling kernel", "stride",
            f"{label} over kernel x stride (mean over seeds)\n{caption(study, cells, DATA_TEXT)}")
    series = {d: [(f"k={k}", pooled_metric(arm_name(d, k, 2), INVARIANCE, cells),
                   pooled_metric(arm_name(d, k, 2), "acc", cells)) for k in kernels]
              for d in DATASETS}
    drawn["kernel_tradeoff.png"] = tradeoff_figure(
        series, "circular consistency, 95% CI", "test accuracy, 95% CI",
        f"Kernel size: invariance against generalisation (stride 2)\n"
        f"{caption(study, cells, DATA_TEXT)}")
    groups: dict[str, dict[str, Pooled | None]] = {}
    for dataset in DATASETS:
        groups[dataset] = {label: pooled_metric(arm_name(dataset, 2, 2, variant), INVARIANCE,
                                                cells)
                           for label, variant in (("GAP", ""), ("FC head", "-fc"),
                                                  ("augmented", "+aug"),
                                                  ("anti-aliased", "-blur"))}
    drawn["interventions.png"] = bars_figure(
        groups, "circular consistency (95% CI)",
        f"Head, augmentation, anti-aliasing at kernel 2, stride 2\n"
        f"{caption(study, cells, DATA_TEXT)}")
    homogeneity = {f"data:{d}": {m: pooled_metric(f"data:{d}", m, cells)
                                 for m in ("fraction", "score")} for d in DATASETS}
    if any(v is not None for bars in homogeneity.values() for v in bars.values()):
        drawn["homogeneity.png"] = bars_figure(
            homogeneity, "local homogeneity (95% CI)",
            f"Data-set homogeneity, window {WINDOW}, tolerance {EPS} (test images)")
    return {name: content for name, content in drawn.items() if content}


PRESET = Preset(
    name="mouton",
    paper="Mouton, C., Myburgh, J. C., Davel, M. H. Stride and Translation Invariance in CNNs. "
          "SACAIR 2020 (CCIS 1342, 2021).",
    summary="Pooling kernel x stride, GAP vs fully connected head, augmentation and "
            "anti-aliasing on MNIST, Fashion-MNIST and CIFAR-10, read through the data sets' "
            "local homogeneity.",
    plan=plan,
    analyse=analyse,
    grid_figures=figures,
)
