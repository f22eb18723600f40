"""Cost of measuring consistency against the forward passes it needs.

Circular consistency needs two forward passes per image (``ŷ(T_δ1 x)`` and ``ŷ(T_δ2 x)``).
The script times, on the same model and data in the same run:

* ``baseline``: two plain forward passes over every batch (eval mode, ``torch.no_grad()``),
  the second on a copy shifted beforehand, so that neither pass finds its input in cache;
* ``consistency``: ``shiftpool.metrics.evaluate(metrics=("consistency",), protocol="aps")``,
  which draws offsets per image, shifts every batch twice and compares the predictions;
* ``shifts only``: the two batched shifts per batch alone, to show where the overhead goes;

each timed ``--repeats`` times, alternating so that machine load hits all alike. The ratio is
reported from the fastest run of each (timing noise only ever adds time) and from the medians.
Target (issue 3): ``consistency`` at most 1.2x ``baseline`` over 10,000 32x32 images.

The model is a small CNN (three 3x3 convs with ReLU, two max pools, global average pooling,
a linear head) — a small model is the hard case, as the shifts' share of the time is larger.
Data: the CIFAR-10 test images under ``SHIFTPOOL_DATA`` when present, else random images.

Writes ``metrics.json`` and ``metrics.md`` under ``--out`` (default ``benchmarks/results``)::

    python benchmarks/metrics.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from shiftpool.metrics import draw_offsets, evaluate, shift_images
from shiftpool.metrics.result import write_text_atomic

TARGET = 1.2
MAX_SHIFT = 3  # the aps protocol


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000, help="images (default 10,000)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--random", action="store_true", help="random images, not CIFAR-10")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser.parse_args(argv)


def small_cnn(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )


def load_images(count: int, random: bool) -> tuple[Tensor, Tensor, str]:
    """``count`` normalised 32x32 RGB images with labels, and where they came from."""
    root = os.environ.get("SHIFTPOOL_DATA")
    path = Path(root) / "cifar-10-batches-py" / "test_batch" if root else None
    if not random and path is not None and path.is_file():
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        images = torch.from_numpy(np.asarray(batch["data"][:count], dtype=np.uint8).copy())
        images = images.view(-1, 3, 32, 32).float().div_(255)
        images = (images - images.mean((0, 2, 3), keepdim=True)) / images.std((0, 2, 3),
                                                                              keepdim=True)
        labels = torch.tensor(batch["labels"][:count])
        source = "CIFAR-10 test batch (under SHIFTPOOL_DATA)"
    else:
        g = torch.Generator().manual_seed(0)
        images = torch.randn(count, 3, 32, 32, generator=g)
        labels = torch.randint(0, 10, (count,), generator=g)
        source = "random normal"
    return images, labels, source


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images, labels, source = load_images(args.images, args.random)
    batches = [(x.to(device), y.to(device)) for x, y in
               zip(images.split(args.batch_size), labels.split(args.batch_size), strict=True)]
    shifted = [torch.roll(x, (1, 1), dims=(2, 3)) for x, _ in batches]
    model = small_cnn().to(device).eval()

    def baseline() -> None:
        with torch.no_grad():
            for (x, _), x_shifted in zip(batches, shifted, strict=True):
                model(x)
                model(x_shifted)

    def consistency() -> None:
        evaluate(model, batches, metrics=("consistency",), protocol="aps", device=device,
                 progress=False)

    def shifts_only() -> None:
        g = torch.Generator().manual_seed(0)
        for x, _ in batches:
            offsets = draw_offsets(2 * len(x), (MAX_SHIFT, MAX_SHIFT), "circular", g)
            shift_images(x, offsets[: len(x)], "circular")
            shift_images(x, offsets[len(x):], "circular")

    runs: dict[str, list[float]] = {"baseline": [], "consistency": [], "shifts only": []}
    baseline()  # warm-up
    consistency()
    for _ in range(args.repeats):
        for name, fn in (("baseline", baseline), ("consistency", consistency),
                         ("shifts only", shifts_only)):
            runs[name].append(timed(fn, device))
    fastest = {k: min(v) for k, v in runs.items()}
    medians = {k: statistics.median(v) for k, v in runs.items()}
    ratio = fastest["consistency"] / fastest["baseline"]
    report = {
        "what": "circular consistency (aps protocol, max shift 3) vs two plain forward passes",
        "target_ratio": TARGET,
        "ratio": ratio,
        "ratio_of_medians": medians["consistency"] / medians["baseline"],
        "meets_target": ratio <= TARGET,
        "shift_share_of_baseline": fastest["shifts only"] / fastest["baseline"],
        "seconds_fastest": fastest,
        "seconds_median": medians,
        "seconds_all": runs,
        "images": len(images),
        "batch_size": args.batch_size,
        "data": source,
        "model": "small CNN: conv3x3(3-16) relu maxpool, conv3x3(16-32) relu maxpool, "
                 "conv3x3(32-32) relu, global avg pool, linear(32-10)",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "repeats": args.repeats,
    }
    write_outputs(report, args.out)
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    fast, med = report["seconds_fastest"], report["seconds_median"]
    verdict = "meets" if report["meets_target"] else "misses"
    lines = [
        "# Metrics benchmark: cost of circular consistency",
        "",
        f"{report['images']:,} images ({report['data']}), batch {report['batch_size']}, "
        f"{report['model']}; device {report['device']}, {report['threads']} threads, "
        f"torch {report['torch']}, {report['repeats']} runs each.",
        "",
        "| measured | fastest (s) | x baseline | median (s) | x baseline |",
        "|---|---|---|---|---|",
        *(f"| {k} | {fast[k]:.3f} | {fast[k] / fast['baseline']:.3f} | {med[k]:.3f} | "
          f"{med[k] / med['baseline']:.3f} |" for k in fast),
        "",
        f"Consistency costs **{report['ratio']:.3f}x** the two forward passes it needs (fastest "
        f"runs; {report['ratio_of_medians']:.3f}x from the medians): {verdict} the target of at "
        f"most {report['target_ratio']}x. The batched shifts alone take "
        f"{report['shift_share_of_baseline']:.1%} of the baseline.",
        "",
        f"Load average during the run: {report['load_average']}.",
    ]
    return "\n".join(lines) + "\n"


def write_outputs(report: dict, out: Path) -> None:
    write_text_atomic(out / "metrics.json", json.dumps(report, indent=2))
    write_text_atomic(out / "metrics.md", markdown(report))


if __name__ == "__main__":
    main()
