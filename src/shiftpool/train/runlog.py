"""Run logs: a summary line per epoch, a CSV file, TensorBoard where installed, progress bars."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from shiftpool.core.io import atomic_write_text

LOG_CSV = "log.csv"


def format_epoch(row: dict[str, Any], epochs: int) -> str:
    """The one-line summary of an epoch.

    Example:
        >>> format_epoch({"epoch": 1, "train_loss": 0.51, "train_acc": 0.85, "lr": 0.1,
        ...               "epoch_time_s": 3.2, "images_per_s": 1562.5, "test_acc": 0.9}, 10)
        'epoch 1/10  loss 0.5100  train acc 85.00%  test acc 90.00%  lr 0.1  3.2 s  1562 img/s'
    """
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}"]
    parts.append(f"train acc {100 * row['train_acc']:.2f}%")
    if row.get("test_acc") is not None:
        parts.append(f"test acc {100 * row['test_acc']:.2f}%")
    if row.get("test_miou") is not None:  # segmentation (the accuracies are per pixel)
        parts.append(f"test mIoU {100 * row['test_miou']:.2f}%")
    parts.append(f"lr {row['lr']:.3g}")
    parts.append(f"{row['epoch_time_s']:.1f} s")
    parts.append(f"{row['images_per_s']:.0f} img/s")
    return "  ".join(parts)


def history_csv(history: list[dict[str, Any]]) -> str:
    """The epoch history as CSV text (columns: the union of keys, in first-seen order)."""
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


class RunLogger:
    """Writes the epoch history to ``out_dir/log.csv`` (rewritten atomically, so a resumed run's
    log never holds duplicates) and to TensorBoard when ``tensorboard`` is installed.

    Only the main process should build an enabled logger.
    """

    def __init__(self, out_dir: str | Path, epochs: int, *, enabled: bool = True,
                 tensorboard: bool = True, echo: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.epochs = epochs
        self.enabled = enabled
        self.echo = echo and enabled
        self._tensorboard = _tensorboard_writer(self.out_dir) if enabled and tensorboard else None

    def epoch(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """Record one finished epoch; ``history`` includes it."""
        if not self.enabled:
            return
        atomic_write_text(self.out_dir / LOG_CSV, history_csv(history))
        if self._tensorboard is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self._tensorboard.add_scalar(key, value, row["epoch"])
            self._tensorboard.flush()
        if self.echo:
            print(format_epoch(row, self.epochs), flush=True)

    def message(self, text: str) -> None:
        if self.echo:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def _tensorboard_writer(out_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))


def progress(iterable: Iterable, *, total: int | None, desc: str, enabled: bool,
             initial: int = 0) -> Iterator:
    """``iterable`` wrapped in a tqdm bar when ``enabled`` and tqdm is installed."""
    if not enabled:
        return iter(iterable)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iter(iterable)
    return iter(tqdm(iterable, total=total, desc=desc, initial=initial, leave=False,
                     dynamic_ncols=True))
