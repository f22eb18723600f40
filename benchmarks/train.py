"""Training throughput of ResNet-20 on CIFAR-10: shiftpool's pipeline against a plain loop, and
the end-to-end training step of every downsampling operator against max pooling's.

Two measurements, in the same run and on the same data:

* ``pipeline``: images per second of training steps of ResNet-20 (max pooling) with
  ``shiftpool.train.train`` — uint8 data set in memory, whole-batch augmentation (random crop
  with 4-pixel padding, flip), channels_last, automatic mixed precision (bf16 where the CPU has
  it) — against a plain PyTorch loop: a ``torch.utils.data.DataLoader`` over the same uint8
  images with per-image augmentation and normalisation, fp32, contiguous tensors, same model,
  optimiser and batch size.
* ``operators``: images per second of ``train`` steps of ResNet-20 with each operator at every
  downsampling point (TIPS with its regularisers, LPS with its Gumbel-softmax), as the time of
  a step relative to max pooling's.

Steps are timed after warm-up (the first steps build kernels and caches). Every measurement is
repeated ``--repeats`` times, round-robin over the loops and operators so that a busy moment of
the machine hits them alike, and the best rate of each is reported. Targets on 2 CPU cores: the
pipeline at least 2x the plain loop; every operator's step at most 1.25x max pool's.

Writes ``train.json`` and ``train.md`` under ``--out`` (default ``benchmarks/results``).
Needs CIFAR-10 under the data root (``SHIFTPOOL_DATA`` or ``--data-dir``). Example::

    python benchmarks/train.py --quick
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from shiftpool.core.io import atomic_write_json, atomic_write_text
from shiftpool.data import load_dataset
from shiftpool.downsample import list_downsamples
from shiftpool.train import Callback, TrainConfig, train
from shiftpool.train.checkpoint import build_model
from shiftpool.train.inputs import model_args
from shiftpool.train.runtime import resolve_amp

MODEL = "resnet20"
DATASET = "cifar10"
PIPELINE_TARGET = 2.0
OPERATOR_TARGET = 1.25
AUGMENT = {"crop_padding": 4, "flip": True}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few steps: a short run")
    parser.add_argument("--steps", type=int, help="timed steps (default 30, quick 8)")
    parser.add_argument("--warmup", type=int, help="untimed first steps (default 5, quick 3)")
    parser.add_argument("--repeats", type=int, help="rounds over every loop (default 3, quick 2)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch.set_num_threads (default: all cores)")
    parser.add_argument("--op", action="append", help="operator(s) to time; default all")
    parser.add_argument("--amp", default="auto", choices=("auto", "off", "bf16", "fp16"),
                        help="mixed precision of the shiftpool loop (default: auto)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="channels_last in the shiftpool loop (default: yes)")
    parser.add_argument("--data-dir", help="data root (default: $SHIFTPOOL_DATA, else a cache)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results",
                        help="output folder for train.json and train.md")
    args = parser.parse_args(argv)
    args.steps = args.steps or (8 if args.quick else 30)
    args.warmup = args.warmup if args.warmup is not None else (3 if args.quick else 5)
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.ops = args.op or list_downsamples()
    return args


class StepClock(Callback):
    """Records the time at the end of every training step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, info: Any) -> None:
        self.times.append(time.perf_counter())


def images_per_second(times: list[float], warmup: int, batch_size: int) -> float:
    """Throughput over the steps after ``warmup`` (``times``: end of each step)."""
    timed = times[warmup:]
    return batch_size * (len(timed) - 1) / (timed[-1] - timed[0])


def shiftpool_throughput(args: argparse.Namespace, downsample: str) -> float:
    """Images/s of ``train`` steps of ResNet-20 with ``downsample``, project defaults."""
    steps = args.warmup + args.steps + 1
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            model=MODEL, downsample=downsample, dataset=DATASET, data_dir=args.data_dir,
            download=False, train_subset=steps * args.batch_size, epochs=1,
            batch_size=args.batch_size, augment=AUGMENT, amp=args.amp,
            channels_last=args.channels_last, eval_every=0, progress=False,
            tensorboard=False, num_threads=args.threads, out_dir=out,
        )
        clock = StepClock()
        train(config, resume=False, callbacks=[clock])
    return images_per_second(clock.times, args.warmup, args.batch_size)


class PlainCifar(Dataset):
    """The usual per-image pipeline: crop with padding, flip, normalise — one image at a time."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: tuple, std: tuple):
        self.images, self.labels = images, labels
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index].float().div(255)
        padded = F.pad(image, (4, 4, 4, 4))
        top, left = torch.randint(0, 9, (2,)).tolist()
        image = padded[:, top:top + 32, left:left + 32]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return (image - self.mean) / self.std, self.labels[index]


def plain_throughput(args: argparse.Namespace, dataset: Any) -> float:
    """Images/s of a plain fp32, contiguous PyTorch loop over a DataLoader of the same data."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(TrainConfig(model=MODEL, downsample="max"), model_args(dataset))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)
    data = PlainCifar(dataset.images, dataset.labels, dataset.mean, dataset.std)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    model.train()
    times = []
    for step, (images, labels) in enumerate(loader):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter())
        if step + 1 == args.warmup + args.steps + 1:
            break
    return images_per_second(times, args.warmup, args.batch_size)


def run(args: argparse.Namespace) -> dict[str, Any]:
    train_set = load_dataset(DATASET, "train", root=args.data_dir, download=False)
    ops = list(dict.fromkeys(["max", *args.ops]))
    rates: dict[str, list[float]] = {"plain": [], **{op: [] for op in ops}}
    for round_ in range(args.repeats):
        rates["plain"].append(plain_throughput(args, train_set))
        for op in ops:
            rates[op].append(shiftpool_throughput(args, op))
        print(f"round {round_ + 1}/{args.repeats}: " + ", ".join(
            f"{name} {values[-1]:.0f}" for name, values in rates.items()) + " img/s", flush=True)
    best = {name: max(values) for name, values in rates.items()}
    speedup = best["max"] / best["plain"]
    pipeline = {"plain_images_per_s": best["plain"], "shiftpool_images_per_s": best["max"],
                "speedup": speedup, "target": PIPELINE_TARGET,
                "meets_target": speedup >= PIPELINE_TARGET, "all_rounds": {
                    "plain": rates["plain"], "shiftpool": rates["max"]}}
    operators = [
        {"operator": op, "images_per_s": best[op], "step_vs_max": best["max"] / best[op],
         "target": OPERATOR_TARGET, "meets_target": best["max"] / best[op] <= OPERATOR_TARGET,
         "all_rounds": rates[op]}
        for op in ops if op in args.ops
    ]
    return {"meta": metadata(args), "pipeline": pipeline, "operators": operators}


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": MODEL, "dataset": DATASET, "batch_size": args.batch_size,
        "timed_steps": args.steps, "warmup_steps": args.warmup, "repeats": args.repeats,
        "threads": args.threads,
        "amp": str(resolve_amp(args.amp, torch.device("cpu"))).replace("torch.", ""),
        "channels_last": args.channels_last,
        "augment": AUGMENT, "torch": str(torch.__version__), "cpu": platform.processor()
        or platform.machine(), "cores": os.cpu_count(), "quick": args.quick,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def markdown(results: dict[str, Any]) -> str:
    meta, pipeline = results["meta"], results["pipeline"]
    verdict = {True: "yes", False: "**no**"}
    lines = [
        "# Training throughput: ResNet-20 on CIFAR-10",
        "",
        f"{meta['threads']} threads on {meta['cores']} cores, batch {meta['batch_size']}, "
        f"{meta['timed_steps']} timed steps after {meta['warmup_steps']} warm-up steps, best of "
        f"{meta['repeats']} rounds, torch {meta['torch']}, {meta['date']}"
        f"{' (quick run)' if meta['quick'] else ''}.",
        "shiftpool pipeline: in-memory uint8 data, whole-batch augmentation, "
        f"{'channels_last' if meta['channels_last'] else 'contiguous'}, autocast {meta['amp']}.",
        "",
        "| loop | images/s | speedup | target | met |",
        "|---|---|---|---|---|",
        f"| plain PyTorch (DataLoader, fp32, contiguous) | {pipeline['plain_images_per_s']:.0f} "
        "| 1.00x | | |",
        f"| shiftpool | {pipeline['shiftpool_images_per_s']:.0f} | {pipeline['speedup']:.2f}x "
        f"| >= {pipeline['target']:.2f}x | {verdict[pipeline['meets_target']]} |",
        "",
        "| operator | images/s | step vs max | target | met |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['operator']} | {r['images_per_s']:.0f} | {r['step_vs_max']:.2f}x "
        f"| <= {r['target']:.2f}x | {verdict[r['meets_target']]} |"
        for r in results["operators"]
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "train.json", results)
    atomic_write_text(args.out / "train.md", markdown(results))
    print(f"wrote {args.out / 'train.json'} and {args.out / 'train.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
