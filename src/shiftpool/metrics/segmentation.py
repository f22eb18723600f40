"""Segmentation metrics (SPEC §7): mIoU and pixel accuracy with bootstrap intervals over images,
segmentation consistency under shifts (mASSC) and equivariance error.

* :class:`SegmentationMeter` accumulates one confusion matrix per image. mIoU is computed as
  VOC does, from the confusion matrix summed over the data set: ``IoU_c = TP / (TP + FP + FN)``,
  averaged over the classes that occur (``TP + FP + FN > 0``); pixel accuracy is
  ``trace / sum``. Pixels labelled ``ignore_index`` (255) count nowhere. Intervals: percentile
  bootstrap over images (images resampled with replacement, the metric recomputed from the
  resampled sum; seeded, so reproducible).
* :func:`consistency_from_labels` / :func:`segmentation_consistency`: for each image two shifts
  ``δ1, δ2``; the predicted label maps of the two shifted images are mapped back to the
  original image's coordinates, and the fraction of the pixels where both are defined (the
  overlap) at which they agree is that image's consistency; mASSC is its mean over images
  (Student t interval). Modes as :mod:`shiftpool.core.shifts`: ``circular`` (every pixel),
  ``zero`` and ``reflect`` (the pixels that stay inside the frame under both shifts),
  ``crop`` (windows of ``crop_size`` at corners ``δ``; their overlap).
* :func:`equivariance_error`: mean ``|f(T x) - T f(x)|`` over logits and the fraction of pixels
  whose label differs, over the pixels where ``T f(x)`` is defined (all of them for circular
  and crop shifts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from shiftpool.core.errors import InputError
from shiftpool.core.shifts import check_shift_mode, draw_offsets, shift_images
from shiftpool.metrics.stats import Estimate, MeanMeter, _check_confidence

__all__ = [
    "IGNORE_INDEX",
    "EquivarianceError",
    "SegmentationMeter",
    "SegmentationScores",
    "confusion_matrices",
    "consistency_from_labels",
    "consistency_per_image",
    "equivariance_error",
    "equivariance_per_image",
    "paired_score_difference",
    "scores_from_confusion",
    "segmentation_consistency",
    "shift_equivariance",
    "undo_shift",
]

#: The label that counts nowhere (VOC's "void").
IGNORE_INDEX = 255
_WHERE = "shiftpool.metrics.segmentation"

Model = Callable[[Tensor], Tensor]


def _check_labels(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 3:
        raise InputError(f"{_WHERE}: predictions and targets must both be (N, H, W) label maps, "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.is_floating_point() or target.is_floating_point():
        raise InputError(f"{_WHERE}: label maps must be integer tensors, got {pred.dtype} and "
                         f"{target.dtype} (take logits.argmax(1) first)")


def confusion_matrices(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """One confusion matrix per image: ``(N, K, K)`` int64, rows the target, columns the prediction.

    Args:
        pred, target: ``(N, H, W)`` integer label maps.
        num_classes: ``K``; target labels must lie in ``[0, K)`` or equal ``ignore_index``.
        ignore_index: target label that counts nowhere.

    Example:
        >>> t = torch.tensor([[[0, 1], [1, 255]]])
        >>> p = torch.tensor([[[0, 1], [0, 1]]])
        >>> confusion_matrices(p, t, 2)[0].tolist()
        [[1, 0], [1, 1]]
    """
    _check_labels(pred, target)
    if num_classes < 1:
        raise InputError(f"{_WHERE}: num_classes must be >= 1, got {num_classes}")
    n = pred.shape[0]
    valid = target != ignore_index
    bad_target = valid & ((target < 0) | (target >= num_classes))
    bad_pred = (pred < 0) | (pred >= num_classes)
    if bool(bad_target.any()) or bool((bad_pred & valid).any()):
        raise InputError(f"{_WHERE}: labels must lie in [0, {num_classes}) or be the ignore "
                         f"label {ignore_index} (targets only)")
    index = (target * num_classes + pred).clamp(0, num_classes * num_classes - 1)
    index = index + torch.arange(n, device=pred.device).view(n, 1, 1) * num_classes**2
    counts = torch.bincount(index[valid], minlength=n * num_classes**2)
    return counts.view(n, num_classes, num_classes)


def scores_from_confusion(confusion: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(miou, pixel_accuracy, per_class_iou)`` of summed confusion matrices ``(..., K, K)``.

    Classes with ``TP + FP + FN = 0`` have IoU ``nan`` and are left out of the mean.

    Example:
        >>> m, acc, iou = scores_from_confusion(torch.tensor([[1, 0], [1, 1]]))
        >>> round(m.item(), 4), round(acc.item(), 4), iou.tolist()
        (0.5, 0.6667, [0.5, 0.5])
    """
    c = confusion.double()
    tp = torch.diagonal(c, dim1=-2, dim2=-1)
    union = c.sum(-1) + c.sum(-2) - tp
    iou = tp / union  # nan where the class never occurs
    present = union > 0
    miou = torch.where(present, iou, 0).sum(-1) / present.sum(-1)
    accuracy = tp.sum(-1) / c.sum((-2, -1))
    return miou, accuracy, iou


@dataclass(frozen=True)
class SegmentationScores:
    """mIoU and pixel accuracy with bootstrap intervals, and the IoU of each class.

    Attributes:
        miou, pixel_accuracy: estimates (method ``"bootstrap"``; ``n`` = images).
        class_iou: IoU per class (``nan`` for classes absent from targets and predictions).
    """

    miou: Estimate
    pixel_accuracy: Estimate
    class_iou: tuple[float, ...]


class SegmentationMeter:
    """Accumulates per-image confusion matrices; reports mIoU and pixel accuracy.

    Args:
        num_classes: ``K``.
        ignore_index: target label that counts nowhere (255).

    Example:
        >>> meter = SegmentationMeter(2)
        >>> meter.update(torch.tensor([[[0, 1], [0, 1]]]), torch.tensor([[[0, 1], [1, 1]]]))
        >>> scores = meter.compute()
        >>> round(scores.pixel_accuracy.value, 2), round(scores.miou.value, 4)
        (0.75, 0.5833)
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        if not isinstance(num_classes, int) or num_classes < 1:
            raise InputError(f"{_WHERE}: num_classes must be an int >= 1, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._batches: list[Tensor] = []

    @property
    def n(self) -> int:
        """Images seen so far."""
        return sum(b.shape[0] for b in self._batches)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch: ``pred`` labels ``(N, H, W)`` or logits ``(N, K, H, W)``; ``target``
        ``(N, H, W)``."""
        if pred.is_floating_point() and pred.dim() == 4:
            pred = pred.argmax(1)
        confusion = confusion_matrices(pred, target, self.num_classes, self.ignore_index)
        self._batches.append(confusion.flatten(1).cpu())

    def per_image(self) -> Tensor:
        """Every image's confusion matrix so far, flattened: int64 ``(N, K * K)``."""
        if not self._batches:
            return torch.zeros(0, self.num_classes**2, dtype=torch.int64)
        return torch.cat(self._batches)

    def compute(
        self, confidence: float = 0.95, resamples: int = 1000, seed: int = 0
    ) -> SegmentationScores:
        """Scores with percentile bootstrap intervals over images (``resamples`` draws)."""
        _check_confidence(confidence)
        if not self._batches:
            raise InputError(f"{_WHERE}: no images were added")
        per_image = torch.cat(self._batches).double()  # (N, K * K)
        n, k = per_image.shape[0], self.num_classes
        miou, accuracy, iou = scores_from_confusion(per_image.sum(0).view(k, k))
        generator = torch.Generator().manual_seed(seed)
        draws = torch.randint(0, n, (resamples, n), generator=generator)
        weights = torch.zeros(resamples, n, dtype=torch.float64)
        weights.scatter_add_(1, draws, torch.ones(resamples, n, dtype=torch.float64))
        boot_miou, boot_acc, _ = scores_from_confusion((weights @ per_image).view(-1, k, k))
        return SegmentationScores(
            _bootstrap(float(miou), boot_miou, n, confidence),
            _bootstrap(float(accuracy), boot_acc, n, confidence),
            tuple(float(v) for v in iou),
        )


def paired_score_difference(
    confusion_a: Tensor, confusion_b: Tensor, num_classes: int, confidence: float = 0.95,
    resamples: int = 1000, seed: int = 0,
) -> tuple[Estimate, Estimate]:
    """``(mIoU_a - mIoU_b, pixel_acc_a - pixel_acc_b)`` of two models on the same images, with
    paired percentile bootstrap intervals (each draw resamples images once, for both models).

    Args:
        confusion_a, confusion_b: per-image confusion matrices ``(N, K * K)`` of the same ``N``
            images in the same order (:meth:`SegmentationMeter.per_image`).

    Example:
        >>> a = torch.tensor([[2, 0, 0, 2], [1, 1, 0, 2]])  # 2 images, K = 2
        >>> d_miou, d_acc = paired_score_difference(a, a, 2)
        >>> d_miou.value, d_acc.value, d_acc.low, d_acc.high
        (0.0, 0.0, 0.0, 0.0)
    """
    _check_confidence(confidence)
    if confusion_a.shape != confusion_b.shape or confusion_a.dim() != 2 or (
            confusion_a.shape[1] != num_classes**2):
        raise InputError(f"{_WHERE}: paired confusion matrices must both be (N, K * K) with "
                         f"K = {num_classes}, got {tuple(confusion_a.shape)} and "
                         f"{tuple(confusion_b.shape)}")
    n, k = confusion_a.shape[0], num_classes
    a, b = confusion_a.double(), confusion_b.double()
    miou_a, acc_a, _ = scores_from_confusion(a.sum(0).view(k, k))
    miou_b, acc_b, _ = scores_from_confusion(b.sum(0).view(k, k))
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, max(n, 1), (resamples, n), generator=generator)
    weights = torch.zeros(resamples, n, dtype=torch.float64)
    weights.scatter_add_(1, draws, torch.ones(resamples, n, dtype=torch.float64))
    boot_a = scores_from_confusion((weights @ a).view(-1, k, k))
    boot_b = scores_from_confusion((weights @ b).view(-1, k, k))
    return (_bootstrap(float(miou_a - miou_b), boot_a[0] - boot_b[0], n, confidence),
            _bootstrap(float(acc_a - acc_b), boot_a[1] - boot_b[1], n, confidence))


def _bootstrap(value: float, draws: Tensor, n: int, confidence: float) -> Estimate:
    draws = draws[~draws.isnan()]
    if n < 2 or draws.numel() == 0:
        return Estimate(value, float("nan"), float("nan"), n, "bootstrap", confidence)
    tail = (1 - confidence) / 2
    low, high = torch.quantile(draws, torch.tensor([tail, 1 - tail], dtype=draws.dtype))
    return Estimate(value, float(low), float(high), n, "bootstrap", confidence)


def undo_shift(
    labels: Tensor,
    offsets: Tensor,
    mode: str,
    image_size: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Map label maps of shifted images back to the original image's coordinates.

    Args:
        labels: ``(N, h, w)`` integer maps predicted on ``shift_images(x, offsets, mode)``.
        offsets: ``(N, 2)`` or ``(2,)`` the shifts that were applied.
        mode: ``circular``, ``zero``, ``reflect`` or ``crop``.
        image_size: the original ``(H, W)``; required for ``crop`` (else ``(h, w)``).

    Returns:
        ``(labels, defined)``: ``(N, H, W)`` labels in original coordinates and a bool mask of
        the pixels they are defined at (all for ``circular``; those whose content stayed inside
        the frame for ``zero``/``reflect``; the window for ``crop``).

    Example:
        >>> lab = torch.tensor([[[5, 1, 2, 3]]])
        >>> back, ok = undo_shift(lab, torch.tensor([0, 1]), "zero")
        >>> back.tolist(), ok.tolist()
        ([[[1, 2, 3, 0]]], [[[True, True, True, False]]])
    """
    check_shift_mode(mode)
    if labels.dim() != 3:
        raise InputError(f"{_WHERE}: label maps must be (N, H, W), got {tuple(labels.shape)}")
    n, h, w = labels.shape
    offsets = torch.as_tensor(offsets).long()
    offsets = offsets.expand(n, 2) if offsets.shape == (2,) else offsets
    maps = labels[:, None]
    ones = torch.ones_like(maps, dtype=torch.bool)
    if mode == "crop":
        if image_size is None:
            raise InputError(f"{_WHERE}: mode 'crop' needs the original image_size")
        big_h, big_w = image_size
        if big_h < h or big_w < w:
            raise InputError(f"{_WHERE}: image_size {tuple(image_size)} is smaller than the "
                             f"windows {(h, w)}")
        pad = (0, big_w - w, 0, big_h - h)
        maps = torch.nn.functional.pad(maps, pad)
        ones = torch.nn.functional.pad(ones, pad)
        back, defined = shift_images(maps, offsets, "zero"), shift_images(ones, offsets, "zero")
    elif mode == "circular":
        back, defined = shift_images(maps, -offsets, "circular"), ones
    else:
        back, defined = shift_images(maps, -offsets, "zero"), shift_images(ones, -offsets, "zero")
    return back[:, 0], defined[:, 0]


def consistency_from_labels(
    labels1: Tensor,
    labels2: Tensor,
    offsets1: Tensor,
    offsets2: Tensor,
    mode: str,
    image_size: tuple[int, int] | None = None,
) -> Tensor:
    """Per-image consistency: agreement of two shifted predictions on their overlap.

    Args:
        labels1, labels2: ``(N, h, w)`` labels predicted on the images shifted by ``offsets1``
            and ``offsets2`` (``(N, 2)``).
        mode, image_size: as :func:`undo_shift`.

    Returns:
        ``(N,)`` float64 fraction of the overlap's pixels where the labels agree (``nan`` for
        an empty overlap).

    Example:
        >>> a = torch.tensor([[[0, 1, 1, 0]]])
        >>> b = torch.tensor([[[1, 1, 0, 0]]])  # the same map shifted left by one
        >>> consistency_from_labels(a, b, torch.tensor([[0, 0]]), torch.tensor([[0, -1]]),
        ...                         "circular").tolist()
        [1.0]
    """
    back1, ok1 = undo_shift(labels1, offsets1, mode, image_size)
    back2, ok2 = undo_shift(labels2, offsets2, mode, image_size)
    overlap = ok1 & ok2
    agree = (overlap & (back1 == back2)).flatten(1).sum(1).double()
    return agree / overlap.flatten(1).sum(1).double()


def _predict(model: Model, x: Tensor) -> Tensor:
    with torch.no_grad():
        logits = model(x)
    if logits.dim() != 4 or logits.shape[0] != x.shape[0] or logits.shape[-2:] != x.shape[-2:]:
        raise InputError(f"{_WHERE}: the model must map (N, C, H, W) to (N, K, H, W) logits, "
                         f"got {tuple(logits.shape)} for {tuple(x.shape)}")
    return logits


def segmentation_consistency(
    model: Model,
    batches: Sequence[Tensor] | Tensor,
    mode: str = "circular",
    max_shift: tuple[int, int] = (8, 8),
    crop_size: tuple[int, int] | None = None,
    seed: int = 0,
    fill: float = 0.0,
    confidence: float = 0.95,
) -> Estimate:
    """mASSC: mean over images of the agreement of two randomly shifted predictions.

    Args:
        model: maps ``(N, C, H, W)`` to logits ``(N, K, H, W)`` (run under ``no_grad``; put it
            in eval mode first).
        batches: an image batch ``(N, C, H, W)`` or a sequence of them.
        mode: ``circular``, ``zero``, ``reflect`` or ``crop``.
        max_shift: ``|dy| <= max_shift[0]``, ``|dx| <= max_shift[1]`` (crop: corners in
            ``[0, max_shift)``), two independent draws per image.
        crop_size: window size for ``crop``.
        seed: seeds the offsets (CPU generator, same on every device).
        fill: what ``zero`` shifts bring in.

    Returns:
        An :class:`~shiftpool.metrics.stats.Estimate` (t interval over images).

    Example:
        >>> net = torch.nn.Conv2d(1, 3, 3, padding=1, padding_mode="circular")
        >>> segmentation_consistency(net, torch.randn(4, 1, 8, 8), "circular", (3, 3)).value
        1.0
    """
    values = consistency_per_image(model, batches, mode, max_shift, crop_size, seed, fill)
    meter = MeanMeter()
    meter.update(values[~values.isnan()])
    return meter.estimate(confidence)


def consistency_per_image(
    model: Model,
    batches: Sequence[Tensor] | Tensor,
    mode: str = "circular",
    max_shift: tuple[int, int] = (8, 8),
    crop_size: tuple[int, int] | None = None,
    seed: int = 0,
    fill: float = 0.0,
) -> Tensor:
    """Each image's consistency as :func:`segmentation_consistency` draws and measures it:
    float64 ``(N,)`` over every image of ``batches`` in order (``nan`` for an empty overlap).

    The same ``seed`` gives the same shifts of the same images to every model, so two models'
    values pair image by image.

    Example:
        >>> net = torch.nn.Conv2d(1, 3, 3, padding=1, padding_mode="circular")
        >>> consistency_per_image(net, [torch.randn(2, 1, 8, 8)] * 2, max_shift=(3, 3)).tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    check_shift_mode(mode)
    if isinstance(batches, Tensor):
        batches = [batches]
    generator = torch.Generator().manual_seed(seed)
    found: list[Tensor] = []
    for x in batches:
        n = x.shape[0]
        offsets = [draw_offsets(n, max_shift, mode, generator) for _ in range(2)]
        labels = []
        for delta in offsets:
            if mode == "crop":
                shifted = shift_images(x, delta, mode, crop_size=crop_size)
            else:
                shifted = shift_images(x, delta, mode, fill=fill)
            labels.append(_predict(model, shifted).argmax(1))
        size = (x.shape[-2], x.shape[-1])
        found.append(consistency_from_labels(labels[0], labels[1], offsets[0].to(x.device),
                                             offsets[1].to(x.device), mode, size).cpu())
    return torch.cat(found) if found else torch.zeros(0, dtype=torch.float64)


@dataclass(frozen=True)
class EquivarianceError:
    """Mean ``|f(T x) - T f(x)|`` over logits and the fraction of pixels whose label changes."""

    logit_error: Estimate
    label_change: Estimate


def equivariance_error(
    model: Model,
    x: Tensor,
    offsets: Tensor,
    mode: str = "circular",
    crop_size: tuple[int, int] | None = None,
    confidence: float = 0.95,
) -> EquivarianceError:
    """Equivariance error of ``model`` at ``x`` under the shifts ``offsets``.

    Compares ``f(T x)`` with ``T f(x)`` on the pixels where the shifted content comes from the
    image (all pixels for ``circular`` and ``crop``). Per image: the mean absolute logit
    difference and the fraction of pixels whose argmax differs; means over images with t
    intervals.

    Args:
        model: maps ``(N, C, H, W)`` to logits ``(N, K, H, W)``.
        x: ``(N, C, H, W)`` images.
        offsets: ``(N, 2)`` or ``(2,)`` shifts.
        mode, crop_size: as :func:`shiftpool.core.shifts.shift_images`.

    Example:
        >>> net = torch.nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular")
        >>> err = equivariance_error(net, torch.randn(2, 1, 6, 6), torch.tensor([1, 2]))
        >>> err.logit_error.value < 1e-6, err.label_change.value
        (True, 0.0)
    """
    check_shift_mode(mode)
    logit_error, label_change = _equivariance_per_image(model, x, offsets, mode, crop_size)
    meters = (MeanMeter(), MeanMeter())
    meters[0].update(logit_error)
    meters[1].update(label_change)
    return EquivarianceError(meters[0].estimate(confidence), meters[1].estimate(confidence))


def _equivariance_per_image(model: Model, x: Tensor, offsets: Tensor, mode: str,
                            crop_size: tuple[int, int] | None) -> tuple[Tensor, Tensor]:
    """Per image (those with a defined pixel): mean ``|f(T x) - T f(x)|`` and the fraction of
    labels that change, float64 ``(n,)`` each."""
    kwargs = {"crop_size": crop_size} if mode == "crop" else {}
    logits = _predict(model, x)
    shifted_logits = _predict(model, shift_images(x, offsets, mode, **kwargs))
    moved = shift_images(logits, offsets, mode, **kwargs)
    if mode in ("zero", "reflect"):
        ones = torch.ones_like(logits[:, :1], dtype=torch.bool)
        defined = shift_images(ones, offsets, "zero")[:, 0]
    else:
        defined = torch.ones_like(moved[:, 0], dtype=torch.bool)
    count = defined.flatten(1).sum(1).double()
    diff = (shifted_logits - moved).abs().mean(1).double()
    logit_error = (diff * defined).flatten(1).sum(1) / count
    changed = (shifted_logits.argmax(1) != moved.argmax(1)) & defined
    label_change = changed.flatten(1).sum(1).double() / count
    return logit_error[count > 0], label_change[count > 0]


def shift_equivariance(
    model: Model,
    batches: Sequence[Tensor] | Tensor,
    mode: str = "circular",
    max_shift: tuple[int, int] = (8, 8),
    crop_size: tuple[int, int] | None = None,
    seed: int = 0,
    confidence: float = 0.95,
) -> EquivarianceError:
    """:func:`equivariance_error` over batches, one random shift per image (drawn as
    :func:`segmentation_consistency` draws them, from a CPU generator seeded with ``seed``);
    means and t intervals over every image.

    Example:
        >>> net = torch.nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular")
        >>> err = shift_equivariance(net, [torch.randn(2, 1, 6, 6)] * 2, max_shift=(2, 2))
        >>> err.logit_error.n, err.label_change.value
        (4, 0.0)
    """
    logit_error, label_change = equivariance_per_image(model, batches, mode, max_shift,
                                                       crop_size, seed)
    meters = (MeanMeter(), MeanMeter())
    meters[0].update(logit_error)
    meters[1].update(label_change)
    return EquivarianceError(meters[0].estimate(confidence), meters[1].estimate(confidence))


def equivariance_per_image(
    model: Model,
    batches: Sequence[Tensor] | Tensor,
    mode: str = "circular",
    max_shift: tuple[int, int] = (8, 8),
    crop_size: tuple[int, int] | None = None,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Each image's ``(logit error, label change)`` as :func:`shift_equivariance` draws and
    measures them: float64 ``(N,)`` each, images in order (those with a defined pixel).

    Example:
        >>> net = torch.nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular")
        >>> equivariance_per_image(net, torch.randn(3, 1, 6, 6), max_shift=(2, 2))[1].tolist()
        [0.0, 0.0, 0.0]
    """
    check_shift_mode(mode)
    if isinstance(batches, Tensor):
        batches = [batches]
    generator = torch.Generator().manual_seed(seed)
    errors: list[Tensor] = []
    changes: list[Tensor] = []
    for x in batches:
        offsets = draw_offsets(x.shape[0], max_shift, mode, generator).to(x.device)
        logit_error, label_change = _equivariance_per_image(model, x, offsets, mode, crop_size)
        errors.append(logit_error.cpu())
        changes.append(label_change.cpu())
    empty = torch.zeros(0, dtype=torch.float64)
    return (torch.cat(errors) if errors else empty), (torch.cat(changes) if changes else empty)
