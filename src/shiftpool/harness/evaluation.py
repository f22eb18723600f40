"""Evaluation of trained models: classifiers under one invariance protocol
(``shiftpool.metrics``), segmentation models by :func:`evaluate_segmentation`.

Every evaluation here runs in float32: the model's floating-point weights in float32 and
autocast off, whatever context the caller holds. Training's end-of-epoch test accuracy is
measured the same way, so a checkpoint has one test accuracy.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shiftpool.core.checks import check_int
from shiftpool.core.errors import InputError
from shiftpool.core.io import atomic_write
from shiftpool.core.shifts import SHIFT_MODES, check_shift_mode
from shiftpool.metrics.msb import msb_probe
from shiftpool.metrics.segmentation import (
    SegmentationMeter,
    consistency_per_image,
    equivariance_per_image,
)
from shiftpool.metrics.stats import Estimate, MeanMeter
from shiftpool.train import inputs
from shiftpool.train.checkpoint import load_trained_model
from shiftpool.train.config import TrainConfig
from shiftpool.train.runtime import Runtime, resolve_device

# What ``compare`` measures unless told otherwise: the TIPS paper's columns, MSB and the
# accuracy-vs-diagonal-shift curve (one forward pass per diagonal shift and mode).
COMPARE_METRICS: tuple[str, ...] = ("accuracy", "consistency", "fidelity", "msb", "diagonal")

#: What a run folder of ``compare``, a study or a segmentation comparison keeps its evaluation in.
EVALUATION_JSON = "evaluation.json"

#: The one precision of every evaluation in the harness.
EVAL_DTYPE = torch.float32


def evaluate_model(
    model: nn.Module,
    config: TrainConfig,
    *,
    metrics: str | list[str] | tuple[str, ...] | None = None,
    protocol: str | None = None,
    max_images: int | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    per_image: bool = False,
    **overrides: Any,
) -> Any:
    """Run :func:`shiftpool.metrics.evaluate` on the test split of ``config.dataset``.

    ``metrics`` may be ``"all"``. Arguments left as ``None`` come from ``config``
    (``eval_metrics``, ``eval_protocol``, ``eval_max_images``, ``device``, ``progress``), and
    the metrics then from the protocol; offsets are seeded with ``config.seed``, so every method
    of a comparison sees the same shifts of the same images (``per_image=True`` keeps each
    image's outcome, see :class:`shiftpool.metrics.PerImage`). The protocol alone decides the
    shifts, fill included: the same name gives the same numbers as
    ``shiftpool.metrics.evaluate`` on the same batches (the test set's mean and std are passed
    on for ``fill="black"``).

    Precision: float32. The model is moved to the device and its floating-point weights to
    float32 (a trained model's already are), and autocast is switched off for the evaluation
    even inside a caller's ``torch.autocast`` block. The model runs in eval mode and gets its
    train/eval modes back afterwards.

    Returns:
        A :class:`shiftpool.metrics.EvaluationResult`.

    Example:
        >>> import shiftpool
        >>> config = TrainConfig(model="simple_cnn", dataset="mnist5k", eval_max_images=100)
        >>> net = shiftpool.create_model("simple_cnn", in_channels=1)
        >>> evaluate_model(net, config, progress=False).n  # doctest: +SKIP
        100
    """
    import shiftpool.metrics as smetrics

    if config.task != "classification":
        raise InputError(f"shiftpool.evaluate: {config.model!r} was trained for {config.task}: "
                         "evaluate it with evaluate_segmentation")
    target = resolve_device(config.device) if device is None else torch.device(device)
    model = model.to(target, EVAL_DTYPE)
    limit = config.eval_max_images if max_images is None else max_images
    test_set = inputs.subset(inputs.load_split(config, "test"), limit, config.seed)
    loader = inputs.eval_loader(test_set, config, Runtime(target), sharded=False)
    chosen = metrics if metrics is not None else config.eval_metrics
    with _without_autocast(target):
        return smetrics.evaluate(
            model,
            loader,
            metrics=None if not chosen else chosen if isinstance(chosen, str) else tuple(chosen),
            protocol=protocol or config.eval_protocol,
            device=target,
            seed=config.seed,
            progress=config.progress if progress is None else progress,
            per_image=per_image,
            normalization=(test_set.mean, test_set.std),
            **overrides,
        )


def _without_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``device``'s type (and on CPU, where inputs start)."""
    stack = contextlib.ExitStack()
    for kind in dict.fromkeys(("cpu", device.type)):
        if kind in ("cpu", "cuda"):
            stack.enter_context(torch.autocast(device_type=kind, enabled=False))
    return stack


def evaluate_checkpoint(
    path: str | Path, *, data_dir: str | None = None, **kwargs: Any
) -> tuple[Any, TrainConfig]:
    """Load the model of checkpoint ``path`` and evaluate it: :func:`evaluate_model` for a
    classifier, :func:`evaluate_segmentation` for a segmentation run (``kwargs`` go to it).

    Returns:
        ``(EvaluationResult or SegmentationEvaluation, the run's TrainConfig)``.
    """
    model, config, _ = load_trained_model(path)
    if data_dir is not None:
        config = config.replace(data_dir=data_dir)
    if config.task == "segmentation":
        return evaluate_segmentation(model, config, **kwargs), config
    return evaluate_model(model, config, **kwargs), config


#: The shifts of a segmentation evaluation's mASSC (each one column).
SEGMENTATION_MODES: tuple[str, ...] = SHIFT_MODES  # circular, zero, reflect, crop
#: The largest shift of a segmentation evaluation unless told otherwise (a quarter of the
#: MNIST canvases' 32 pixels).
SEGMENTATION_MAX_SHIFT = 8


@dataclass
class SegmentationEvaluation:
    """What :func:`evaluate_segmentation` measures, each an estimate with its 95% interval.

    Attributes:
        n: test images.
        miou, pixel_accuracy: bootstrap intervals over images.
        class_iou: IoU per class (``nan`` for classes absent from targets and predictions).
        massc: ``{mode: mASSC}`` (t intervals over images).
        logit_error, label_change: equivariance error under circular shifts: mean
            ``|f(T x) - T f(x)|`` over logits, fraction of pixels whose label changes.
        msb: maximum-sampling bias, the per-image mean over the model's downsampling layers
            (None for a model without any).
        max_shift: the largest shift of the consistency and equivariance measurements.
        seconds: wall time.
        per_image: each test image's values, in test-set order, for paired comparisons of
            models on the same images and shifts: ``confusion`` (int64 ``(N, K * K)``),
            ``massc_<mode>``, ``logit_error``, ``label_change`` (float64 ``(N,)``; consistency
            ``nan`` where two shifted frames do not overlap).
    """

    n: int
    miou: Estimate
    pixel_accuracy: Estimate
    class_iou: tuple[float, ...]
    massc: dict[str, Estimate] = field(default_factory=dict)
    logit_error: Estimate | None = None
    label_change: Estimate | None = None
    msb: Estimate | None = None
    max_shift: int = SEGMENTATION_MAX_SHIFT
    seconds: float = 0.0
    per_image: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def save_per_image(self, path: str | Path) -> Path:
        """Write :attr:`per_image` to ``path`` (``torch.save``, atomically); read it back with
        :func:`load_per_image`."""
        tensors = {key: value.cpu() for key, value in self.per_image.items()}
        return atomic_write(path, lambda handle: torch.save(tensors, handle))

    def summary(self) -> dict[str, float]:
        """The headline numbers: ``miou``, ``pixel_acc``, ``massc_<mode>``, ``equiv_error``,
        ``label_change``, ``msb`` (those measured)."""
        out = {"miou": self.miou.value, "pixel_acc": self.pixel_accuracy.value}
        out.update({f"massc_{mode}": e.value for mode, e in self.massc.items()})
        if self.logit_error is not None and self.label_change is not None:
            out["equiv_error"] = self.logit_error.value
            out["label_change"] = self.label_change.value
        if self.msb is not None:
            out["msb"] = self.msb.value
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every estimate as its dict (``nan`` as None)."""
        def estimate(e: Estimate | None) -> dict[str, Any] | None:
            return None if e is None else e.to_dict()

        return {
            "task": "segmentation", "n": self.n, "max_shift": self.max_shift,
            "seconds": self.seconds, "summary": self.summary(),
            "miou": estimate(self.miou), "pixel_accuracy": estimate(self.pixel_accuracy),
            "class_iou": [v if v == v else None for v in self.class_iou],
            "massc": {mode: estimate(e) for mode, e in self.massc.items()},
            "logit_error": estimate(self.logit_error),
            "label_change": estimate(self.label_change), "msb": estimate(self.msb),
        }


def check_segmentation_modes(modes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``modes`` if each is a shift mode (``circular``, ``zero``, ``reflect``, ``crop``)."""
    if not modes:
        raise InputError(f"shiftpool.evaluate: name at least one shift mode of "
                         f"{', '.join(SHIFT_MODES)}")
    for mode in modes:
        check_shift_mode(mode)
    return tuple(modes)


def load_per_image(path: str | Path) -> dict[str, torch.Tensor]:
    """What :meth:`SegmentationEvaluation.save_per_image` wrote."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _estimate(values: torch.Tensor) -> Estimate:
    meter = MeanMeter()
    meter.update(values[~values.isnan()])
    return meter.estimate()


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    config: TrainConfig,
    *,
    modes: tuple[str, ...] | list[str] = SEGMENTATION_MODES,
    max_shift: int = SEGMENTATION_MAX_SHIFT,
    max_images: int | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
) -> SegmentationEvaluation:
    """mIoU and pixel accuracy (bootstrap intervals over images), mASSC under each of
    ``modes``, the equivariance error under circular shifts and MSB of a segmentation model
    on the test split of ``config.dataset``.

    Shifts are drawn from ``seed`` (default ``config.seed``): every model of a comparison sees
    the same shifts of the same images. ``crop`` takes windows of ``H - max_shift`` by
    ``W - max_shift`` at corners in ``[0, max_shift)``. Precision, device and modes as
    :func:`evaluate_model` (float32, autocast off, eval mode restored after).

    Example:
        >>> import shiftpool
        >>> config = TrainConfig(task="segmentation", model="unet", dataset="mnist-canvas")
        >>> net = shiftpool.create_model("unet", num_classes=11, in_channels=1, channels=(2, 4))
        >>> evaluate_segmentation(net, config, max_images=4).n  # doctest: +SKIP
        4
    """
    if config.task != "segmentation":
        raise InputError(f"shiftpool.evaluate: model {config.model!r} was trained for "
                         f"{config.task}, not segmentation")
    modes = check_segmentation_modes(modes)
    check_int(max_shift, "shiftpool.evaluate: max_shift", minimum=1)
    start = time.perf_counter()
    target = resolve_device(config.device) if device is None else torch.device(device)
    model = model.to(target, EVAL_DTYPE)
    limit = config.eval_max_images if max_images is None else max_images
    seed = config.seed if seed is None else seed
    test_set = inputs.subset(inputs.load_split(config, "test"), limit, config.seed)
    loader = inputs.eval_loader(test_set, config, Runtime(target), sharded=False)
    was_training = model.training
    model.eval()
    try:
        with _without_autocast(target):
            batches = list(loader)
            meter = SegmentationMeter(test_set.num_classes)
            probe = msb_probe(model)
            with probe:
                for images, masks in batches:
                    with probe.recording():
                        logits = model(images)
                    meter.update(logits, masks)
            scores = meter.compute(seed=seed)
            images = [x for x, _ in batches]
            height, width = images[0].shape[-2:]
            shift = (max_shift, max_shift)
            crop = (height - max_shift, width - max_shift)
            if "crop" in modes and min(crop) < 1:
                raise InputError(f"shiftpool.evaluate: max_shift {max_shift} leaves no crop "
                                 f"window in {height}x{width} images")
            per_image = {"confusion": meter.per_image()}
            for mode in modes:
                per_image[f"massc_{mode}"] = consistency_per_image(
                    model, images, mode, shift, crop_size=crop if mode == "crop" else None,
                    seed=seed)
            per_image["logit_error"], per_image["label_change"] = equivariance_per_image(
                model, images, "circular", shift, seed=seed)
            msb = probe.estimates().get("mean", {}).get("msb")
    finally:
        model.train(was_training)
    return SegmentationEvaluation(
        n=len(test_set), miou=scores.miou, pixel_accuracy=scores.pixel_accuracy,
        class_iou=scores.class_iou,
        massc={mode: _estimate(per_image[f"massc_{mode}"]) for mode in modes},
        logit_error=_estimate(per_image["logit_error"]),
        label_change=_estimate(per_image["label_change"]), msb=msb, max_shift=max_shift,
        seconds=time.perf_counter() - start, per_image=per_image)
