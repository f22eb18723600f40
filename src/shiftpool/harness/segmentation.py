"""A small segmentation comparison across operators, on the MNIST-derived set (CPU, minutes).

:func:`compare_segmentation` trains one U-Net per operator (same seed, data and schedule) on
:func:`~shiftpool.data.segmentation.mnist_segmentation` and measures, on its test canvases:
mIoU and pixel accuracy (bootstrap intervals over images), mASSC under circular and zero
shifts (two random shifts per image) and the equivariance error under random circular shifts
(mean |f(T x) - T f(x)| over logits, fraction of pixels whose label changes).

It is a first, self-contained segmentation harness: no checkpoints, resume, DDP or run
folders (``shiftpool train|evaluate|compare --task segmentation`` do not exist yet).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from shiftpool.core.errors import InputError, MissingExtraError
from shiftpool.core.io import atomic_write_json, atomic_write_text
from shiftpool.core.shifts import draw_offsets, shift_images
from shiftpool.data.segmentation import mnist_segmentation
from shiftpool.downsample import list_downsamples
from shiftpool.metrics.segmentation import (
    SegmentationMeter,
    equivariance_error,
    segmentation_consistency,
    undo_shift,
)
from shiftpool.models.segmentation import create_segmentation_model
from shiftpool.report.figures import new_figure

__all__ = ["SegmentationRow", "SegmentationSettings", "compare_segmentation"]


@dataclass(frozen=True)
class SegmentationSettings:
    """What :func:`compare_segmentation` trains and measures.

    Attributes:
        train_images, test_images: canvases of the two splits.
        canvas: canvas size (a multiple of the U-Net's total stride keeps aps exact).
        channels: U-Net channels per level.
        epochs, batch_size, lr: Adam schedule.
        circular: circular padding everywhere.
        max_shift: largest shift of the consistency and equivariance measurements.
        seed: seeds data, initialisation, batches and shifts.
        device: torch device.
    """

    train_images: int = 1000
    test_images: int = 200
    canvas: int = 32
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
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"shiftpool.segmentation: {name} must be an int >= 1, "
                                 f"got {value!r}")
        if not self.lr > 0:
            raise InputError(f"shiftpool.segmentation: lr must be > 0, got {self.lr!r}")


@dataclass
class SegmentationRow:
    """One operator's results (values and 95% intervals as ``[value, low, high]``)."""

    method: str
    miou: list[float]
    pixel_accuracy: list[float]
    massc: dict[str, list[float]] = field(default_factory=dict)
    logit_error: list[float] = field(default_factory=list)
    label_change: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _triple(estimate: Any) -> list[float]:
    return [estimate.value, estimate.low, estimate.high]


Examples = tuple[Tensor, Tensor, Tensor, Tensor]


def _train_and_measure(method: str, settings: SegmentationSettings, data: tuple[Any, Any],
                       log: Callable[[str], None]) -> tuple[SegmentationRow, Examples]:
    train, test = data
    device = torch.device(settings.device)
    start = time.perf_counter()
    torch.manual_seed(settings.seed)
    downsample = None if method == "plain" else method
    net = create_segmentation_model(
        "unet", downsample=downsample, circular=settings.circular, num_classes=train.num_classes,
        in_channels=1, channels=settings.channels).to(device)
    optimizer = torch.optim.Adam(net.parameters(), settings.lr)
    order = torch.Generator().manual_seed(settings.seed)
    for epoch in range(settings.epochs):
        net.train()
        permutation = torch.randperm(len(train), generator=order)
        for i in range(0, len(train), settings.batch_size):
            index = permutation[i:i + settings.batch_size]
            x, y = train.images[index].to(device), train.masks[index].to(device)
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        log(f"{method}: epoch {epoch + 1}/{settings.epochs} loss {loss.item():.4f}")
    net.eval()
    meter = SegmentationMeter(train.num_classes)
    batches = [(x.to(device), y.to(device)) for x, y in test.batches(settings.batch_size)]
    with torch.no_grad():
        for x, y in batches:
            meter.update(net(x), y)
    scores = meter.compute(seed=settings.seed)
    images = [x for x, _ in batches]
    shift = (settings.max_shift, settings.max_shift)
    massc = {mode: _triple(segmentation_consistency(net, images, mode, shift, seed=settings.seed))
             for mode in ("circular", "zero")}
    all_images = torch.cat(images)
    generator = torch.Generator().manual_seed(settings.seed)
    offsets = draw_offsets(len(all_images), shift, "circular", generator)
    errors = equivariance_error(net, all_images, offsets.to(device), "circular")
    row = SegmentationRow(method, _triple(scores.miou), _triple(scores.pixel_accuracy), massc,
                          _triple(errors.logit_error), _triple(errors.label_change),
                          time.perf_counter() - start)
    x, y = all_images[:EXAMPLES], test.masks[:EXAMPLES]
    delta = offsets[:EXAMPLES].to(device)
    with torch.no_grad():
        pred = net(x).argmax(1)
        moved = net(shift_images(x, delta, "circular")).argmax(1)
    back, _ = undo_shift(moved, delta, "circular")
    return row, (x[:, 0].cpu(), y, pred.cpu(), back.cpu())


#: Test canvases drawn per method in ``examples.png``.
EXAMPLES = 3


def _figures(rows: Sequence[SegmentationRow], examples: Sequence[Examples],
             folder: Path) -> list[Path]:
    """``examples.png`` (image / truth / prediction / prediction of the shifted image, shifted
    back) and ``consistency_vs_miou.png``; nothing (an empty list) without matplotlib."""
    titles = ("image", "ground truth", "prediction", "shifted input, undone")
    n = min(EXAMPLES, len(examples[0][0]))
    try:
        fig = new_figure(8, 2 * n * len(rows))
    except MissingExtraError:
        return []
    axes = fig.subplots(n * len(rows), 4, squeeze=False)
    for r, (row, tensors) in enumerate(zip(rows, examples, strict=True)):
        for i in range(n):
            for c, tensor in enumerate(tensors):
                ax = axes[r * n + i][c]
                cmap = "gray" if c == 0 else "tab20"
                options = {} if c == 0 else {"vmin": 0, "vmax": 19}
                ax.imshow(tensor[i].numpy(), cmap=cmap, interpolation="nearest", **options)
                ax.set_xticks([])
                ax.set_yticks([])
                if r * n + i == 0:
                    ax.set_title(titles[c], fontsize="small")
            axes[r * n + i][0].set_ylabel(row.method)
    paths = [folder / "examples.png"]
    fig.savefig(paths[0], dpi=100)
    fig = new_figure(5, 4)
    ax = fig.subplots()
    for row in rows:
        ax.errorbar(row.miou[0], row.massc["circular"][0],
                    xerr=[[row.miou[0] - row.miou[1]], [row.miou[2] - row.miou[0]]], fmt="o")
        ax.annotate(row.method, (row.miou[0], row.massc["circular"][0]))
    ax.set_xlabel("mIoU (95% bootstrap interval)")
    ax.set_ylabel("mASSC, circular shifts")
    paths.append(folder / "consistency_vs_miou.png")
    fig.savefig(paths[1], dpi=100)
    return paths


def _cell(values: Sequence[float], digits: int = 4) -> str:
    value, low, high = values
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def segmentation_table(rows: Sequence[SegmentationRow]) -> str:
    """The rows as a Markdown table."""
    header = ("method", "mIoU", "pixel acc", "mASSC circular", "mASSC zero", "equiv. error",
              "label change")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = (r.method, _cell(r.miou), _cell(r.pixel_accuracy), _cell(r.massc["circular"]),
                 _cell(r.massc["zero"]), f"{r.logit_error[0]:.2e}", f"{r.label_change[0]:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_segmentation(
    methods: Sequence[str],
    settings: SegmentationSettings | None = None,
    out_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    figures: bool = True,
) -> tuple[list[SegmentationRow], str]:
    """Train and measure one U-Net per operator; returns the rows and a Markdown table.

    Args:
        methods: operators (see :func:`shiftpool.list_downsamples`), or ``plain`` (max pooling,
            bilinear upsampling, no options).
        settings: see :class:`SegmentationSettings`.
        out_dir: if given, writes ``segmentation.json`` and ``segmentation.md`` there, and
            (``figures``, with matplotlib) ``examples.png`` and ``consistency_vs_miou.png``.
        log: progress lines (default: none).

    Example:
        >>> settings = SegmentationSettings(train_images=8, test_images=4, channels=(2, 4),
        ...                                 epochs=1, batch_size=4)
        >>> rows, table = compare_segmentation(["aps"], settings)
        >>> rows[0].label_change[0], table.splitlines()[0][:15]
        (0.0, '| method | mIoU')
    """
    settings = settings or SegmentationSettings()
    log = log or (lambda _: None)
    allowed = ["plain", *list_downsamples()]
    unknown = [m for m in methods if m not in allowed]
    if not methods or unknown:
        raise InputError(f"shiftpool.segmentation: unknown or no method(s) {unknown or methods}; "
                         f"allowed: {', '.join(allowed)}")
    data = (mnist_segmentation("train", settings.train_images, settings.canvas,
                               seed=settings.seed),
            mnist_segmentation("test", settings.test_images, settings.canvas,
                               seed=settings.seed))
    results = [_train_and_measure(m, settings, data, log) for m in methods]
    rows = [row for row, _ in results]
    table = segmentation_table(rows)
    if out_dir is not None:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        payload = {"settings": asdict(settings), "rows": [asdict(r) for r in rows]}
        atomic_write_json(folder / "segmentation.json", payload)
        atomic_write_text(folder / "segmentation.md", table + "\n")
        if figures:
            _figures(rows, [e for _, e in results], folder)
    return rows, table
