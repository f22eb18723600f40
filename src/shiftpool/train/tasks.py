"""What differs between the tasks a run learns: the loss, what a step counts, the test metrics.

The training loop is one loop for every task (:mod:`shiftpool.train.loop`); the data side
(batch shapes, augmentation) is :mod:`shiftpool.train.inputs`. A :class:`Task` holds the rest:

- classification: batches of images ``(N, C, H, W)`` and labels ``(N,)``; cross-entropy
  (with label smoothing); a step counts images; ``train_acc`` is accuracy; each evaluation
  gives ``test_loss`` and ``test_acc``.
- segmentation: images ``(N, C, H, W)`` and masks ``(N, H, W)``; per-pixel cross-entropy with
  ``ignore_index`` 255 (and label smoothing); a step counts labelled pixels; ``train_acc`` and
  ``test_acc`` are pixel accuracies, and each evaluation adds ``test_miou``.

Test metrics are sums all-reduced over processes (a confusion matrix for mIoU), so a sharded
evaluation under ``torchrun`` counts every test image exactly once, as one process does.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from shiftpool.metrics.segmentation import IGNORE_INDEX, scores_from_confusion
from shiftpool.train.config import TrainConfig
from shiftpool.train.runtime import Runtime, all_reduce_sum

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class Task:
    """Classification: one label per image (the base every task refines)."""

    name = "classification"

    def criterion(self, config: TrainConfig) -> nn.Module:
        """The training loss of ``(logits, labels)``."""
        return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def batch_counts(self, logits: torch.Tensor, labels: torch.Tensor
                     ) -> tuple[torch.Tensor, int | torch.Tensor]:
        """``(correct, units)`` of a batch: the units the loss averages over and how many of
        them the argmax gets right (images here)."""
        return (logits.detach().argmax(1) == labels).sum(), labels.numel()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Batches, runtime: Runtime) -> dict[str, float]:
        """``{"test_loss", "test_acc"}`` of ``model`` over ``loader``, summed over processes."""
        totals = torch.zeros(3, dtype=torch.float64, device=runtime.device)
        for images, labels in loader:
            logits = model(images).float()
            totals[0] += F.cross_entropy(logits, labels, reduction="sum").double()
            totals[1] += (logits.argmax(1) == labels).sum()
            totals[2] += labels.numel()
        totals = all_reduce_sum(runtime, totals)
        count = max(1.0, totals[2].item())
        return {"test_loss": totals[0].item() / count, "test_acc": totals[1].item() / count}


class SegmentationTask(Task):
    """Segmentation: one label per pixel, 255 counting nowhere.

    Example:
        >>> task = SegmentationTask(num_classes=2)
        >>> net = nn.Conv2d(1, 2, 1)
        >>> masks = torch.tensor([[[0, 1], [1, 255]]])
        >>> row = task.evaluate(net, [(torch.randn(1, 1, 2, 2), masks)],
        ...                     Runtime(torch.device("cpu")))
        >>> sorted(row), 0.0 <= row["test_miou"] <= 1.0
        (['test_acc', 'test_loss', 'test_miou'], True)
    """

    name = "segmentation"

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def criterion(self, config: TrainConfig) -> nn.Module:
        return nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX,
                                   label_smoothing=config.label_smoothing)

    def batch_counts(self, logits: torch.Tensor, labels: torch.Tensor
                     ) -> tuple[torch.Tensor, int | torch.Tensor]:
        labelled = labels != IGNORE_INDEX
        correct = ((logits.detach().argmax(1) == labels) & labelled).sum()
        return correct, labelled.sum()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Batches, runtime: Runtime) -> dict[str, float]:
        """``{"test_loss", "test_acc", "test_miou"}``: mean per-pixel cross-entropy, pixel
        accuracy and mIoU (VOC's, from the confusion matrix summed over every image and
        process)."""
        k = self.num_classes
        loss = torch.zeros(1, dtype=torch.float64, device=runtime.device)
        confusion = torch.zeros(k * k, dtype=torch.float64, device=runtime.device)
        for images, masks in loader:
            logits = model(images).float()
            loss += F.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX,
                                    reduction="sum").double()
            labelled = masks != IGNORE_INDEX
            index = masks[labelled] * k + logits.argmax(1)[labelled]
            confusion += torch.bincount(index, minlength=k * k).double()
        totals = all_reduce_sum(runtime, torch.cat([loss, confusion]))
        confusion = totals[1:].view(k, k).cpu()
        miou, accuracy, _ = scores_from_confusion(confusion)
        pixels = max(1.0, confusion.sum().item())
        return {"test_loss": totals[0].item() / pixels, "test_acc": float(accuracy),
                "test_miou": float(miou)}


def make_task(config: TrainConfig, num_classes: int) -> Task:
    """The :class:`Task` of ``config.task`` for data with ``num_classes`` classes."""
    if config.task == "segmentation":
        return SegmentationTask(num_classes)
    return Task()
