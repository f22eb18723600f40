"""``tips``: TIPS against max pooling, BlurPool, APS and LPS, with ablations and the MSB
correlation (Saha & Gokhale, WACV 2025).

Arms: ``max``, ``blur`` (filter 3), ``aps``, ``lps``, ``tips`` (objective ``L_FM + (1 - α) CE + α
L_undo``, α = 0.35) and the paper's two ablations: ``tips-no-undo`` (α = 0: ``L_FM + CE``) and
``tips-no-fm`` (``L_FM`` weighted 0: ``0.65 CE + 0.35 L_undo``). Every network uses circular
padding (as the APS/LPS/TIPS CIFAR code), so APS and LPS are exactly invariant to circular shifts
of 32 x 32 images; each is evaluated under the TIPS protocol (zero-fill "S" and circular "C" shifts
up to a quarter of the image). The MSB of every trained model (arms x seeds) is correlated with its
consistency: the paper's "MSB is negatively correlated with shift invariance".

Grids (arms as above at every scale; CIFAR-10 with flips and 4-pixel crops):

====== ============================== ======== ====== ========== ==================
scale  model                          train    epochs seeds      test images
====== ============================== ======== ====== ========== ==================
smoke  simple_cnn [8, 16, 32]         256      1      0          200
cpu    simple_cnn [32, 64, 128]       5,000    15     0, 1, 2    2,000
paper  resnet18_cifar                 50,000   20     0, 1, 2    10,000
====== ============================== ======== ====== ========== ==================

Example:
    >>> [arm.name for arm in PRESET.plan("cpu").arms]
    ['max', 'blur', 'aps', 'lps', 'tips', 'tips-no-undo', 'tips-no-fm']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shiftpool.core.errors import InputError
from shiftpool.harness.correlate import correlate
from shiftpool.harness.studies.common import CIFAR_AUGMENT, by_scale, percent, study_config
from shiftpool.harness.studies.figures import caption, tradeoff_figure
from shiftpool.harness.studies.framework import Arm, Cell, Claim, Term, Verdict, pooled_metric
from shiftpool.harness.studies.plan import RUNS_DIR, Extras, Preset, StudyContext, StudyPlan
from shiftpool.metrics import Estimate
from shiftpool.metrics.correlation import CORRELATIONS, Correlation, correlation

#: The TIPS paper's CIFAR-10 ResNet-18 numbers (20 epochs; SPEC §5): Acc, S-Cons, S-Fid,
#: C-Cons, C-Fid per method, as fractions.
PAPER_COLUMNS = ("acc", "s_cons", "s_fid", "c_cons", "c_fid")
PAPER: dict[str, tuple[float, ...]] = {
    "max": percent(91.57, 87.41, 80.04, 89.92, 82.34),
    "blur": percent(93.29, 90.54, 84.46, 97.83, 91.27),
    "aps": percent(94.07, 92.74, 87.24, 100, 94.07),
    "lps": percent(94.45, 93.61, 88.41, 100, 94.45),
    "tips": percent(98.12, 98.67, 96.82, 100, 98.12),
}
#: The correlations of MSB the analysis reports, and the one a claim rests on.
CORRELATED = ("s_cons", "c_cons", "s_fid", "c_fid", "acc")
CLAIMED_CORRELATION = "s_cons"
CORRELATION_ARM = "msb-correlation"
#: Where the study's correlate report goes, inside the study's folder.
CORRELATION_DIR = "correlation"

_SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"model_options": {"channels": [8, 16, 32]}, "train_subset": 256, "epochs": 1,
              "eval_max_images": 200, "batch_size": 64},
    "cpu": {"model_options": {"channels": [32, 64, 128]}, "train_subset": 5000, "epochs": 15,
            "eval_max_images": 2000, "batch_size": 128},
    "paper": {"model": "resnet18_cifar", "model_options": {}, "train_subset": None,
              "epochs": 20, "eval_max_images": None, "batch_size": 128, "amp": "auto"},
}
_SEEDS = {"smoke": (0,), "cpu": (0, 1, 2), "paper": (0, 1, 2)}
_SCALED_DOWN = {
    "smoke": ("ResNet-18 → a 3-stage simple_cnn of widths 8-16-32",
              "256 training images, 1 epoch, 1 seed, 200 test images: a wiring check only"),
    "cpu": ("ResNet-18 → a 3-stage simple_cnn of widths 32-64-128 (all pooling points "
            "replaced; the paper's ResNet-18 has strided convolutions)",
            "5,000 of the 50,000 training images, 15 epochs (paper: 20 epochs of all 50,000)",
            "3 seeds; 2,000 of the 10,000 test images"),
    "paper": (),
}


def _arms() -> tuple[Arm, ...]:
    def paper(method: str) -> dict[str, float]:
        return dict(zip(PAPER_COLUMNS, PAPER[method], strict=True)) if method in PAPER else {}

    arms = [Arm(m, {"downsample": m}, {"method": m}, paper(m))
            for m in ("max", "blur", "aps", "lps", "tips")]
    arms.append(Arm("tips-no-undo", {"downsample": "tips", "tips_alpha": 0.0},
                    {"method": "tips", "ablation": "no L_undo (α = 0)"}))
    arms.append(Arm("tips-no-fm", {"downsample": "tips", "tips_fm_weight": 0.0},
                    {"method": "tips", "ablation": "no L_FM (weight 0)"}))
    return tuple(arms)


CLAIMS = (
    Claim("aps_circular", "APS is exactly consistent under circular shifts", "c_cons",
          (Term("aps"),), exact=1.0, paper="C-Cons 100"),
    Claim("lps_circular", "LPS is exactly consistent under circular shifts", "c_cons",
          (Term("lps"),), exact=1.0, paper="C-Cons 100"),
    Claim("tips_circular", "TIPS is fully consistent under circular shifts", "c_cons",
          (Term("tips"),), exact=1.0, paper="C-Cons 100",
          note="TIPS mixes all polyphase components with weights from region means, which a "
               "circular shift changes: exactness is not guaranteed by construction"),
    Claim("tips_vs_max_standard", "TIPS is more consistent than max pooling under standard "
          "(zero-fill) shifts", "s_cons", (Term("tips"), Term("max", -1.0)), 1,
          paper="S-Cons 98.67 vs 87.41"),
    Claim("tips_vs_aps_standard", "TIPS is more consistent than APS under standard shifts",
          "s_cons", (Term("tips"), Term("aps", -1.0)), 1, paper="S-Cons 98.67 vs 92.74"),
    Claim("tips_vs_max_accuracy", "TIPS is more accurate than max pooling", "acc",
          (Term("tips"), Term("max", -1.0)), 1, paper="Acc 98.12 vs 91.57"),
    Claim("undo_ablation", "L_undo makes TIPS more consistent under standard shifts (ablation "
          "without it)", "s_cons", (Term("tips"), Term("tips-no-undo", -1.0)), 1),
    Claim("fm_ablation", "L_FM makes TIPS more consistent under standard shifts (ablation "
          "without it)", "s_cons", (Term("tips"), Term("tips-no-fm", -1.0)), 1),
    Claim("tips_lowers_msb", "TIPS has a lower maximum-sampling bias than max pooling", "msb",
          (Term("tips"), Term("max", -1.0)), -1),
    Claim("msb_correlation", "MSB is negatively correlated with shift invariance (over all "
          "trained models)", "pearson_s_cons", (Term(CORRELATION_ARM),), -1,
          note="Pearson r of MSB and S-Cons over every trained model (arms x seeds), BCa "
               "bootstrap interval over models; the other metrics are in the MSB section"),
)


def plan(scale: str) -> StudyPlan:
    """The ``tips`` study at ``scale``."""
    base = study_config(by_scale(scale, _SCALES), model="simple_cnn", dataset="cifar10",
                        circular=True, augment=dict(CIFAR_AUGMENT))
    return StudyPlan(
        preset="tips", scale=scale, base=base, arms=_arms(), seeds=_SEEDS[scale],
        claims=CLAIMS, metrics=("accuracy", "consistency", "fidelity", "msb"),
        protocol="tips", columns=("acc", "s_cons", "s_fid", "c_cons", "c_fid", "msb"),
        scaled_down=_SCALED_DOWN[scale],
        notes=("paper columns: the TIPS paper's CIFAR-10 ResNet-18 table (20 epochs); its 98% "
               "TIPS accuracy is far above what ResNet-18 reaches from scratch (SPEC §5): "
               "compare directions, not levels"),
    )


def model_points(cells: Sequence[Cell], metric: str) -> tuple[list[float], list[float]]:
    """``(msb, metric)`` over every trained model that measured both."""
    pairs = [(c.estimates["msb"].value, c.estimates[metric].value) for c in cells
             if "msb" in c.estimates and metric in c.estimates]
    return [x for x, _ in pairs], [y for _, y in pairs]


def _from_cells(cells: Sequence[Cell]) -> dict[str, dict[str, Correlation] | str]:
    """The correlations computed from the cells themselves (when ``correlate`` cannot read the
    runs, e.g. cells not written by a study)."""
    found: dict[str, dict[str, Correlation] | str] = {}
    for metric in CORRELATED:
        xs, ys = model_points(cells, metric)
        try:
            found[metric] = {kind: correlation(xs, ys, kind, seed=0) for kind in CORRELATIONS}
        except InputError as error:  # fewer than 3 models, or a constant metric
            found[metric] = str(error)
    return found


def _from_runs(context: StudyContext) -> tuple[dict[str, dict[str, Correlation] | str],
                                               dict[str, bytes]]:
    """The overall MSB rows of :func:`shiftpool.harness.correlate.correlate` over the study's
    runs (which also writes its own report, per-layer rows and scatter figures into
    ``correlation/``), and its figures (to embed in the study's report)."""
    report = correlate([context.out_dir / RUNS_DIR], context.out_dir / CORRELATION_DIR,
                       metrics=list(CORRELATED), log=context.log)
    found: dict[str, dict[str, Correlation] | str] = {}
    for row in report.rows:
        if row.group == "all" and row.x == "msb":
            found[row.y] = dict(row.correlations) if row.correlations else row.note
    figures = {f"msb_{path.name}": path.read_bytes() for kind, path in report.files.items()
               if kind.startswith("figure") and path.suffix == ".png"}
    return found, figures


def analyse(context: StudyContext) -> Extras:
    """MSB against each shift metric over all trained models: Pearson and Spearman with
    bootstrap intervals and permutation p-values, through ``shiftpool.harness.correlate``
    (its report and figures in ``correlation/``)."""
    extras = Extras()
    try:
        found, extras.figures = _from_runs(context)
        source = (f"`shiftpool.harness.correlate` over the study's runs: its report "
                  f"({CORRELATION_DIR}/correlation.html) adds per-layer MSB and scatter figures "
                  "with regression bands. It labels the three TIPS arms `tips`.")
    except InputError as error:
        found = _from_cells(context.cells)
        source = f"computed from the cells (correlate could not read the runs: {error})"
    lines = ["| metric | models | Pearson r (95% CI) | p | Spearman ρ (95% CI) | p |",
             "|---|---|---|---|---|---|"]
    for metric in CORRELATED:
        result = found.get(metric, "not measured")
        if isinstance(result, str) or not result:
            lines.append(f"| {metric} | | not defined: {result or 'no value'} | | | |")
            continue
        p, r = result["pearson"], result["spearman"]
        lines.append(f"| {metric} | {p.n} | {p.value:+.3f} [{p.low:+.3f}, {p.high:+.3f}] | "
                     f"{p.p_value:.3g} | {r.value:+.3f} [{r.low:+.3f}, {r.high:+.3f}] | "
                     f"{r.p_value:.3g} |")
        if metric == CLAIMED_CORRELATION:
            extras.cells.append(Cell(CORRELATION_ARM, 0, {f"pearson_{metric}": Estimate(
                p.value, p.low, p.high, p.n, f"pearson, {p.interval} bootstrap")}))
    extras.sections["MSB against shift invariance"] = (
        "Every trained model (arms x seeds) is one point. Intervals: bootstrap over models "
        "(BCa); p: permutation test of no association. Models of one method share most of "
        f"their MSB, so the correlation is mostly between methods. Source: {source}\n\n"
        + "\n".join(lines))
    extras.data["msb_correlations"] = {
        metric: r if isinstance(r, str) else {k: c.to_dict() for k, c in r.items()}
        for metric, r in found.items()}
    return extras


def figures(study: StudyPlan, cells: Sequence[Cell],
            verdicts: Sequence[Verdict]) -> dict[str, bytes]:
    """Consistency (zero-fill and circular) against accuracy per method, whiskers both ways."""
    series = {}
    for metric in ("s_cons", "c_cons"):
        series[metric] = [(arm.name, pooled_metric(arm.name, metric, cells),
                           pooled_metric(arm.name, "acc", cells)) for arm in study.arms]
    return {"consistency_vs_accuracy.png": tradeoff_figure(
        series, "consistency, 95% CI", "accuracy, 95% CI",
        f"Consistency vs accuracy per method\n{caption(study, cells)}", connect=False)}


PRESET = Preset(
    name="tips",
    paper="Saha, S., Gokhale, T. Improving Shift Invariance in Convolutional Neural Networks "
          "with Translation Invariant Polyphase Sampling. WACV 2025.",
    summary="max, BlurPool, APS, LPS and TIPS (with its ablations of L_undo and L_FM) under the "
            "TIPS protocol, beside the paper's CIFAR-10 table; MSB against shift invariance.",
    plan=plan,
    analyse=analyse,
    grid_figures=figures,
)
