"""``s3pool``: S3Pool as a regulariser (Zhai et al., CVPR 2017).

Max pooling against S3Pool with grid sizes ``g`` (the strip length that sets how far a kept row
or column may move: ``g = 2``, the stride, jitters each row inside its own 2-row block; larger
``g`` distorts more), each trained with and without flips and random crops. The regularisation
measure is the generalisation gap: accuracy on the training images (eval mode, no
augmentation) minus test accuracy. The claims are decided for S3Pool's default grid, ``g = 2``
(the stride, :class:`~shiftpool.downsample.S3Pool`'s default), fixed before any run; the other
grid sizes are in the table and figures.

The distortion figure passes test images through S3Pool in training mode (stride-1 max pool,
then stochastic row/column sampling) and scales the result back up (nearest neighbour): several
draws per grid size show what the network sees.

Grids (arms = max and S3Pool at each ``g``, each without and with augmentation):

====== ============================== ======== ====== ========= ================== ==========
scale  model                          data     train  epochs    g                  seeds
====== ============================== ======== ====== ========= ================== ==========
smoke  simple_cnn [8, 16, 32]         CIFAR-10 256    2         2, 4               0
cpu    simple_cnn [16, 32, 64]        CIFAR-10 2,000  50        2, 4, 8            0, 1, 2
paper  resnet18_cifar                 CIFAR-10, all    200       2, 4, 8, 16        0, 1, 2
                                      CIFAR-100,
                                      STL-10
====== ============================== ======== ====== ========= ================== ==========

Example:
    >>> [arm.name for arm in PRESET.plan("smoke").arms]
    ['max', 's3pool-g2', 's3pool-g4', 'max+aug', 's3pool-g2+aug', 's3pool-g4+aug']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from shiftpool.downsample.s3pool import s3pool as s3pool_op
from shiftpool.harness.studies.common import CIFAR_AUGMENT, by_scale, percent, study_config
from shiftpool.harness.studies.figures import bars_figure, caption, new_figure, png
from shiftpool.harness.studies.framework import Arm, Cell, Claim, Term, Verdict, pooled_metric
from shiftpool.harness.studies.plan import Extras, Preset, StudyContext, StudyPlan
from shiftpool.train import inputs

_GRIDS = {"smoke": (2, 4), "cpu": (2, 4, 8), "paper": (2, 4, 8, 16)}
_DATASETS = {"smoke": ("cifar10",), "cpu": ("cifar10",),
             "paper": ("cifar10", "cifar100", "stl10")}
_SCALES: dict[str, dict[str, Any]] = {
    "smoke": {"model_options": {"channels": [8, 16, 32]}, "train_subset": 256, "epochs": 2,
              "eval_max_images": 200, "batch_size": 64},
    "cpu": {"model_options": {"channels": [16, 32, 64]}, "train_subset": 2000, "epochs": 50,
            "eval_max_images": 2000, "batch_size": 64},
    "paper": {"model": "resnet18_cifar", "model_options": {}, "train_subset": None,
              "epochs": 200, "eval_max_images": None, "batch_size": 128, "amp": "auto"},
}
_SEEDS = {"smoke": (0,), "cpu": (0, 1, 2), "paper": (0, 1, 2)}
_SCALED_DOWN = {
    "smoke": ("the paper's ResNet and NIN → a 3-stage simple_cnn of widths 8-16-32",
              "CIFAR-10 only, 256 training images, 2 epochs, 1 seed, 200 test images: a wiring "
              "check only"),
    "cpu": ("the paper's ResNet and NIN → a 3-stage simple_cnn of widths 16-32-64",
            "CIFAR-10 only (no CIFAR-100, STL-10), 2,000 of the 50,000 training images, 50 "
            "epochs; 3 seeds; 2,000 test images",
            "grid sizes 2, 4, 8 only (this repository's specification does not list the "
            "paper's own grid sizes)"),
    "paper": ("ResNet-18 for CIFAR instead of the paper's ResNet/NIN variants; 200 epochs",),
}
#: Draws per grid size in the distortion figure.
DRAWS = 4
DISTORTION_FIGURE = "s3pool_distortions.png"
GAP_FIGURE = "generalisation_gap.png"


def _name(method: str, g: int | None, augment: bool, dataset: str, several: bool) -> str:
    name = method if g is None else f"{method}-g{g}"
    name += "+aug" if augment else ""
    return f"{dataset}:{name}" if several else name


def _arms(scale: str) -> tuple[Arm, ...]:
    datasets = _DATASETS[scale]
    several = len(datasets) > 1
    arms = []
    for dataset in datasets:
        for augment in (False, True):
            changes: dict[str, Any] = {"augment": dict(CIFAR_AUGMENT) if augment else {}}
            if several:
                changes["dataset"] = dataset
            factors = {"dataset": dataset, "augment": augment}
            arms.append(Arm(_name("max", None, augment, dataset, several),
                            {**changes, "downsample": "max"},
                            {**factors, "method": "max", "g": "—"},
                            paper=_paper(dataset, "max", augment)))
            for g in _GRIDS[scale]:
                arms.append(Arm(_name("s3pool", g, augment, dataset, several),
                                {**changes, "downsample": "s3pool",
                                 "downsample_options": {"grid_size": g}},
                                {**factors, "method": "s3pool", "g": g},
                                paper=_paper(dataset, "s3pool", augment)))
    return tuple(arms)


def _paper(dataset: str, method: str, augment: bool) -> dict[str, float]:
    """The paper's number this repository has (SPEC §5): about 7.1% CIFAR-10 error for its
    ResNet with S3Pool, flips and crops."""
    if dataset == "cifar10" and method == "s3pool" and augment:
        return {"acc": percent(100 - 7.1)[0]}
    return {}


def _claims(scale: str) -> tuple[Claim, ...]:
    prefix = "cifar10:" if len(_DATASETS[scale]) > 1 else ""
    s3, mx = f"{prefix}s3pool-g2", f"{prefix}max"
    return (
        Claim("regularises", "without augmentation, S3Pool generalises better than max "
              "pooling (higher test accuracy)", "acc", (Term(s3), Term(mx, -1.0)), 1,
              note="S3Pool's default grid g = 2"),
        Claim("smaller_gap", "S3Pool regularises: a smaller gap between training and test "
              "accuracy than max pooling (no augmentation)", "gap",
              (Term(s3), Term(mx, -1.0)), -1),
        Claim("with_augmentation", "S3Pool still improves test accuracy with flips and crops "
              "(its implicit augmentation adds to the explicit one)", "acc",
              (Term(f"{s3}+aug"), Term(f"{mx}+aug", -1.0)), 1,
              paper="CIFAR-10 with flip+crop: about 7.1% error (ResNet with S3Pool)"),
    )


def plan(scale: str) -> StudyPlan:
    """The ``s3pool`` study at ``scale``."""
    base = study_config(by_scale(scale, _SCALES), model="simple_cnn",
                        dataset=_DATASETS[scale][0])
    return StudyPlan(
        preset="s3pool", scale=scale, base=base, arms=_arms(scale), seeds=_SEEDS[scale],
        claims=_claims(scale), metrics=("accuracy", "consistency", "fidelity"),
        protocol="aps", columns=("acc", "train_acc", "gap", "c_cons"),
        scaled_down=_SCALED_DOWN[scale], train_accuracy=True,
        notes=("S3Pool evaluates with its expectation (average pooling of the stride-1 max "
               "map), as the reference code; training samples one set of rows/columns per "
               "batch", "consistency under circular shifts (aps protocol) is shown for "
               "reference; the paper makes no invariance claim"),
    )


def distortions(images: torch.Tensor, grids: Sequence[int], draws: int = DRAWS,
                seed: int = 0) -> dict[int, list[torch.Tensor]]:
    """``{g: [image passed through S3Pool in training mode and scaled back up] * draws}``:
    stride-1 max pool, stochastic sampling (one draw per call), nearest upsampling by 2.

    Example:
        >>> out = distortions(torch.rand(1, 3, 8, 8), [2, 4], draws=2)
        >>> sorted(out), out[2][0].shape
        ([2, 4], torch.Size([1, 3, 8, 8]))
    """
    generator = torch.Generator().manual_seed(seed)
    found: dict[int, list[torch.Tensor]] = {}
    for g in grids:
        found[g] = [torch.nn.functional.interpolate(
            s3pool_op(images, 2, grid_size=g, training=True, generator=generator),
            scale_factor=2, mode="nearest")[..., :images.shape[-2], :images.shape[-1]]
            for _ in range(draws)]
    return found


def _distortion_figure(context: StudyContext) -> bytes:
    config = context.plan.base
    test = inputs.load_split(config, "test")
    picked = inputs.subset(test, 3, 0)
    images = torch.stack([picked[i][0] for i in range(len(picked))]).float()
    grids = _GRIDS[context.plan.scale]
    shown = distortions(images, grids)
    low, high = images.amin(dim=(1, 2, 3), keepdim=True), images.amax(dim=(1, 2, 3), keepdim=True)

    def visible(x: torch.Tensor) -> Any:
        x = ((x - low) / (high - low).clamp_min(1e-8)).clamp(0, 1)
        return x.permute(0, 2, 3, 1).squeeze(-1).numpy()

    rows = len(images)
    fig = new_figure(1.4 * (1 + len(grids) * DRAWS), 1.5 * rows + 0.6)
    axes = fig.subplots(rows, 1 + len(grids) * DRAWS, squeeze=False)
    original = visible(images)
    for r in range(rows):
        axes[r][0].imshow(original[r], cmap="gray")
        axes[r][0].set_title("image" if r == 0 else "", fontsize=7)
        for i, g in enumerate(grids):
            for d, drawn in enumerate(shown[g]):
                ax = axes[r][1 + i * DRAWS + d]
                ax.imshow(visible(drawn)[r], cmap="gray")
                if r == 0:
                    ax.set_title(f"g={g} #{d + 1}", fontsize=7)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle(f"S3Pool (stride 2) in training mode, upsampled back: {DRAWS} draws per grid "
                 f"size · {config.dataset} test images", fontsize=9)
    return png(fig)


def analyse(context: StudyContext) -> Extras:
    """The distortion figure (the claims come from the runs)."""
    extras = Extras()
    try:
        extras.figures[DISTORTION_FIGURE] = _distortion_figure(context)
    except ImportError as error:
        context.log(f"distortion figure skipped: {error}")
    return extras


def figures(study: StudyPlan, cells: Sequence[Cell],
            verdicts: Sequence[Verdict]) -> dict[str, bytes]:
    """Train accuracy, test accuracy and their gap per arm, with intervals."""
    groups = {arm.name: {metric: pooled_metric(arm.name, metric, cells)
                         for metric in ("train_acc", "acc", "gap")} for arm in study.arms}
    return {GAP_FIGURE: bars_figure(groups, "fraction (95% CI)",
                                    f"Train accuracy, test accuracy and gap\n"
                                    f"{caption(study, cells)}")}


PRESET = Preset(
    name="s3pool",
    paper="Zhai, S., Wu, H., Kumar, A., Cheng, Y., Lu, Y., Zhang, Z., Feris, R. S3Pool: Pooling "
          "with Stochastic Spatial Sampling. CVPR 2017.",
    summary="Max pooling against S3Pool at several grid sizes, with and without augmentation: "
            "test accuracy and the train/test gap as the measure of regularisation.",
    plan=plan,
    analyse=analyse,
    grid_figures=figures,
)
