"""Compare operators on semantic segmentation through the training path (``--task segmentation``).

:func:`compare_segmentation` trains one segmentation model per operator and seed with
:func:`shiftpool.train.train` (checkpoints, resume, DDP, progress and run logs as any run) and
measures each with :func:`~shiftpool.harness.evaluation.evaluate_segmentation` on the test
split: mIoU and pixel accuracy (bootstrap intervals over images), mASSC under circular, zero,
reflect and crop shifts, the equivariance error under circular shifts (mean
``|f(T x) - T f(x)|`` over logits, fraction of pixels whose label changes) and MSB. With
several seeds a row holds the mean over seeds with a t interval over seeds. With a baseline,
every other method is also compared with it on the same test images and shifts (paired
bootstrap over images for mIoU and pixel accuracy, t intervals of per-image differences for
the rest; over seeds, the mean of the seeds' differences).

Layout of ``out_dir``: one run folder per method (``<method>/``, or ``<method>/seed-<k>/`` with
several seeds) holding the run (``last.pt``, ``log.csv``...), ``evaluation.json``,
``per_image.pt`` and ``row.json``; a run whose ``row.json`` has the same settings is reused
(an interrupted comparison resumes where it stopped; ``fresh`` starts over). Then
``segmentation.json``, ``segmentation.md`` and, with matplotlib, ``examples.png`` (image /
ground truth / prediction / prediction of the shifted image, shifted back, for a few test
images per method) and ``consistency_vs_miou.png``.

:class:`SegmentationSettings` is the small preset ``shiftpool segment`` runs: U-Nets on the
MNIST canvases with Adam, minutes on a CPU.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shiftpool.core.checks import check_int
from shiftpool.core.errors import InputError, MissingExtraError
from shiftpool.core.io import atomic_write_json, atomic_write_text
from shiftpool.core.log import Log
from shiftpool.core.shifts import draw_offsets, shift_images
from shiftpool.harness.evaluation import (
    EVALUATION_JSON,
    SEGMENTATION_MAX_SHIFT,
    SEGMENTATION_MODES,
    SegmentationEvaluation,
    check_segmentation_modes,
    evaluate_segmentation,
    load_per_image,
)
from shiftpool.metrics.segmentation import paired_score_difference, undo_shift
from shiftpool.metrics.stats import Estimate, MeanMeter
from shiftpool.report.figures import new_figure
from shiftpool.train import inputs
from shiftpool.train.checkpoint import (
    LAST,
    check_model_builds,
    load_checkpoint,
    load_trained_model,
)
from shiftpool.train.config import CANVAS_SET, TrainConfig
from shiftpool.train.loop import train
from shiftpool.train.runtime import (
    Runtime,
    barrier,
    broadcast_object,
    setup_runtime,
    teardown_runtime,
)

__all__ = [
    "SegmentationComparison",
    "SegmentationRow",
    "SegmentationSettings",
    "compare_segmentation",
    "difference_table",
    "segmentation_table",
]

ROW_JSON = "row.json"
PER_IMAGE = "per_image.pt"
#: Test canvases drawn per method in ``examples.png``.
EXAMPLES = 3
#: ``(images, truth, prediction, prediction of the shifted image shifted back)`` of a method.
Examples = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class SegmentationSettings:
    """The ``shiftpool segment`` preset: U-Nets on the MNIST canvases, Adam, circular padding.

    Attributes:
        train_images, test_images: canvases of the two splits (at most 1,000 and 200).
        channels: U-Net channels per level.
        epochs, batch_size, lr: Adam (AdamW without weight decay) at a constant rate.
        circular: circular padding everywhere.
        max_shift: largest shift of the consistency and equivariance measurements.
        seed: seeds initialisation, batches and shifts.
        device: torch device (``auto``, ``cpu``, ``cuda``).
    """

    train_images: int = 1000
    test_images: int = 200
    channels: tuple[int, ...] = (8, 16, 32)
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-2
    circular: bool = True
    max_shift: int = 8
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("train_images", "test_images", "epochs", "batch_size", "max_shift"):
            check_int(getattr(self, name), f"shiftpool.segmentation: {name}", minimum=1)
        if not self.lr > 0:
            raise InputError(f"shiftpool.segmentation: lr must be > 0, got {self.lr!r}")

    def config(self, out_dir: str | Path = "runs/segment") -> TrainConfig:
        """The shared :class:`TrainConfig` of the preset (``downsample`` set per method).

        Example:
            >>> SegmentationSettings(epochs=2).config().replace(downsample="aps").task
            'segmentation'
        """
        return TrainConfig(
            task="segmentation", model="unet", model_options={"channels": list(self.channels)},
            circular=self.circular, dataset=CANVAS_SET, train_subset=self.train_images,
            eval_max_images=self.test_images, epochs=self.epochs, batch_size=self.batch_size,
            optimizer="adamw", lr=self.lr, weight_decay=0.0, schedule="constant", amp="off",
            channels_last=False, device=self.device, seed=self.seed, out_dir=str(out_dir),
            progress=False, tensorboard=False, eval_batch_size=max(self.batch_size, 64))


@dataclass
class SegmentationRow:
    """One method's results; estimates as ``[value, low, high]`` (95% intervals).

    With one seed the intervals are the run's (bootstrap or t over test images); with several,
    the value is the mean over seeds and the interval a t interval over seeds.
    """

    method: str
    miou: list[float]
    pixel_accuracy: list[float]
    massc: dict[str, list[float]] = field(default_factory=dict)
    logit_error: list[float] = field(default_factory=list)
    label_change: list[float] = field(default_factory=list)
    msb: list[float] | None = None
    seconds_per_epoch: float = 0.0
    seeds: list[int] = field(default_factory=list)
    params: int = 0


@dataclass
class SegmentationComparison:
    """What :func:`compare_segmentation` returns: rows, the Markdown table(s) and files written.

    Attributes:
        differences: with a baseline, ``{method: {column: [value, low, high]}}``: the method
            minus the baseline on the same test images and shifts (see
            :func:`compare_segmentation`).
    """

    rows: list[SegmentationRow]
    table: str
    files: dict[str, Path] = field(default_factory=dict)
    baseline: str | None = None
    differences: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def _triple(estimate: Estimate | None) -> list[float]:
    if estimate is None:
        return [float("nan")] * 3
    return [estimate.value, estimate.low, estimate.high]


def _run_row(method: str, seed: int, evaluation: SegmentationEvaluation, history: list[dict],
             params: int) -> SegmentationRow:
    times = [r["epoch_time_s"] for r in history]
    return SegmentationRow(
        method, _triple(evaluation.miou), _triple(evaluation.pixel_accuracy),
        {mode: _triple(e) for mode, e in evaluation.massc.items()},
        _triple(evaluation.logit_error), _triple(evaluation.label_change),
        None if evaluation.msb is None else _triple(evaluation.msb),
        statistics.fmean(times) if times else 0.0, [seed], params)


def _over_seeds(runs: Sequence[SegmentationRow]) -> SegmentationRow:
    """One row from the runs of one method: the run itself, or means with t intervals."""
    if len(runs) == 1:
        return runs[0]

    combine = _mean_over_seeds
    first = runs[0]
    return SegmentationRow(
        first.method, combine([r.miou for r in runs]),
        combine([r.pixel_accuracy for r in runs]),
        {mode: combine([r.massc[mode] for r in runs]) for mode in first.massc},
        combine([r.logit_error for r in runs]), combine([r.label_change for r in runs]),
        None if first.msb is None else combine([r.msb for r in runs if r.msb is not None]),
        statistics.fmean(r.seconds_per_epoch for r in runs), [s for r in runs for s in r.seeds],
        first.params)


def _mean_over_seeds(values: Sequence[list[float]]) -> list[float]:
    """``[mean, low, high]`` of the seeds' values (t interval over seeds)."""
    meter = MeanMeter()
    meter.update(torch.tensor([v[0] for v in values], dtype=torch.float64))
    return _triple(meter.estimate())


def _paired(method: dict[str, torch.Tensor], baseline: dict[str, torch.Tensor],
            num_classes: int, seed: int) -> dict[str, list[float]]:
    """One seed's differences, method minus baseline, paired image by image: mIoU and pixel
    accuracy (paired bootstrap over images), each mASSC, the logit error and the label change
    (t intervals of the per-image differences)."""
    miou, accuracy = paired_score_difference(method["confusion"], baseline["confusion"],
                                             num_classes, seed=seed)
    out = {"miou": _triple(miou), "pixel_accuracy": _triple(accuracy)}
    for key in method:
        if key != "confusion" and key in baseline:
            difference = method[key] - baseline[key]
            meter = MeanMeter()
            meter.update(difference[~difference.isnan()])
            out[key] = _triple(meter.estimate())
    return out


def _differences(plans: dict[tuple[str, int], TrainConfig], baseline: str,
                 num_classes: int) -> dict[str, dict[str, list[float]]]:
    """Every other method minus ``baseline``: per seed paired over images; over several seeds
    the mean of the seeds' differences with a t interval over seeds."""
    per_image = {key: load_per_image(Path(run.out_dir) / PER_IMAGE) for key, run in plans.items()}
    out: dict[str, dict[str, list[float]]] = {}
    for method in dict.fromkeys(m for m, _ in plans):
        if method == baseline:
            continue
        seeds = [seed for m, seed in plans if m == method]
        each = [_paired(per_image[(method, seed)], per_image[(baseline, seed)], num_classes,
                        seed) for seed in seeds]
        out[method] = each[0] if len(each) == 1 else {
            column: _mean_over_seeds([d[column] for d in each]) for column in each[0]}
    return out


def _settings(config: TrainConfig, modes: Sequence[str], max_shift: int) -> dict[str, Any]:
    return {"config": config.result_fields(), "modes": list(modes), "max_shift": max_shift,
            "max_images": config.eval_max_images}


def _reuse(run_dir: Path, settings: dict[str, Any]) -> SegmentationRow | None:
    if not (run_dir / PER_IMAGE).is_file():
        return None
    try:
        saved = json.loads((run_dir / ROW_JSON).read_text())
        if saved.get("settings") != settings:
            return None
        return SegmentationRow(**saved["row"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _examples(model: nn.Module, config: TrainConfig, max_shift: int) -> Examples:
    """``(images, truth, prediction, prediction of the shifted image shifted back)`` of the
    first :data:`EXAMPLES` test images, circular shifts from ``config.seed``."""
    test = inputs.subset(inputs.load_split(config, "test"), config.eval_max_images, config.seed)
    device = next(model.parameters()).device
    x, y = next(iter(inputs.eval_loader(inputs.subset(test, EXAMPLES, config.seed),
                                        config.replace(channels_last=False),
                                        Runtime(device), sharded=False)))
    generator = torch.Generator().manual_seed(config.seed)
    delta = draw_offsets(x.shape[0], (max_shift, max_shift), "circular", generator).to(device)
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1)
        back, _ = undo_shift(model(shift_images(x, delta, "circular")).argmax(1), delta,
                             "circular")
    return x[:, 0].cpu(), y.cpu(), pred.cpu(), back.cpu()


def compare_segmentation(
    config: TrainConfig,
    methods: Sequence[str],
    out_dir: str | Path | None = None,
    *,
    seeds: Sequence[int] | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    modes: Sequence[str] = SEGMENTATION_MODES,
    max_shift: int = SEGMENTATION_MAX_SHIFT,
    figures: bool = True,
    fresh: bool = False,
    log: Log | None = None,
    baseline: str | None = None,
    launcher: str = "local",
    metrics: Sequence[str] | str | None = None,
) -> SegmentationComparison:
    """Train and evaluate ``config.model`` once per method (and seed) on ``config.dataset``.

    Args:
        config: the shared settings (``task`` must be ``segmentation``); its ``downsample``,
            ``downsample_options``, ``seed`` and ``out_dir`` are set per run.
        methods: operators (see :func:`shiftpool.list_downsamples`), each once.
        out_dir: where the runs and results go (default ``config.out_dir``).
        seeds: one run per method and seed (default: ``config.seed`` alone).
        method_options: ``{method: operator options}``.
        modes, max_shift: the shifts of the consistency measurement (see
            :func:`~shiftpool.harness.evaluation.evaluate_segmentation`).
        figures: draw ``examples.png`` and ``consistency_vs_miou.png`` (needs matplotlib).
        fresh: train and evaluate every run again, ignoring earlier results.
        log: progress lines (default: none).
        baseline: a method the others are compared with: each other method minus the
            baseline on the same test images and shifts (same seed), mIoU and pixel accuracy
            with paired bootstrap intervals over images, mASSC, logit error and label change
            with t intervals of the per-image differences; with several seeds the mean of the
            seeds' differences with a t interval over seeds. A second table.
        launcher, metrics: what a classification comparison also takes; not for
            segmentation (its columns are fixed): anything but the defaults (``local``, None)
            is refused, so that a flag of ``compare`` never goes unheeded.

    Returns:
        A :class:`SegmentationComparison` (no rows on ``torchrun`` processes but rank 0).

    Example:
        >>> settings = SegmentationSettings(train_images=8, test_images=4, channels=(2, 4),
        ...                                 epochs=1, batch_size=4)
        >>> result = compare_segmentation(settings.config("/tmp/seg"), ["aps"])  # doctest: +SKIP
        >>> result.rows[0].label_change[0]  # doctest: +SKIP
        0.0
    """
    log = log or (lambda _: None)
    if config.task != "segmentation":
        raise InputError(f"shiftpool.segmentation: the shared config's task must be "
                         f"segmentation, got {config.task!r}")
    if metrics is not None:
        raise InputError("--metrics applies to classification comparisons; a segmentation "
                         "comparison measures mIoU, pixel accuracy, mASSC, equivariance error "
                         "and MSB")
    if launcher != "local":
        raise InputError(f"--launcher {launcher}: a segmentation comparison runs locally "
                         "(or under torchrun)")
    modes = check_segmentation_modes(list(modes))
    check_int(max_shift, "shiftpool.segmentation: max_shift", minimum=1)
    chosen_seeds = [config.seed] if seeds is None else list(seeds)
    options = dict(method_options or {})
    if not methods or len(set(methods)) != len(methods):
        raise InputError(f"shiftpool.segmentation: name each method once, got {list(methods)}")
    unknown = sorted(set(options) - set(methods))
    if unknown:
        raise InputError(f"shiftpool.segmentation: method options for {', '.join(unknown)}, "
                         f"which are not compared ({', '.join(methods)})")
    if not chosen_seeds or len(set(chosen_seeds)) != len(chosen_seeds):
        raise InputError(f"shiftpool.segmentation: seeds must be distinct, got {chosen_seeds}")
    if baseline is not None and baseline not in methods:
        raise InputError(f"shiftpool.segmentation: baseline {baseline!r} is not among the "
                         f"methods compared ({', '.join(methods)})")
    folder = Path(out_dir if out_dir is not None else config.out_dir)
    plans = {(method, seed): config.replace(
        downsample=method, downsample_options=dict(options.get(method, {})), seed=seed,
        out_dir=str(folder / method if seeds is None else folder / method / f"seed-{seed}"))
        for method in methods for seed in chosen_seeds}  # every config checked before training
    for run in plans.values():  # the model and its options, before anything trains
        with torch.random.fork_rng(devices=[]):
            check_model_builds(run)
    runtime = setup_runtime(config.device)
    try:
        runs = _run_all(plans, runtime, modes, max_shift, figures, fresh, log)
    finally:
        teardown_runtime(runtime)
    if not runtime.is_main:
        return SegmentationComparison([], "")
    rows = [_over_seeds(runs[m][0]) for m in methods]
    table = segmentation_table(rows)
    differences = {}
    if baseline is not None:
        num_classes = int(load_checkpoint(Path(plans[(baseline, chosen_seeds[0])].out_dir) /
                                          LAST)["model_args"]["num_classes"])
        differences = _differences(plans, baseline, num_classes)
        table += "\n\n" + difference_table(differences, baseline, len(chosen_seeds))
    folder.mkdir(parents=True, exist_ok=True)
    files = {"json": folder / "segmentation.json", "markdown": folder / "segmentation.md"}
    atomic_write_json(files["json"], {"config": config.to_dict(), "methods": list(methods),
                                      "seeds": chosen_seeds, "modes": list(modes),
                                      "max_shift": max_shift,
                                      "rows": [asdict(r) for r in rows],
                                      "baseline": baseline, "differences": differences})
    atomic_write_text(files["markdown"], table + "\n")
    if figures:
        files.update(_figures(rows, [runs[m][1] for m in methods if runs[m][1]], folder))
    return SegmentationComparison(rows, table, files, baseline, differences)


def _run_all(plans: dict[tuple[str, int], TrainConfig], runtime: Runtime, modes: Sequence[str],
             max_shift: int, figures: bool, fresh: bool, log: Log
             ) -> dict[str, tuple[list[SegmentationRow], Examples | tuple[()]]]:
    """Train (or reuse) and evaluate every run: ``{method: (rows per seed, examples)}``.

    Under ``torchrun`` every process trains; rank 0 alone evaluates and writes while the others
    wait, and rank 0 decides which runs are already done (so every process agrees)."""
    results: dict[str, tuple[list[SegmentationRow], Examples | tuple[()]]] = {}
    first_seed = {method: seed for method, seed in reversed(list(plans))}
    for (method, seed), run in plans.items():
        rows = results.setdefault(method, ([], ()))[0]
        run_dir = Path(run.out_dir)
        settings = _settings(run, modes, max_shift)
        done = None if fresh or not runtime.is_main else _reuse(run_dir, settings)
        if broadcast_object(runtime, done is not None):
            log(f"{method} (seed {seed}): already done ({run_dir / ROW_JSON})")
            if done is not None:
                rows.append(done)
                if figures and seed == first_seed[method]:
                    model, _, _ = load_trained_model(run_dir / LAST)
                    results[method] = (rows, _examples(model, run, max_shift))
            continue
        log(f"{method} (seed {seed}): training {run.model} on {run.dataset} for "
            f"{run.epochs} epoch(s), then evaluating")
        if runtime.is_main:  # the folder is finished again only once its new row.json is written
            (run_dir / ROW_JSON).unlink(missing_ok=True)
        result = train(run, resume=not fresh)
        if runtime.is_main:
            evaluation = evaluate_segmentation(result.model, run, modes=modes,
                                               max_shift=max_shift)
            atomic_write_json(run_dir / EVALUATION_JSON, evaluation.to_dict())
            evaluation.save_per_image(run_dir / PER_IMAGE)
            row = _run_row(method, seed, evaluation, result.history, result.params)
            atomic_write_json(run_dir / ROW_JSON, {"settings": settings, "row": asdict(row)})
            rows.append(row)
            if figures and seed == first_seed[method]:
                results[method] = (rows, _examples(result.model, run, max_shift))
        barrier(runtime)  # the others wait while rank 0 evaluates
    return results


def _figures(rows: Sequence[SegmentationRow], examples: Sequence[Examples],
             folder: Path) -> dict[str, Path]:
    """``examples.png`` and ``consistency_vs_miou.png``; nothing without matplotlib."""
    if len(examples) != len(rows) or not rows:
        return {}
    titles = ("image", "ground truth", "prediction", "shifted input, undone")
    n = min(EXAMPLES, len(examples[0][0]))
    try:
        fig = new_figure(8, 2 * n * len(rows))
    except MissingExtraError:
        return {}
    axes = fig.subplots(n * len(rows), 4, squeeze=False)
    for r, (row, tensors) in enumerate(zip(rows, examples, strict=True)):
        for i in range(n):
            for c, tensor in enumerate(tensors):
                ax = axes[r * n + i][c]
                cmap = "gray" if c == 0 else "tab20"
                shown = {} if c == 0 else {"vmin": 0, "vmax": 19}
                ax.imshow(tensor[i].numpy(), cmap=cmap, interpolation="nearest", **shown)
                ax.set_xticks([])
                ax.set_yticks([])
                if r * n + i == 0:
                    ax.set_title(titles[c], fontsize="small")
            axes[r * n + i][0].set_ylabel(row.method)
    paths = {"examples": folder / "examples.png"}
    fig.savefig(paths["examples"], dpi=100)
    fig = new_figure(5, 4)
    ax = fig.subplots()
    for row in rows:
        value = row.massc.get("circular", row.massc[next(iter(row.massc))])
        ax.errorbar(row.miou[0], value[0],
                    xerr=[[row.miou[0] - row.miou[1]], [row.miou[2] - row.miou[0]]],
                    yerr=[[value[0] - value[1]], [value[2] - value[0]]], fmt="o")
        ax.annotate(row.method, (row.miou[0], value[0]))
    ax.set_xlabel("mIoU (95% interval)")
    ax.set_ylabel("mASSC, " + ("circular" if "circular" in rows[0].massc else
                               next(iter(rows[0].massc))) + " shifts")
    paths["consistency_vs_miou"] = folder / "consistency_vs_miou.png"
    fig.savefig(paths["consistency_vs_miou"], dpi=100)
    return paths


def _cell(values: Sequence[float] | None, digits: int = 4) -> str:
    """A fraction with its interval, the interval clipped to [0, 1] for the table (a t
    interval over a few seeds can reach past the ends; the JSON keeps it as computed)."""
    if values is None or values[0] != values[0]:
        return "n/a"
    value, low, high = values
    if low != low:
        return f"{value:.{digits}f}"
    low, high = max(low, 0.0), min(high, 1.0)
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def difference_table(differences: dict[str, dict[str, list[float]]], baseline: str,
                     seeds: int) -> str:
    """The differences from ``baseline`` as a Markdown table, with a line saying how they pair.

    Example:
        >>> d = {"aps": {"miou": [0.1, 0.0, 0.2], "pixel_accuracy": [0.0, 0.0, 0.0],
        ...              "massc_circular": [0.01, 0.0, 0.02], "logit_error": [-1, -2, 0],
        ...              "label_change": [-0.01, -0.02, 0.0]}}
        >>> difference_table(d, "max", 1).splitlines()[4].split(" | ")[:2]
        ['| aps', '+0.1000 [+0.0000, +0.2000]']
    """
    first = next(iter(differences.values()), {})
    columns = [c for c in first if c not in ("logit_error",)]
    names = {"miou": "ΔmIoU", "pixel_accuracy": "Δpixel acc", "label_change": "Δlabel change"}
    header = ("method", *(names.get(c, "Δ" + c.replace("massc_", "mASSC ")) for c in columns))
    how = ("paired on the same test images and shifts: mIoU and pixel accuracy by bootstrap "
           "over images, the others t intervals of per-image differences" if seeds == 1 else
           f"mean over {seeds} seeds of each seed's paired difference, t interval over seeds")
    lines = [f"Differences from {baseline} (method minus {baseline}; {how}):", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, values in differences.items():
        cells = [method]
        for column in columns:
            value, low, high = values[column]
            cells.append(f"{value:+.4f}" if low != low else
                         f"{value:+.4f} [{low:+.4f}, {high:+.4f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def segmentation_table(rows: Sequence[SegmentationRow]) -> str:
    """The rows as a Markdown table (95% intervals in brackets).

    Example:
        >>> row = SegmentationRow("aps", [0.5, 0.4, 0.6], [0.9, 0.8, 1.0], {"circular": [1, 1, 1]},
        ...                       [0, 0, 0], [0, 0, 0], None, 1.5, [0])
        >>> segmentation_table([row]).splitlines()[2].split(" | ")[:2]
        ['| aps', '0.5000 [0.4000, 0.6000]']
    """
    modes = list(rows[0].massc) if rows else []
    header = ("method", "mIoU", "pixel acc", *(f"mASSC {m}" for m in modes), "equiv. error",
              "label change", "MSB", "s/epoch", "seeds")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = (r.method, _cell(r.miou), _cell(r.pixel_accuracy),
                 *(_cell(r.massc.get(m)) for m in modes),
                 f"{r.logit_error[0]:.2e}", _cell(r.label_change), _cell(r.msb, 3),
                 f"{r.seconds_per_epoch:.1f}", ",".join(map(str, r.seeds)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
