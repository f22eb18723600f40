"""Time every shiftpool downsampler against max pooling and against its reference implementations.

For each device, shape, dtype and memory format, the benchmark times

* ``fwd``: the forward pass in eval mode under ``torch.no_grad()`` (inference), and
* ``fwd+bwd``: forward in training mode plus the backward pass to the input and to the
  operator's parameters (what a training step pays),

of every operator, of ``F.max_pool2d(x, 2, 2)``, and of each operator's reference
implementations (:mod:`shiftpool.benchmarks.references`: adobe's and timm's BlurPool, kornia's
BlurPool2D and MaxBlurPool2D, the official APS, LPS and TIPS layers; each against shiftpool
built with the options that compute the same function, weights copied). Each round runs every
contender once on the same input, one after the other; a ratio is the median over rounds of
the per-round ratio, with its interquartile range. A reference that is not installed (or an
anchors folder that is absent) is skipped with a note in the results.

``--clock cpu`` (default) reads the timing thread's CPU time with torch on one thread: what the
work cost, whatever else a shared machine runs. ``--clock wall`` reads elapsed time, for quiet
machines, several threads and GPUs. ``--malloc fast`` (default) raises glibc's mmap and trim
thresholds first (:mod:`shiftpool.core.allocator`): with the defaults, large tensors are mapped
anew on every call and identical calls differ 2-8x. The results record the clock, the allocator
setting and the load average before and after the run. bf16 is measured by casting the input,
the operator and the references to bf16 (``--dtype``).

Targets: every operator's fwd+bwd at most 1.0x its fastest reference; ``blur``, ``maxblur``,
``aps``, ``s3pool`` at most 1.5x max pool's fwd+bwd, ``tips``, ``lps`` at most 3x; no operator
slower in channels_last than contiguous (within ``--noise``).

Writes ``downsample.json`` and ``downsample.md`` under ``--out``: by default
``benchmarks/results`` of the source tree when shiftpool runs from one, else
``benchmark-results`` in the current folder. Every argument is checked before anything is
timed; a bad one is one line naming it. Example::

    shiftpool benchmark -- --quick
    shiftpool benchmark -- --op lps --no-references --shape 32,64,16,16 --only-extra-shapes
    shiftpool benchmark -- --device cuda --clock wall --threads 8 --out /tmp/bench
    python -m shiftpool.benchmarks.downsample --quick
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from shiftpool.benchmarks.references import (
    REFERENCES,
    ReferenceMissing,
    copy_weights_to_shiftpool,
    reference_layer,
)
from shiftpool.benchmarks.timing import CLOCKS, cuda_sync, interleaved, load_average, ratio_stats
from shiftpool.cli.checks import check_output_dir
from shiftpool.cli.options import OneLineParser
from shiftpool.core.allocator import MALLOC_SETTINGS, configure_malloc
from shiftpool.core.checks import check_choice, check_int, check_range
from shiftpool.core.errors import InputError
from shiftpool.core.io import atomic_write_text
from shiftpool.downsample import create_downsample, list_downsamples

BASELINE = "max_pool2d"
#: ResNet-50/18's first downsampling point at batch 16 (the issue's shape), ResNet-20's at 128.
DEFAULT_SHAPES = ((16, 64, 56, 56), (128, 32, 32, 32))
TARGETS = {"blur": 1.5, "maxblur": 1.5, "aps": 1.5, "s3pool": 1.5, "tips": 3.0, "lps": 3.0}
REFERENCE_TARGET = 1.0
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
STRIDE = 2


def default_out_dir() -> Path:
    """``benchmarks/results`` of the source tree shiftpool runs from, else
    ``./benchmark-results`` (the output folder only: no code is ever looked up there)."""
    import shiftpool

    root = Path(shiftpool.__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "benchmarks").is_dir():
        return root / "benchmarks" / "results"
    return Path("benchmark-results")


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options; a bad one raises one :class:`InputError` line."""
    parser = OneLineParser(prog="shiftpool benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats: a short run")
    parser.add_argument("--device", action="append", choices=("cpu", "cuda"),
                        help="device(s) to time; default cpu, plus cuda when available")
    parser.add_argument("--shape", action="append", default=[], metavar="N,C,H,W",
                        help="an extra input shape (repeatable), timed after the default ones")
    parser.add_argument("--only-extra-shapes", action="store_true",
                        help="time only the --shape shapes, not the default ones")
    parser.add_argument("--dtype", action="append", choices=tuple(DTYPES),
                        help="dtype(s) to time; default fp32 and bf16")
    parser.add_argument("--format", action="append", choices=tuple(FORMATS),
                        help="memory format(s); default both")
    parser.add_argument("--op", action="append", help="operator(s) to time; default all")
    parser.add_argument("--threads", "--num-threads", dest="threads", type=int, default=None,
                        help="torch.set_num_threads, >= 1 (default: 1 with --clock cpu, else "
                        "all cores)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="cpu",
                        help="cpu: the timing thread's CPU time (one thread; shared machines, "
                        "default); wall: elapsed time (quiet machines, threads, GPUs)")
    parser.add_argument("--malloc", choices=MALLOC_SETTINGS, default="fast",
                        help="allocator setting applied first (default fast: raised glibc "
                        "thresholds; default: glibc as it is)")
    parser.add_argument("--references", action=argparse.BooleanOptionalAction, default=True,
                        help="also time each operator's reference implementations (default)")
    parser.add_argument("--warmup", type=int, help="warm-up runs, >= 0 (default 5, quick 2)")
    parser.add_argument("--repeats", type=int, help="timed runs, >= 1 (default 20, quick 5)")
    parser.add_argument("--noise", type=float, default=0.10,
                        help="channels_last counts as slower only above (1 + noise) x contiguous")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder for downsample.json and downsample.md (default: "
                        "benchmarks/results of the source tree, else ./benchmark-results)")
    return parser


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """``"32,128,28,28"`` → ``(32, 128, 28, 28)``; four integers >= 1, else an error."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) < 1:
        raise InputError(f"--shape takes four comma-separated integers >= 1 (N,C,H,W), "
                         f"got {text!r}")
    return values  # type: ignore[return-value]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check every argument (before anything is timed)."""
    args = build_parser().parse_args(argv)
    if args.threads is None:
        args.threads = 1 if args.clock == "cpu" else (os.cpu_count() or 1)
    check_int(args.threads, "--threads", minimum=1)
    if args.clock == "cpu" and args.threads != 1:
        raise InputError(f"--clock cpu reads one thread's CPU time: use --threads 1 (got "
                         f"{args.threads}), or --clock wall")
    if args.warmup is not None:
        check_int(args.warmup, "--warmup", minimum=0)
    if args.repeats is not None:
        check_int(args.repeats, "--repeats", minimum=1)
    check_range(args.noise, "--noise", 0.0)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
    args.repeats = args.repeats if args.repeats is not None else (5 if args.quick else 20)
    if args.device is None:
        args.device = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    elif "cuda" in args.device and not torch.cuda.is_available():
        raise InputError("--device cuda: CUDA is not available here; use --device cpu")
    if "cuda" in args.device and args.clock == "cpu":
        raise InputError("--device cuda: GPU work is not CPU time; use --clock wall")
    extra = [parse_shape(s) for s in args.shape]
    if args.only_extra_shapes and not extra:
        raise InputError("--only-extra-shapes needs at least one --shape N,C,H,W")
    args.shapes = extra if args.only_extra_shapes else [*DEFAULT_SHAPES, *extra]
    args.dtype = args.dtype or ["fp32", "bf16"]
    args.format = args.format or list(FORMATS)
    for name in args.op or ():
        check_choice(name, "--op", list_downsamples())
    args.op = args.op or list_downsamples()
    args.out = check_output_dir(args.out or default_out_dir(), "--out")
    return args


def interleaved_times_ms(
    runs: dict[str, Callable[[], object]], device: str, warmup: int, repeats: int,
    clock: str = "wall",
) -> dict[str, list[float]]:
    """Times in ms of each callable, ``repeats`` interleaved rounds after ``warmup`` calls
    (:func:`shiftpool.benchmarks.timing.interleaved`)."""
    times = interleaved(runs, repeats, warmup, clock, cuda_sync(device))
    return {key: [1e3 * t for t in values] for key, values in times.items()}


def forward_fn(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """Inference: eval mode, no autograd graph."""

    def run():
        with torch.no_grad():
            return module(x)

    return run


def forward_backward_fn(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """A training step's share: forward in train mode, gradients to the input and parameters."""
    x = x.detach().requires_grad_()
    inputs = [x, *(p for p in module.parameters() if p.requires_grad)]
    grad_out = torch.ones_like(module(x))

    def run():
        return torch.autograd.grad(module(x), inputs, grad_out)

    return run


PASSES = {"fwd": (forward_fn, False), "fwd_bwd": (forward_backward_fn, True)}


class MaxPool(torch.nn.Module):
    """The baseline, ``F.max_pool2d(x, 2, 2)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, STRIDE, STRIDE)


def build(name: str, channels: int, device: str, dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    module = MaxPool() if name == BASELINE else create_downsample(name, channels, STRIDE)
    return module.to(device=device, dtype=dtype)


def _median_ratio(numerators: list[float], denominators: list[float]) -> float:
    return ratio_stats(numerators, denominators)["median"]


def time_operator(
    name: str, inputs: dict[str, torch.Tensor], args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Time operator ``name`` and max pool on the same inputs, one per memory format.

    For each pass (``fwd``, ``fwd_bwd``) all formats' operator and baseline runs are
    interleaved. Per format: the operator's and the baseline's median ms, the median over
    rounds of their ratio and, for channels_last, the median ratio to contiguous.
    """
    some = next(iter(inputs.values()))
    device, channels = some.device.type, some.shape[1]
    module = build(name, channels, device, some.dtype)
    base = build(BASELINE, channels, device, some.dtype)
    result: dict[str, dict[str, float]] = {fmt: {} for fmt in inputs}
    for key, (make_run, training) in PASSES.items():
        module.train(training)
        runs = {}
        for fmt, x in inputs.items():
            runs[f"{fmt}/op"] = make_run(module, x)
            runs[f"{fmt}/base"] = make_run(base, x)
        times = interleaved_times_ms(runs, device, args.warmup, args.repeats, args.clock)
        for fmt in inputs:
            op, ref = times[f"{fmt}/op"], times[f"{fmt}/base"]
            result[fmt][f"{key}_ms"] = statistics.median(op)
            result[fmt][f"{key}_base_ms"] = statistics.median(ref)
            stats = ratio_stats(op, ref)
            result[fmt][f"{key}_ratio"] = stats["median"]
            result[fmt][f"{key}_ratio_iqr"] = [stats["q1"], stats["q3"]]
            if fmt == "channels_last" and "contiguous" in inputs:
                result[fmt][f"{key}_cl_vs_contiguous"] = _median_ratio(
                    op, times["contiguous/op"]
                )
    return result


def reference_groups(ops: Sequence[str]) -> dict[tuple[str, str], list[str]]:
    """``(operator, options as text) -> reference names`` for the operators ``ops``: the
    references that one shiftpool configuration is compared with in the same rounds."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, (op, options, _) in REFERENCES.items():
        if op in ops:
            text = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
            groups.setdefault((op, text), []).append(name)
    return groups


def time_references(
    op: str, names: list[str], inputs: dict[str, torch.Tensor], args: argparse.Namespace,
    notes: list[str],
) -> list[dict]:
    """Time shiftpool's ``op`` (with the references' options, weights copied) against each
    reference in ``names`` that is available, every contender once per round.

    Returns one row per format, pass and reference: the median per-round ratio
    ``shiftpool / reference`` with its IQR, both medians in ms, and per format and pass one
    row against the fastest reference of each round (``reference="fastest"``).
    """
    some = next(iter(inputs.values()))
    device, channels, dtype = some.device.type, some.shape[1], some.dtype
    options = REFERENCES[names[0]][1]
    torch.manual_seed(0)
    ours = create_downsample(op, channels, STRIDE, **options)
    references = {}
    for name in names:
        try:
            torch.manual_seed(0)
            references[name] = reference_layer(name, channels, STRIDE)
        except ReferenceMissing as missing:
            note = f"{name}: skipped, {missing}"
            if note not in notes:
                notes.append(note)
                print(note, file=sys.stderr, flush=True)
            continue
        copy_weights_to_shiftpool(references[name], ours)
    if not references:
        return []
    modules = {"shiftpool": ours, **references}
    for module in modules.values():
        module.to(device=device, dtype=dtype)
    rows = []
    for key, (make_run, training) in PASSES.items():
        runs = {}
        for module in modules.values():
            module.train(training)
        for fmt, x in inputs.items():
            for name, module in modules.items():
                runs[f"{fmt}/{name}"] = make_run(module, x)
        try:
            times = interleaved_times_ms(runs, device, args.warmup, args.repeats, args.clock)
        except RuntimeError as error:  # e.g. a reference that does not take this dtype
            notes.append(f"{op} vs {', '.join(references)} ({key}, {dtype}): {error}"[:300])
            continue
        for fmt in inputs:
            mine = times[f"{fmt}/shiftpool"]
            fastest = [min(times[f"{fmt}/{name}"][r] for name in references)
                       for r in range(len(mine))]
            for name in [*references, "fastest"]:
                theirs = fastest if name == "fastest" else times[f"{fmt}/{name}"]
                stats = ratio_stats(mine, theirs)
                rows.append({
                    "format": fmt, "pass": key, "op": op, "options": options,
                    "reference": name, "ms": statistics.median(mine),
                    "reference_ms": statistics.median(theirs), "ratio": stats["median"],
                    "ratio_iqr": [stats["q1"], stats["q3"]],
                    "target": REFERENCE_TARGET if name == "fastest" else None,
                    "target_ok": stats["median"] <= REFERENCE_TARGET if name == "fastest"
                    else None,
                })
    return rows


def run_benchmark(args: argparse.Namespace) -> dict:
    """Every operator against max pool (``rows``) and against its references (``references``).

    Returns:
        ``{"rows": [...], "references": [...], "notes": [...]}``: one row per device, shape,
        dtype, memory format and operator, and one for max pool; one reference row per
        comparison (see :func:`time_references`); notes on skipped references.
    """
    rows: list[dict] = []
    reference_rows: list[dict] = []
    notes: list[str] = []
    for device in args.device:
        for shape in args.shapes:
            for dtype_name in args.dtype:
                torch.manual_seed(0)
                x = torch.randn(shape, device=device, dtype=DTYPES[dtype_name])
                inputs = {fmt: x.contiguous(memory_format=FORMATS[fmt]) for fmt in args.format}
                config = {"device": device, "shape": list(shape), "dtype": dtype_name}
                op_rows = []
                for name in args.op:
                    try:
                        timed = time_operator(name, inputs, args)
                    except (RuntimeError, NotImplementedError) as error:
                        for fmt in inputs:
                            op_rows.append({**config, "format": fmt, "op": name,
                                            "error": str(error)[:200]})
                        print(f"{config} {name}: {error}", file=sys.stderr, flush=True)
                        continue
                    for fmt, times in timed.items():
                        op_rows.append({**config, "format": fmt, "op": name, **times})
                        print(_progress_line(op_rows[-1]), file=sys.stderr, flush=True)
                for fmt in inputs:
                    fmt_rows = [r for r in op_rows if r["format"] == fmt]
                    rows.append({**config, "format": fmt, "op": BASELINE,
                                 **baseline_times(fmt_rows)})
                    rows.extend(fmt_rows)
                if not args.references:
                    continue
                for (op, _), names in reference_groups(args.op).items():
                    for row in time_references(op, names, inputs, args, notes):
                        reference_rows.append({**config, **row})
                        print(_reference_line(reference_rows[-1]), file=sys.stderr, flush=True)
    judge_targets(rows, args.noise)
    return {"rows": rows, "references": reference_rows, "notes": notes}


def _reference_line(row: dict) -> str:
    shape = "x".join(str(v) for v in row["shape"])
    q1, q3 = row["ratio_iqr"]
    return (f"{row['device']} {shape} {row['dtype']} {row['format']:<13} {row['op']:<8} "
            f"{row['pass']:<7} vs {row['reference']:<22} {row['ratio']:.2f}x "
            f"[{q1:.2f}, {q3:.2f}]")


def baseline_times(rows: list[dict]) -> dict[str, float]:
    """Max pool's median times over the rounds in which the operators of ``rows`` were timed."""
    timed = [r for r in rows if "error" not in r]
    return {
        f"{key}_ms": statistics.median(r[f"{key}_base_ms"] for r in timed) if timed else math.nan
        for key in PASSES
    }


def judge_targets(rows: list[dict], noise: float) -> None:
    """Add ``target``, ``target_ok`` and ``cl_ok`` to each operator row."""
    for row in rows:
        if row["op"] == BASELINE or "error" in row:
            continue
        target = TARGETS.get(row["op"])
        row["target"] = target
        row["target_ok"] = None if target is None else row["fwd_bwd_ratio"] <= target
        if "fwd_bwd_cl_vs_contiguous" in row:
            row["cl_ok"] = all(row[f"{key}_cl_vs_contiguous"] <= 1 + noise for key in PASSES)


def _progress_line(row: dict) -> str:
    shape = "x".join(str(v) for v in row["shape"])
    return (f"{row['device']} {shape} {row['dtype']} {row['format']:<13} {row['op']:<9} "
            f"fwd {row['fwd_ms']:8.3f} ms ({row['fwd_ratio']:.2f}x)  "
            f"fwd+bwd {row['fwd_bwd_ms']:8.3f} ms ({row['fwd_bwd_ratio']:.2f}x)")


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("pass" if ok else "**miss**")


def _section_key(row: dict) -> tuple:
    return (row["device"], tuple(row["shape"]), row["dtype"], row["format"])


def _format_row(r: dict) -> str:
    if "error" in r:
        return f"| {r['op']} | error: {r['error'].splitlines()[0]} |||||||||"
    target = f"≤ {r['target']:.1f}x" if r.get("target") else ""
    cl = {key: f"{r[f'{key}_cl_vs_contiguous']:.2f}" if f"{key}_cl_vs_contiguous" in r else ""
          for key in PASSES}
    return (
        f"| {r['op']} | {r['fwd_ms']:.3f} | {r.get('fwd_ratio', 1.0):.2f} "
        f"| {r['fwd_bwd_ms']:.3f} | {r.get('fwd_bwd_ratio', 1.0):.2f} | {target} "
        f"| {_verdict(r.get('target_ok'))} | {cl['fwd']} | {cl['fwd_bwd']} "
        f"| {_verdict(r.get('cl_ok'))} |"
    )


def markdown_report(rows: list[dict], meta: dict, references: Sequence[dict] = (),
                    notes: Sequence[str] = ()) -> str:
    """Markdown: the run's settings, the reference comparisons, one table per configuration
    against max pool, the misses."""
    load = meta.get("load_average") or {}
    lines = [
        "# Downsampler benchmark",
        "",
        f"torch {meta['torch']}, {meta['threads']} threads, CPU `{meta['cpu']}`"
        + (f", GPU `{meta['gpu']}`" if meta.get("gpu") else "")
        + f"; {meta['repeats']} interleaved rounds after {meta['warmup']} warm-up calls"
        + (" (quick run)" if meta["quick"] else "") + f"; stride {meta['stride']}.",
        f"Clock: {meta.get('clock', 'wall')} ({CLOCKS[meta.get('clock', 'wall')][1]}). "
        f"Allocator: {meta.get('malloc', {}).get('detail', 'not recorded')}. "
        f"Load average (1, 5, 15 min): before {load.get('before')}, after {load.get('after')}.",
        "",
    ]
    if references or notes:
        lines += _reference_section(references, notes)
    lines += [
        "## Against max pooling",
        "",
        "fwd: eval mode, no grad. fwd+bwd: train mode, gradients to the input and parameters. "
        "ms: medians. `/ max`: median over rounds of the time over `F.max_pool2d(x, 2, 2)` on "
        "the same input in the same round. Target: limit of fwd+bwd `/ max`. "
        "CL/contig: channels_last time over contiguous time of the same operator (median "
        f"over rounds), fwd and fwd+bwd, each at most {1 + meta['noise']:.2f} to pass.",
    ]
    for key in dict.fromkeys(_section_key(r) for r in rows):
        device, shape, dtype, fmt = key
        lines += [
            "",
            f"### {device}, {'x'.join(map(str, shape))}, {dtype}, {fmt}",
            "",
            "| op | fwd ms | fwd / max | fwd+bwd ms | fwd+bwd / max | target | status "
            "| CL/contig fwd | CL/contig fwd+bwd | CL status |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
            *(_format_row(r) for r in rows if _section_key(r) == key),
        ]
    misses = [r for r in rows if r.get("target_ok") is False or r.get("cl_ok") is False]
    lines += ["", f"## Misses: {len(misses)}", ""]
    for r in misses:
        what = []
        if r.get("target_ok") is False:
            what.append(f"fwd+bwd {r['fwd_bwd_ratio']:.2f}x max pool (target {r['target']}x)")
        if r.get("cl_ok") is False:
            what.append("channels_last over contiguous: fwd "
                        f"{r['fwd_cl_vs_contiguous']:.2f}x, fwd+bwd "
                        f"{r['fwd_bwd_cl_vs_contiguous']:.2f}x")
        lines.append(f"- {r['op']} ({r['device']}, {'x'.join(map(str, r['shape']))}, "
                     f"{r['dtype']}, {r['format']}): {'; '.join(what)}")
    return "\n".join(lines) + "\n"


def _reference_section(references: Sequence[dict], notes: Sequence[str]) -> list[str]:
    """Markdown: shiftpool / reference, one table per operator configuration."""
    lines = [
        "## Against the reference implementations",
        "",
        "shiftpool built with the options that compute the reference's function (weights "
        "copied), each contender once per round on the same input. Cell: median over rounds of "
        "shiftpool's time over the reference's, [interquartile range]; `fastest`: over the "
        f"fastest reference of each round (target <= {REFERENCE_TARGET:.1f}).",
        "",
    ]
    keys = dict.fromkeys((r["op"], json.dumps(r["options"], sort_keys=True)) for r in references)
    for op, options in keys:
        group = [r for r in references
                 if (r["op"], json.dumps(r["options"], sort_keys=True)) == (op, options)]
        columns = list(dict.fromkeys((r["dtype"], r["format"], r["pass"]) for r in group))
        configs = list(dict.fromkeys((r["device"], tuple(r["shape"]), r["reference"])
                                     for r in group))
        lines += [f"### {op} ({', '.join(f'{k}={v}' for k, v in json.loads(options).items())})",
                  "",
                  "| device, shape | reference | "
                  + " | ".join(f"{d} {f} {p.replace('_', '+')}" for d, f, p in columns) + " |",
                  "|---|---|" + "---:|" * len(columns)]
        for device, shape, reference in configs:
            cells = []
            for dtype, fmt, key in columns:
                found = [r for r in group if (r["device"], tuple(r["shape"]), r["reference"],
                                              r["dtype"], r["format"], r["pass"])
                         == (device, shape, reference, dtype, fmt, key)]
                if not found:
                    cells.append("")
                    continue
                r = found[0]
                mark = "**" if r.get("target_ok") is False else ""
                cells.append(f"{mark}{r['ratio']:.2f}{mark} [{r['ratio_iqr'][0]:.2f}, "
                             f"{r['ratio_iqr'][1]:.2f}]")
            lines.append(f"| {device}, {'x'.join(map(str, shape))} | {reference} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    if notes:
        lines += ["Notes:", "", *(f"- {note}" for note in notes), ""]
    return lines


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_metadata(args: argparse.Namespace) -> dict:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "gpu": torch.cuda.get_device_name() if "cuda" in args.device else None,
        "quick": args.quick,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "noise": args.noise,
        "stride": STRIDE,
        "targets": TARGETS,
        "reference_target": REFERENCE_TARGET,
        "clock": args.clock,
        "malloc": getattr(args, "malloc_record", None),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark with command-line arguments ``argv``; returns the exit status.

    Raises:
        InputError: a bad argument (one line), before anything is timed.
    """
    args = parse_args(argv)
    args.malloc_record = configure_malloc(args.malloc)
    torch.set_num_threads(args.threads)
    before = load_average()
    results = run_benchmark(args)
    meta = {**run_metadata(args), "load_average": {"before": before, "after": load_average()}}
    rows, references, notes = results["rows"], results["references"], results["notes"]
    atomic_write_text(args.out / "downsample.json", json.dumps(
        {"meta": meta, "rows": rows, "references": references, "notes": notes}, indent=1))
    atomic_write_text(args.out / "downsample.md",
                      markdown_report(rows, meta, references, notes))
    print(f"wrote {args.out / 'downsample.json'} and {args.out / 'downsample.md'}")
    return 0


def run_script(argv: Sequence[str] | None = None) -> int:
    """:func:`main` for a script: a bad argument is one line on stderr and exit status 2."""
    try:
        return main(argv)
    except InputError as error:
        print(f"shiftpool benchmark: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run_script())
