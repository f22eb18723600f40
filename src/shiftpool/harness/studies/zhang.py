"""``zhang``: accuracy against consistency of anti-aliased max pooling (Zhang, ICML 2019).

Every pooling point of the network is Zhang's MaxBlurPool (``maxblur``: stride-1 max pool of
kernel 2, then a binomial low-pass of size ``f`` and subsampling), for ``f`` in 1, 2, 3, 5, 7
(the operator takes any ``f >= 1``; ``f = 1`` is no low-pass: plain 2x2 max pooling, Zhang's
baseline). Each model is evaluated under Zhang's crop protocol: the consistency of predictions
on two crops at independent random offsets.

Zhang's protocol on ImageNet crops 224 x 224 windows from 256 x 256 images with corners in
``[0, 32)``. Here the images are CIFAR-10's 32 x 32: the same proportions give 28 x 28 windows
with corners in ``[0, 4)`` (``max_shift=4``); accuracy is that of the centre window.

Grids (arms = filter sizes 1, 2, 3, 5, 7 at every scale):

======== ================================================ ======== ====== =======================
scale    model                                            train    epochs seeds / test images
======== ================================================ ======== ====== =======================
smoke    simple_cnn [8, 16, 32]                           256      1      0 / 200
cpu      simple_cnn [32, 64, 128]                         10,000   10     0, 1, 2 / 2,000
paper    resnet18_cifar (MaxBlurPool in every pool)       50,000   100    0, 1, 2 / 10,000
======== ================================================ ======== ====== =======================

All train with flips and 4-pixel random crops (as Zhang's models train with augmentation).

Example:
    >>> plan = PRESET.plan("cpu")
    >>> [arm.name for arm in plan.arms]
    ['f1', 'f2', 'f3', 'f5', 'f7']
"""

from __future__ import annotations

from collections.abc import Sequence

from shiftpool.harness.studies.common import CIFAR_AUGMENT, by_scale, study_config
from shiftpool.harness.studies.figures import caption, curve_figure, tradeoff_figure
from shiftpool.harness.studies.framework import Arm, Cell, Claim, Term, Verdict, pooled_metric
from shiftpool.harness.studies.plan import Preset, StudyPlan

FILTER_SIZES: tuple[int, ...] = (1, 2, 3, 5, 7)
#: Zhang's offsets [0, 32) of 256-pixel images, scaled to CIFAR's 32 pixels.
PROTOCOL_OPTIONS = {"max_shift": 4}

_SCALES = {
    "smoke": {"model_options": {"channels": [8, 16, 32]}, "train_subset": 256, "epochs": 1,
              "eval_max_images": 200, "batch_size": 64},
    "cpu": {"model_options": {"channels": [32, 64, 128]}, "train_subset": 10_000, "epochs": 10,
            "eval_max_images": 2000, "batch_size": 128},
    "paper": {"model": "resnet18_cifar", "model_options": {}, "train_subset": None,
              "epochs": 100, "eval_max_images": None, "batch_size": 128, "amp": "auto"},
}
_SEEDS = {"smoke": (0,), "cpu": (0, 1, 2), "paper": (0, 1, 2)}
_SCALED_DOWN = {
    "smoke": ("ImageNet and ResNet-18/50 → CIFAR-10 and a 3-stage simple_cnn of widths 8-16-32",
              "256 training images, 1 epoch, 1 seed, 200 test images: a wiring check only"),
    "cpu": ("ImageNet and ResNet-18/50 → CIFAR-10 and a 3-stage simple_cnn of widths 32-64-128",
            "10,000 of the 50,000 training images, 10 epochs (Zhang: 90 epochs of ImageNet)",
            "3 seeds; 2,000 of the 10,000 test images"),
    "paper": ("ImageNet → CIFAR-10 (no ImageNet here): ResNet-18 for CIFAR, 100 epochs",),
}


def _arm(f: int) -> Arm:
    return Arm(f"f{f}", {"downsample": "maxblur",
                         "downsample_options": {"kernel_size": 2, "filter_size": f}},
               {"filter_size": f})


CLAIMS = (
    Claim("blur_consistency", "anti-aliasing (BlurPool, filter 3) makes predictions more "
          "consistent under shifts than max pooling", "crop_cons",
          (Term("f3"), Term("f1", -1.0)), 1,
          paper="ImageNet ResNet-18 consistency 85.11 → 88.36; ResNet-50 89.20 → 91.32"),
    Claim("filter_size_consistency", "a larger filter gives more consistency (Bin-5 above "
          "Rect-2)", "crop_cons", (Term("f5"), Term("f2", -1.0)), 1,
          note="Zhang's tables order consistency Rect-2 < Tri-3 < Bin-5"),
    Claim("blur_accuracy", "anti-aliasing does not trade accuracy away: it raises it",
          "acc", (Term("f3"), Term("f1", -1.0)), 1,
          paper="ImageNet ResNet-18 accuracy 69.74 → 71.67; ResNet-50 76.16 → 77.41"),
)


def plan(scale: str) -> StudyPlan:
    """The ``zhang`` study at ``scale``."""
    base = study_config(by_scale(scale, _SCALES), model="simple_cnn", dataset="cifar10",
                        augment=dict(CIFAR_AUGMENT))
    return StudyPlan(
        preset="zhang", scale=scale, base=base, arms=tuple(_arm(f) for f in FILTER_SIZES),
        seeds=_SEEDS[scale], claims=CLAIMS,
        metrics=("accuracy", "consistency", "fidelity", "diagonal"),
        protocol="zhang", protocol_options=dict(PROTOCOL_OPTIONS),
        columns=("acc", "crop_cons", "crop_fid"), scaled_down=_SCALED_DOWN[scale],
        notes=("crop protocol: 28x28 windows of the 32x32 test images, corners in [0, 4) "
               "(Zhang's 224 of 256 with corners in [0, 32), scaled); accuracy on the centre "
               "window", "f = 1 is MaxBlurPool without low-pass: plain 2x2 max pooling"),
    )


def figures(study: StudyPlan, cells: Sequence[Cell],
            verdicts: Sequence[Verdict]) -> dict[str, bytes]:
    """Accuracy against consistency, one point per filter size, whiskers both ways; accuracy
    and agreement along the diagonal shift (Zhang's figure), one line per filter size."""
    points = [(f"f={arm.factors['filter_size']}", pooled_metric(arm.name, "crop_cons", cells),
               pooled_metric(arm.name, "acc", cells)) for arm in study.arms]
    drawn = {"accuracy_vs_consistency.png": tradeoff_figure(
        {"MaxBlurPool": points}, "consistency (crop protocol), 95% CI",
        "accuracy (centre crop), 95% CI",
        f"Anti-aliasing: accuracy vs consistency\n{caption(study, cells)}")}
    shifts = sorted({int(k.rsplit("@", 1)[1]) for c in cells for k in c.estimates
                     if k.startswith("diag_acc:crop@")})
    if shifts:
        panels = {label: {f"f={arm.factors['filter_size']}": [
            (d, pooled_metric(arm.name, f"{key}:crop@{d}", cells)) for d in shifts]
            for arm in study.arms}
            for label, key in (("accuracy", "diag_acc"),
                               ("agreement with the unshifted prediction", "diag_agree"))}
        drawn["accuracy_vs_diagonal_shift.png"] = curve_figure(
            panels, "window corner (d, d) (pixels)",
            f"Accuracy along the diagonal shift (bands: 95% intervals over seeds)\n"
            f"{caption(study, cells)}")
    return drawn


PRESET = Preset(
    name="zhang",
    paper="Zhang, R. Making Convolutional Networks Shift-Invariant Again. ICML 2019.",
    summary="Anti-aliased max pooling with binomial filters of size 1, 2, 3, 5, 7: accuracy "
            "against consistency under the crop protocol.",
    plan=plan,
    grid_figures=figures,
)
