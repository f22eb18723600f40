"""What the robustness metrics cost: PGD-k against k forward+backward passes, and the common
corruptions against the evaluation they are part of.

* **Attack overhead.** PGD-k takes ``k`` gradients of the loss with respect to the input (one
  forward+backward pass each) plus the bookkeeping around them (random start, steps,
  projections, the valid-range clamp, the check of which images are already fooled, one last
  forward pass without gradients). Each round times
  :func:`~shiftpool.metrics.adversarial.pgd` (L∞ and L2) and ``k`` bare passes (the same model,
  batch and loss, ``torch.autograd.grad`` to the input); the overhead is the median over
  rounds of the per-round ratio ``pgd / passes`` with its interquartile range. Target: at most
  1.15x.
* **Corruption cost.** The ``corruption`` metric corrupts each batch once per corruption and
  severity and classifies it (one forward pass without gradients). Each round times every
  corruption at every severity on the same batch and the model's forward pass on it; a
  corruption's share of the evaluation is ``t_corrupt / (t_corrupt + t_forward)``, per round,
  median over rounds with its IQR, and the share of the whole metric ``Σ t_corrupt / Σ
  (t_corrupt + t_forward)``. Throughput: images per second of each corruption (median time).
  Target: no corruption above 30% of its evaluation (the whole metric far below).

The model is a ResNet-20 (:func:`shiftpool.create_model`, 10 classes, its default max-pool
downsampling, eval mode) on 32×32 RGB images; the corruption batch is the harness's evaluation
batch (256), the attack's 32 images (the ratio does not depend on it). Corruptions run on the
CPU (their reference code is CPU code; glass blur's pixel swaps are sequential numpy).

``--clock cpu`` (default) reads the timing thread's CPU time with torch on one thread
(:mod:`shiftpool.benchmarks.timing`): on a shared machine, what the work cost whatever else
runs. ``--clock wall`` reads elapsed time (quiet machines, threads, ``--device cuda`` for the
attack). Every round runs every contender once, the order rotating between rounds.

Writes ``robustness.json`` and ``robustness.md`` under ``--out`` (default: ``benchmarks/results``
of the source tree, else ``./benchmark-results``). Every argument is checked before anything is
timed; a bad one is one line naming it. Example::

    shiftpool benchmark robustness --quick
    python -m shiftpool.benchmarks.robustness --severities 3 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from shiftpool.benchmarks.downsample import cpu_name, default_out_dir
from shiftpool.benchmarks.timing import CLOCKS, cuda_sync, interleaved, load_average, quartiles
from shiftpool.cli.checks import check_output_dir
from shiftpool.cli.options import OneLineParser
from shiftpool.core.allocator import MALLOC_SETTINGS, configure_malloc
from shiftpool.core.checks import check_int
from shiftpool.core.errors import InputError
from shiftpool.core.io import atomic_write_text

__all__ = ["ATTACK_TARGET", "SHARE_TARGET", "main", "run_script"]

#: PGD-k at most this many times k bare forward+backward passes.
ATTACK_TARGET = 1.15
#: No corruption more than this share of its evaluation (corrupt + forward pass).
SHARE_TARGET = 0.30
MODEL = "resnet20"
IMAGE_SIZE = 32
CLASSES = 10


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options; a bad one raises one :class:`InputError` line."""
    parser = OneLineParser(prog="shiftpool benchmark robustness",
                           description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a short run: severity 3, batch 64, 3 rounds")
    parser.add_argument("--batch", type=int, default=None,
                        help="images per corruption batch, >= 1 (default 256, the harness's "
                        "evaluation batch; quick 64)")
    parser.add_argument("--attack-batch", type=int, default=32,
                        help="images per attacked batch, >= 1 (default 32)")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps k, >= 1 (default 10)")
    parser.add_argument("--corruptions", default=None,
                        help="corruptions or groups to time (default: every one generated)")
    parser.add_argument("--severities", default=None,
                        help="severities to time, of 1..5 (default all; quick 3)")
    parser.add_argument("--no-attack", dest="attack", action="store_false",
                        help="time the corruptions only")
    parser.add_argument("--no-corruptions", dest="corrupt", action="store_false",
                        help="time the attack only")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the attack runs (corruptions: always the CPU)")
    parser.add_argument("--threads", "--num-threads", dest="threads", type=int, default=None,
                        help="torch.set_num_threads, >= 1 (default: 1 with --clock cpu)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="cpu",
                        help="cpu: the timing thread's CPU time (default; shared machines); "
                        "wall: elapsed time")
    parser.add_argument("--malloc", choices=MALLOC_SETTINGS, default="fast",
                        help="allocator setting applied first (default fast)")
    parser.add_argument("--warmup", type=int, help="untimed calls first, >= 0 (default 1)")
    parser.add_argument("--rounds", "--repeats", dest="rounds", type=int,
                        help="timed rounds, >= 1 (default 7, quick 3)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder for robustness.json and robustness.md")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check every argument (before anything is timed)."""
    from shiftpool.metrics.corruptions import check_corruptions, check_severities

    args = build_parser().parse_args(argv)
    if args.threads is None:
        args.threads = 1 if args.clock == "cpu" else max(1, torch.get_num_threads())
    check_int(args.threads, "--threads", minimum=1)
    if args.clock == "cpu" and args.threads != 1:
        raise InputError(f"--clock cpu reads one thread's CPU time: use --threads 1 (got "
                         f"{args.threads}), or --clock wall")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda: CUDA is not available here; use --device cpu")
        if args.clock == "cpu":
            raise InputError("--device cuda: GPU work is not CPU time; use --clock wall")
    if args.batch is None:
        args.batch = 64 if args.quick else 256
    for name in ("batch", "attack_batch", "steps"):
        check_int(getattr(args, name), f"--{name.replace('_', '-')}", minimum=1)
    if args.warmup is not None:
        check_int(args.warmup, "--warmup", minimum=0)
    if args.rounds is not None:
        check_int(args.rounds, "--rounds", minimum=1)
    args.warmup = 1 if args.warmup is None else args.warmup
    args.rounds = args.rounds if args.rounds is not None else (3 if args.quick else 7)
    try:
        args.corruptions = check_corruptions(args.corruptions)
        severities = args.severities if args.severities is not None else ("3" if args.quick
                                                                           else None)
        args.severities = check_severities(
            None if severities is None else [_integer(s) for s in severities.split(",")])
    except InputError as error:
        raise InputError(f"--corruptions/--severities: {error}") from None
    if not (args.attack or args.corrupt):
        raise InputError("--no-attack and --no-corruptions leave nothing to time")
    args.out = check_output_dir(args.out or default_out_dir(), "--out")
    return args


def _integer(text: str) -> int | str:
    try:
        return int(text.strip())
    except ValueError:
        return text


def _model(device: str) -> torch.nn.Module:
    from shiftpool.models import create_model

    torch.manual_seed(0)
    return create_model(MODEL, num_classes=CLASSES).to(device).eval()


def _images(n: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    return x.to(device), y.to(device)


def _spread(values: Sequence[float]) -> dict[str, float]:
    q1, median, q3 = quartiles(list(values))
    return {"median": median, "q1": q1, "q3": q3}


def time_attack(args: argparse.Namespace) -> list[dict]:
    """PGD-k (L∞ and L2, random start, ε = 8/255 in pixel units) against ``k`` bare
    forward+backward passes, interleaved; one row per norm."""
    from shiftpool.metrics.adversarial import Attack, pgd

    model = _model(args.device)
    x, y = _images(args.attack_batch, args.device)
    k = args.steps

    def passes() -> None:
        for _ in range(k):
            inputs = x.detach().requires_grad_(True)
            loss = F.cross_entropy(model(inputs), y, reduction="sum")
            torch.autograd.grad(loss, inputs)

    runs: dict[str, Callable[[], object]] = {"passes": passes}
    for norm in ("linf", "l2"):
        settings = Attack("pgd", norm, steps=k)
        runs[f"pgd_{norm}"] = (lambda s=settings: pgd(model, x, y, 8 / 255, s))
    times = interleaved(runs, args.rounds, args.warmup, args.clock, cuda_sync(args.device))
    rows = []
    for norm in ("linf", "l2"):
        mine = times[f"pgd_{norm}"]
        ratios = [a / b for a, b in zip(mine, times["passes"], strict=True)]
        spread = _spread(ratios)
        rows.append({
            "attack": f"pgd-{k}", "norm": norm, "device": args.device,
            "batch": args.attack_batch, "pgd_ms": 1e3 * statistics.median(mine),
            "passes_ms": 1e3 * statistics.median(times["passes"]),
            "ratio": spread["median"], "ratio_iqr": [spread["q1"], spread["q3"]],
            "target": ATTACK_TARGET, "target_ok": spread["median"] <= ATTACK_TARGET,
        })
        print(f"pgd-{k} {norm}: {rows[-1]['ratio']:.3f}x {k} passes "
              f"[{spread['q1']:.3f}, {spread['q3']:.3f}]", file=sys.stderr, flush=True)
    return rows


def time_corruptions(args: argparse.Namespace) -> dict:
    """Every corruption at every severity and the model's forward pass on the same CPU batch,
    interleaved: throughput and share of the evaluation per corruption, and of the whole."""
    from shiftpool.metrics.corruptions import corrupt

    model = _model("cpu")
    x, _ = _images(args.batch, "cpu")

    def forward() -> None:
        with torch.no_grad():
            model(x)

    runs: dict[str, Callable[[], object]] = {"forward": forward}
    for name in args.corruptions:
        for severity in args.severities:
            generator = torch.Generator().manual_seed(0)
            runs[f"{name}@{severity}"] = (
                lambda n=name, s=severity, g=generator: corrupt(x, n, s, g))
    times = interleaved(runs, args.rounds, args.warmup, args.clock)
    forward_times = times.pop("forward")
    rows = []
    for key, values in times.items():
        name, severity = key.split("@")
        shares = [t / (t + f) for t, f in zip(values, forward_times, strict=True)]
        spread = _spread(shares)
        median = statistics.median(values)
        rows.append({
            "corruption": name, "severity": int(severity), "ms": 1e3 * median,
            "images_per_s": args.batch / median if median > 0 else float("inf"),
            "share": spread["median"], "share_iqr": [spread["q1"], spread["q3"]],
            "target_ok": spread["median"] <= SHARE_TARGET,
        })
    total = [sum(times[k][r] for k in times) for r in range(args.rounds)]
    whole = [t / (t + len(times) * f) for t, f in zip(total, forward_times, strict=True)]
    spread = _spread(whole)
    worst = max(rows, key=lambda r: r["share"])
    print(f"corruptions: {100 * spread['median']:.1f}% of the metric's time; worst "
          f"{worst['corruption']}@{worst['severity']} {100 * worst['share']:.1f}%",
          file=sys.stderr, flush=True)
    return {"batch": args.batch, "forward_ms": 1e3 * statistics.median(forward_times),
            "rows": rows, "share": spread["median"], "share_iqr": [spread["q1"], spread["q3"]],
            "target": SHARE_TARGET, "target_ok": all(r["target_ok"] for r in rows)}


def markdown_report(results: dict) -> str:
    """The run's settings, the attack overhead table and the corruption table."""
    meta = results["meta"]
    lines = [
        "# Robustness metrics: cost", "",
        f"{MODEL} on {IMAGE_SIZE}x{IMAGE_SIZE} RGB images; torch {meta['torch']}, "
        f"{meta['threads']} thread(s), {meta['cpu']}; clock: {meta['clock']} "
        f"({CLOCKS[meta['clock']][1]}); {meta['rounds']} interleaved rounds after "
        f"{meta['warmup']} warm-up call(s); load average before/after: "
        f"{meta['load_average']['before']} / {meta['load_average']['after']}.", "",
    ]
    if results.get("attack"):
        lines += [f"## PGD-k against k forward+backward passes (target <= {ATTACK_TARGET}x)", "",
                  "| attack | norm | device | batch | PGD ms | k passes ms | ratio [IQR] | ok |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in results["attack"]:
            lines.append(f"| {r['attack']} | {r['norm']} | {r['device']} | {r['batch']} | "
                         f"{r['pgd_ms']:.1f} | {r['passes_ms']:.1f} | {r['ratio']:.3f} "
                         f"[{r['ratio_iqr'][0]:.3f}, {r['ratio_iqr'][1]:.3f}] | "
                         f"{'yes' if r['target_ok'] else 'NO'} |")
        lines.append("")
    corruption = results.get("corruptions")
    if corruption:
        lines += [
            f"## Corruptions on the CPU (target: each <= {100 * SHARE_TARGET:.0f}% of its "
            "evaluation)", "",
            f"Batch {corruption['batch']}; the model's forward pass "
            f"{corruption['forward_ms']:.1f} ms. Share = corrupt / (corrupt + forward), median "
            f"over rounds [IQR]. The whole metric: {100 * corruption['share']:.1f}% "
            f"[{100 * corruption['share_iqr'][0]:.1f}, {100 * corruption['share_iqr'][1]:.1f}] "
            "of its time is corruption generation.", "",
            "| corruption | severity | ms | images/s | share [IQR] | ok |",
            "|---|---|---|---|---|---|"]
        for r in corruption["rows"]:
            lines.append(f"| {r['corruption']} | {r['severity']} | {r['ms']:.2f} | "
                         f"{r['images_per_s']:.0f} | {100 * r['share']:.1f}% "
                         f"[{100 * r['share_iqr'][0]:.1f}, {100 * r['share_iqr'][1]:.1f}] | "
                         f"{'yes' if r['target_ok'] else 'NO'} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark with command-line arguments ``argv``; returns the exit status.

    Raises:
        InputError: a bad argument (one line), before anything is timed.
    """
    args = parse_args(argv)
    malloc = configure_malloc(args.malloc)
    torch.set_num_threads(args.threads)
    before = load_average()
    results: dict = {}
    if args.attack:
        results["attack"] = time_attack(args)
    if args.corrupt:
        results["corruptions"] = time_corruptions(args)
    results["meta"] = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_name(),
        "clock": args.clock, "malloc": malloc, "rounds": args.rounds, "warmup": args.warmup,
        "quick": args.quick, "steps": args.steps, "model": MODEL,
        "severities": list(args.severities), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average": {"before": before, "after": load_average()},
    }
    atomic_write_text(args.out / "robustness.json", json.dumps(results, indent=1))
    atomic_write_text(args.out / "robustness.md", markdown_report(results) + "\n")
    print(f"wrote {args.out / 'robustness.json'} and {args.out / 'robustness.md'}")
    return 0


def run_script(argv: Sequence[str] | None = None) -> int:
    """:func:`main` for a script: a bad argument is one line on stderr and exit status 2."""
    try:
        return main(argv)
    except InputError as error:
        print(f"shiftpool benchmark robustness: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run_script())
