"""Training-step cost of ResNet-20 on CIFAR-10: the pipeline's parts one by one, and every
downsampling operator against max pooling, steps of all contenders interleaved.

Every contender keeps its own model, optimiser and stream of batches; each round runs one
training step of every contender, in a rotating order (:mod:`shiftpool.benchmarks.timing`), and
a contender's cost relative to another is the median over rounds of the per-round ratio, with
its interquartile range. Two sections, each one interleaved run:

* ``pipeline`` (max pooling): a plain PyTorch loop (``DataLoader`` with per-image augmentation,
  fp32, contiguous), then one change at a time: shiftpool's ``BatchLoader`` (whole-batch
  augmentation of the in-memory uint8 images), + channels_last, + bf16 autocast (the harness's
  default on CPUs with native bf16). Each row's gain is over the row before it and over plain.
* ``operators``: a step of ResNet-20 with each operator at every downsampling point (TIPS with
  its objective, LPS with its Gumbel-softmax) over the same step with max pooling, in fp32
  contiguous and in the harness default (bf16 autocast + channels_last), batches from
  shiftpool's loader.
* ``resnet18``: the same for torchvision's ResNet-18 converted by :func:`shiftpool.convert`
  (every strided layer, stem included) at 64x64 (200 classes, as Tiny ImageNet), each
  operator's conversion over ``convert(resnet18, "max")``; one fixed random batch (no loader:
  only the model's step is timed). Needs torchvision (the ``vision`` extra).

``--clock cpu`` (default) times the thread's CPU time with torch on one thread (the loaders
then prepare batches in that thread: prefetch off); ``--clock wall`` the elapsed time, with
``--threads`` and the loader's background prefetch. The allocator setting (``--malloc``) and
the load average before and after are recorded. Target: every operator's step at most 1.25x
max pooling's (``lps`` 1.5x).

Writes ``train.json`` and ``train.md`` under ``--out`` (default ``benchmarks/results``). Needs
CIFAR-10 under the data root (``SHIFTPOOL_DATA`` or ``--data-dir``). Example::

    python benchmarks/train.py --quick
    python benchmarks/train.py --section resnet18   # the converted ResNet-18 alone
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from shiftpool.benchmarks.timing import CLOCKS, interleaved, load_average, ratio_stats
from shiftpool.core.allocator import MALLOC_SETTINGS, configure_malloc
from shiftpool.core.errors import MissingExtraError
from shiftpool.core.io import atomic_write_json, atomic_write_text
from shiftpool.data import Augment, BatchLoader, load_dataset
from shiftpool.data.image_dataset import ImageDataset
from shiftpool.downsample import TipsObjective, has_tips, list_downsamples
from shiftpool.train import TrainConfig
from shiftpool.train.checkpoint import build_model
from shiftpool.train.inputs import model_args
from shiftpool.train.optim import build_optimizer
from shiftpool.train.runtime import resolve_amp

MODEL = "resnet20"
DATASET = "cifar10"
OPERATOR_TARGET = 1.25
TARGETS = {"lps": 1.5}
AUGMENT = {"crop_padding": 4, "flip": True}
SECTIONS = ("pipeline", "operators", "resnet18")
#: the converted torchvision ResNet-18: input size and classes (Tiny ImageNet's)
RESNET18_SIZE, RESNET18_CLASSES = 64, 200


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a short run")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 15, quick 3)")
    parser.add_argument("--warmup", type=int, help="untimed steps of each (default 3, quick 1)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="cpu",
                        help="cpu: thread CPU time, one thread (default); wall: elapsed time")
    parser.add_argument("--threads", type=int, help="torch threads (wall clock only; default "
                        "all cores)")
    parser.add_argument("--malloc", choices=MALLOC_SETTINGS, default="fast",
                        help="allocator setting (default fast: raised glibc thresholds)")
    parser.add_argument("--op", action="append", help="operator(s) to time; default all")
    parser.add_argument("--section", action="append", choices=SECTIONS,
                        help="what to time (default all)")
    parser.add_argument("--resnet18-batch-size", type=int, default=32,
                        help="images per step of the converted ResNet-18 (64x64)")
    parser.add_argument("--data-dir", help="data root (default: $SHIFTPOOL_DATA, else a cache)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results",
                        help="output folder for train.json and train.md")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 15)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    if args.clock == "cpu":
        if args.threads not in (None, 1):
            parser.error("--clock cpu times one thread: use --threads 1 or --clock wall")
        args.threads = 1
    args.threads = args.threads or os.cpu_count() or 1
    args.ops = [op for op in (args.op or list_downsamples()) if op != "max"]
    args.section = args.section or list(SECTIONS)
    return args


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


def endless(make: Callable[[int], Any]) -> Iterator:
    """Batches of ``make(epoch)`` (an iterable), epoch after epoch."""
    epoch = 0
    while True:
        yield from make(epoch)
        epoch += 1


def shiftpool_batches(data: ImageDataset, args: argparse.Namespace,
                      channels_last: bool) -> Iterator:
    loader = BatchLoader(data, args.batch_size, shuffle=True, augment=Augment(**AUGMENT),
                         drop_last=True, channels_last=channels_last, num_workers=0,
                         prefetch=0 if args.clock == "cpu" else 2)

    def epoch(index: int):
        loader.set_epoch(index)
        return loader

    return endless(epoch)


def plain_batches(data: ImageDataset, args: argparse.Namespace) -> Iterator:
    plain = PlainCifar(data.images, data.labels, data.mean, data.std)
    loader = DataLoader(plain, batch_size=args.batch_size, shuffle=True, drop_last=True)
    return endless(lambda _: loader)


def make_step(op: str, data: ImageDataset, batches: Iterator, amp: torch.dtype | None,
              channels_last: bool) -> Callable[[], None]:
    """One training step of ResNet-20 with ``op``, as the harness takes it (SGD as configured by
    default, TIPS objective where there are TIPS layers)."""
    config = TrainConfig(model=MODEL, downsample=op)
    torch.manual_seed(0)
    model = build_model(config, model_args(data))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    return training_step(model, build_optimizer(model, config), batches, amp)


def training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
                  amp: torch.dtype | None) -> Callable[[], None]:
    """One step on the next batch: forward under ``amp`` autocast (none for ``None``), the
    cross-entropy (plus the TIPS objective where there are TIPS layers), backward, update."""
    objective = TipsObjective() if has_tips(model) else None

    def step() -> None:
        images, labels = next(batches)
        with torch.autocast("cpu", amp or torch.bfloat16, enabled=amp is not None):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        if objective is not None:
            loss = objective(loss, model, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step.model = model  # type: ignore[attr-defined]  # for forward_macs
    return step


def forward_macs(model: torch.nn.Module, size: int) -> int:
    """Multiply-adds of one forward pass of one ``size`` x ``size`` RGB image: convolutions and
    matrix products as :class:`torch.utils.flop_counter.FlopCounterMode` counts them (flops
    / 2), without gradients, in the model's mode and memory format."""
    from torch.utils.flop_counter import FlopCounterMode

    parameter = next(model.parameters())
    image = torch.zeros(1, 3, size, size, device=parameter.device)
    if parameter.dim() == 4 and parameter.is_contiguous(memory_format=torch.channels_last):
        image = image.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image)
    return counter.get_total_flops() // 2


def _summary(times: dict[str, list[float]], name: str, base: str) -> dict[str, Any]:
    stats = ratio_stats(times[name], times[base])
    return {"ms": 1e3 * statistics.median(times[name]), "ratio": stats["median"],
            "ratio_iqr": [stats["q1"], stats["q3"]]}


def run_pipeline(data: ImageDataset, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The pipeline's parts, one change at a time, max pooling throughout."""
    amp = resolve_amp("auto", torch.device("cpu"))
    stages = {
        "plain (DataLoader, fp32, contiguous)":
            make_step("max", data, plain_batches(data, args), None, False),
        "+ shiftpool BatchLoader":
            make_step("max", data, shiftpool_batches(data, args, False), None, False),
        "+ channels_last":
            make_step("max", data, shiftpool_batches(data, args, True), None, True),
    }
    if amp is not None:
        stages[f"+ {str(amp).replace('torch.', '')} autocast"] = make_step(
            "max", data, shiftpool_batches(data, args, True), amp, True)
    times = interleaved(stages, args.rounds, args.warmup, args.clock)
    names = list(stages)
    rows = []
    for i, name in enumerate(names):
        over_plain = _summary(times, names[0], name)  # plain / this: a speed-up
        over_previous = _summary(times, names[max(i - 1, 0)], name)
        rows.append({"stage": name, "ms": 1e3 * statistics.median(times[name]),
                     "speedup_vs_plain": over_plain["ratio"],
                     "speedup_vs_plain_iqr": over_plain["ratio_iqr"],
                     "speedup_vs_previous": over_previous["ratio"],
                     "speedup_vs_previous_iqr": over_previous["ratio_iqr"]})
        print(f"pipeline {name}: {rows[-1]['ms']:.0f} ms, x{over_plain['ratio']:.2f} vs plain",
              flush=True)
    return rows


def run_operators(data: ImageDataset, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each operator's step over max pooling's, in fp32 contiguous and the harness default."""
    return _operator_rows(args, lambda op, dtype, channels_last: make_step(
        op, data, shiftpool_batches(data, args, channels_last), dtype, channels_last), MODEL,
        data.images.shape[-1])


def make_converted_step(op: str, args: argparse.Namespace, amp: torch.dtype | None,
                        channels_last: bool) -> Callable[[], None]:
    """One training step of torchvision's ResNet-18 converted to ``op`` (every strided layer,
    :func:`shiftpool.convert` defaults) at 64x64, on one fixed random batch; SGD with momentum,
    TIPS objective where there are TIPS layers."""
    try:
        import torchvision
    except ImportError as error:
        raise MissingExtraError("the resnet18 section needs torchvision: pip install "
                                "'shiftpool[vision]'") from error
    from shiftpool.convert import convert

    torch.manual_seed(0)
    model = convert(torchvision.models.resnet18(num_classes=RESNET18_CLASSES), op)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(args.resnet18_batch_size, 3, RESNET18_SIZE, RESNET18_SIZE,
                         generator=generator)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, RESNET18_CLASSES, (args.resnet18_batch_size,), generator=generator)
    return training_step(model, optimizer, itertools.repeat((images, labels)), amp)


def run_resnet18(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each operator's converted ResNet-18 step over the max-pool conversion's, in fp32
    contiguous and the harness default."""
    return _operator_rows(args, lambda op, dtype, channels_last: make_converted_step(
        op, args, dtype, channels_last), "resnet18", RESNET18_SIZE)


def _operator_rows(args: argparse.Namespace, make: Callable[..., Callable[[], None]],
                   model: str, size: int) -> list[dict[str, Any]]:
    amp = resolve_amp("auto", torch.device("cpu"))
    settings = {"fp32, contiguous": (None, False)}
    if amp is not None:
        settings[f"{str(amp).replace('torch.', '')} autocast, channels_last"] = (amp, True)
    rows = []
    macs: dict[str, int] = {}
    for setting, (dtype, channels_last) in settings.items():
        steps = {op: make(op, dtype, channels_last) for op in ["max", *args.ops]}
        macs = macs or {op: forward_macs(step.model, size) for op, step in steps.items()}
        times = interleaved(steps, args.rounds, args.warmup, args.clock)
        for op in args.ops:
            summary = _summary(times, op, "max")
            target = TARGETS.get(op, OPERATOR_TARGET)
            rows.append({"model": model, "setting": setting, "operator": op, **summary,
                         "max_ms": 1e3 * statistics.median(times["max"]), "target": target,
                         "meets_target": summary["ratio"] <= target,
                         "forward_macs": macs[op], "macs_ratio": macs[op] / macs["max"]})
            print(f"{model} {setting} {op}: x{summary['ratio']:.2f} "
                  f"[{summary['ratio_iqr'][0]:.2f}, {summary['ratio_iqr'][1]:.2f}] of max",
                  flush=True)
    return rows


def metadata(args: argparse.Namespace, malloc: dict, load: dict) -> dict[str, Any]:
    return {
        "model": MODEL, "dataset": DATASET, "batch_size": args.batch_size,
        "resnet18_batch_size": args.resnet18_batch_size,
        "rounds": args.rounds, "warmup_steps": args.warmup, "threads": args.threads,
        "clock": args.clock, "malloc": malloc, "load_average": load,
        "amp": str(resolve_amp("auto", torch.device("cpu"))).replace("torch.", ""),
        "augment": AUGMENT, "torch": str(torch.__version__),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _iqr(values: list[float]) -> str:
    return f"[{values[0]:.2f}, {values[1]:.2f}]"


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    verdict = {True: "yes", False: "**no**"}
    lines = [
        "# Training steps: ResNet-20 on CIFAR-10, converted ResNet-18 at 64x64",
        "",
        f"{meta['threads']} thread(s) on {meta['cores']} cores, batch {meta['batch_size']}, "
        f"{meta['rounds']} interleaved rounds (rotating order) after {meta['warmup_steps']} "
        f"warm-up steps each, clock {meta['clock']} ({CLOCKS[meta['clock']][1]}), torch "
        f"{meta['torch']}, {meta['date']}{' (quick run)' if meta['quick'] else ''}.",
        f"Allocator: {meta['malloc']['detail']}. Load average (1, 5, 15 min): before "
        f"{meta['load_average']['before']}, after {meta['load_average']['after']}.",
        "Ratios: median over rounds of the per-round ratio, [interquartile range].",
    ]
    if results.get("pipeline"):
        lines += ["", "## Pipeline, one change at a time (max pooling)", "",
                  "| stage | ms/step | speed-up vs previous | speed-up vs plain |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {r['stage']} | {r['ms']:.0f} | {r['speedup_vs_previous']:.2f} "
                  f"{_iqr(r['speedup_vs_previous_iqr'])} | {r['speedup_vs_plain']:.2f} "
                  f"{_iqr(r['speedup_vs_plain_iqr'])} |" for r in results["pipeline"]]
    titles = {"operators": "## Operators: ResNet-20 step time over max pooling's",
              "resnet18": f"## Operators: converted torchvision ResNet-18 at "
                          f"{RESNET18_SIZE}x{RESNET18_SIZE}, batch "
                          f"{meta.get('resnet18_batch_size')}, step time over the max-pool "
                          f"conversion's (one fixed random batch)"}
    for section, title in titles.items():
        if not results.get(section):
            continue
        lines += ["", title, "",
                  "| setting | operator | ms/step | max ms/step | step / max | target | met "
                  "| MACs / max |",
                  "|---|---|---:|---:|---:|---:|---|---:|"]
        lines += [f"| {r['setting']} | {r['operator']} | {r['ms']:.0f} | {r['max_ms']:.0f} "
                  f"| {r['ratio']:.2f} {_iqr(r['ratio_iqr'])} | <= {r['target']:.2f} "
                  f"| {verdict[r['meets_target']]} | {r.get('macs_ratio', float('nan')):.2f} |"
                  for r in results[section]]
    if any(results.get(section) for section in titles):
        lines += ["", "MACs / max: multiply-adds of one forward pass (convolutions and matrix "
                  "products, torch's FlopCounterMode) over the max-pool model's; the arithmetic "
                  "an operator adds, which no implementation of the same layer avoids."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    malloc = configure_malloc(args.malloc)
    torch.set_num_threads(args.threads)
    data = None
    if {"pipeline", "operators"} & set(args.section):
        data = load_dataset(DATASET, "train", root=args.data_dir, download=False)
    before = load_average()
    results: dict[str, Any] = {}
    if "pipeline" in args.section:
        results["pipeline"] = run_pipeline(data, args)
    if "operators" in args.section:
        results["operators"] = run_operators(data, args)
    if "resnet18" in args.section:
        results["resnet18"] = run_resnet18(args)
    results["meta"] = metadata(args, malloc, {"before": before, "after": load_average()})
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "train.json", results)
    atomic_write_text(args.out / "train.md", markdown(results))
    print(f"wrote {args.out / 'train.json'} and {args.out / 'train.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
