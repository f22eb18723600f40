"""A sweep of 8 tiny units (4 methods x 2 seeds, a small CNN on the embedded MNIST subset)
through ``compare``: the Ray launcher (a local Ray instance, 2 workers x 1 thread) against the
local launcher (1 process x 2 threads), on this machine's 2 cores.

Three runs of the same sweep, each into a fresh folder:

* ``local, 2 threads``: the default launcher, the units one after another in one process;
* ``ray, 2 x 1 thread``: each unit a Ray task of 1 CPU on a local Ray instance of 2 CPUs,
  started (and shut down) by the sweep, so its start-up counts;
* ``local, 1 thread`` (the reference): what the units' own work (training and evaluation)
  costs on one thread in a warm process — "the training itself".

The first two each run in a fresh Python process, as ``shiftpool compare`` would (their wall
times include importing torch); the reference runs here, after a warm-up sweep.

Where the time goes, per worker: the engine's start-up (Ray's), each worker's warm-up (a
process starting, importing torch; its first data load), the gap between one unit's end and the
next one's start (scheduling), each unit's time beyond the reference's, and the end (shutting
Ray down). The scheduling overhead per unit is what each unit costs beyond the training itself
once the workers are up (gap + time beyond the reference): target under 2 s with Ray. The fixed
costs, spread over the 8 units, are reported too: ``(workers x wall time - the reference's
summed unit times) / units``.

Writes ``sweep.json`` and ``sweep.md`` under ``--out`` (default ``benchmarks/results``). Needs
``shiftpool[ray,demo]``. Example::

    python benchmarks/sweep.py --train-subset 500
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from shiftpool.core.io import atomic_write_json, atomic_write_text
from shiftpool.harness.comparison import compare
from shiftpool.harness.launch import RayLauncher
from shiftpool.train import TrainConfig

METHODS = ["max", "avg", "blur", "aps"]
SEEDS = [0, 1]
TARGET_S = 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-subset", type=int, default=500,
                        help="training images per unit (default 500)")
    parser.add_argument("--eval-images", type=int, default=100,
                        help="test images per unit (default 100)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per unit (default 1)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results",
                        help="output folder for sweep.json and sweep.md")
    parser.add_argument("--child", choices=("local", "ray"), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def unit_config(args: argparse.Namespace, threads: int) -> TrainConfig:
    return TrainConfig(model="simple_cnn", model_options={"channels": [8, 16]},
                       dataset="mnist5k", train_subset=args.train_subset, epochs=args.epochs,
                       batch_size=50, amp="off", device="cpu", num_threads=threads,
                       progress=False, tensorboard=False, eval_protocol="aps",
                       eval_max_images=args.eval_images, eval_metrics=["accuracy",
                                                                       "consistency"])


def sweep(args: argparse.Namespace, threads: int, launcher: Any) -> dict[str, Any]:
    """One run of the sweep into a fresh folder: wall time, and when and where each unit ran."""
    with tempfile.TemporaryDirectory() as folder:
        clock = time.perf_counter()
        result = compare(unit_config(args, threads), METHODS, folder, seeds=SEEDS,
                         figures=False, log=lambda text: None, launcher=launcher)
        wall = time.perf_counter() - clock
    done = result.sweep
    assert done is not None and done.ok
    units = {o.unit.key: {"start": o.attempts[-1].started - done.started,
                          "seconds": o.attempts[-1].seconds, "worker": o.attempts[-1].pid}
             for o in done.outcomes}
    return {"wall_s": wall, "sweep_s": done.seconds, "startup_s": done.startup_s,
            "units": units, "acc": {row.method: row.values("acc") for row in result.rows}}


def timeline(result: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """Where a sweep's time went, per worker process: warm-up (from the end of the engine's
    start-up to its first unit), gaps between its units (scheduling), its units' own time
    beyond the reference's (a first unit in a fresh process, the unit's files), and the end
    (from the last unit to the end of the sweep: results, shutting the engine down)."""
    by_worker: dict[int, list[dict[str, float]]] = {}
    for key, unit in result["units"].items():
        by_worker.setdefault(unit["worker"], []).append(
            {**unit, "excess": unit["seconds"] - reference["units"][key]["seconds"]})
    warmup, gaps, firsts, later = [], [], [], []
    for units in by_worker.values():
        units.sort(key=lambda u: u["start"])
        warmup.append(units[0]["start"] - result["startup_s"])
        firsts.append(units[0]["excess"])
        for before, after in itertools.pairwise(units):
            gaps.append(after["start"] - before["start"] - before["seconds"])
            later.append(after["excess"])
    last = max(u["start"] + u["seconds"] for u in result["units"].values())

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    return {"workers": len(by_worker), "worker_warmup_s": mean(warmup),
            "first_unit_excess_s": mean(firsts), "gap_s": mean(gaps),
            "later_unit_excess_s": mean(later), "end_s": result["sweep_s"] - last}


def fresh_process(args: argparse.Namespace, launcher: str) -> dict[str, Any]:
    """:func:`sweep` with ``launcher`` in a new Python process; its wall time from the start
    of that process (importing torch included)."""
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "result.json"
        clock = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--child", launcher, "--child-out",
                        str(output), "--train-subset", str(args.train_subset), "--eval-images",
                        str(args.eval_images), "--epochs", str(args.epochs)], check=True,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - clock
        result = json.loads(output.read_text())
    return {**result, "sweep_wall_s": result["wall_s"], "wall_s": wall,
            "process_start_s": wall - result["wall_s"],
            "units": {k: {**u, "worker": int(u["worker"])} for k, u in result["units"].items()}}


def child(args: argparse.Namespace) -> None:
    if args.child == "ray":
        result = sweep(args, 1, RayLauncher(num_cpus=2, init_options={
            "object_store_memory": 100 * 2**20}))
    else:
        result = sweep(args, 2, "local")
    atomic_write_json(args.child_out, result)


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    sweep(args, 1, "local")  # warm-up: imports, the data set's first load
    reference = sweep(args, 1, "local")
    local = fresh_process(args, "local")
    ray = fresh_process(args, "ray")
    n = len(reference["units"])
    work = sum(unit["seconds"] for unit in reference["units"].values())
    for result, workers in ((local, 1), (ray, 2)):
        result["workers"] = workers
        result["overhead_per_unit_s"] = (workers * result["wall_s"] - work) / n
        result["timeline"] = timeline(result, reference)
        # per unit, once the workers are up: the gap before it and its own time beyond the
        # reference's
        result["steady_overhead_per_unit_s"] = (result["timeline"]["gap_s"]
                                                + result["timeline"]["later_unit_excess_s"])
    return {"units": n, "methods": METHODS, "seeds": SEEDS, "reference": reference,
            "local": local, "ray": ray, "ray_equals_reference": ray["acc"] == reference["acc"],
            "target_s": TARGET_S, "met": ray["steady_overhead_per_unit_s"] < TARGET_S,
            "meta": metadata(args)}


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    return {"train_subset": args.train_subset, "eval_images": args.eval_images,
            "epochs": args.epochs, "cores": os.cpu_count(), "torch": torch.__version__,
            "ray": ray.__version__, "python": platform.python_version(),
            "load_average": os.getloadavg()[0], "when": time.strftime("%Y-%m-%d %H:%M:%S")}


def markdown(results: dict[str, Any]) -> str:
    meta, ref = results["meta"], results["reference"]
    n = results["units"]
    work = sum(unit["seconds"] for unit in ref["units"].values())
    lines = [
        "# Sweep: Ray launcher against the local launcher",
        "",
        f"{n} units ({', '.join(results['methods'])} x seeds "
        f"{', '.join(map(str, results['seeds']))}): simple_cnn [8, 16] on {meta['train_subset']} "
        f"embedded MNIST images, {meta['epochs']} epoch(s), evaluated on {meta['eval_images']} "
        f"(accuracy, consistency); {meta['cores']} cores (load average "
        f"{meta['load_average']:.1f} at the end: the machine is shared), torch {meta['torch']}, "
        f"ray {meta['ray']}, {meta['when']}.",
        f"Reference, the units' own work (training and evaluation, 1 thread, warm process): "
        f"{work / n:.2f} s per unit, {work:.1f} s in all.",
        "",
        "| launcher | workers x threads | wall s | process start s | engine start-up s "
        "| worker warm-up s "
        "| first unit beyond ref. s | gap between units s | later unit beyond ref. s "
        "| end s | overhead per unit, all in s | per unit once up s | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, threads in (("local", 2), ("ray", 1)):
        r, t = results[name], results[name]["timeline"]
        target = f"< {results['target_s']:g} s" if name == "ray" else ""
        met = ("yes" if results["met"] else "**no**") if name == "ray" else ""
        lines.append(
            f"| {name} | {r['workers']} x {threads} | {r['wall_s']:.1f} | "
            f"{r['process_start_s']:.1f} | {r['startup_s']:.1f} | "
            f"{t['worker_warmup_s']:.1f} | {t['first_unit_excess_s']:.2f} | {t['gap_s']:.2f} | "
            f"{t['later_unit_excess_s']:.2f} | {t['end_s']:.1f} | "
            f"{r['overhead_per_unit_s']:.2f} | {r['steady_overhead_per_unit_s']:.2f} | "
            f"{target} | {met} |")
    lines += [
        "",
        "*Process start*: Python starting and importing torch and shiftpool, up to the "
        "sweep. Per worker process (means): *worker warm-up* from the end of the engine's "
        "start-up to its first unit (Ray: a worker process starting, importing torch and "
        "shiftpool); *first unit beyond ref.* that unit's own time beyond the reference's (a "
        "fresh process's first training imports torch._dynamo, about 1.4 s, and loads the data "
        "set); *gap between units* from one unit's end to the next one's start in the same "
        "worker (scheduling); *later unit beyond ref.*; *end* from the last unit's end to the "
        "end of the sweep (Ray: shutting the instance down). *Overhead per unit, all in*: "
        "(workers x wall time - the reference's summed unit times) / units, every fixed cost "
        "spread over these few units. *Per unit once up*: gap + later unit beyond ref., what "
        "each further unit costs (the target). Accuracies of the Ray sweep equal the "
        "reference's: "
        f"{'yes' if results['ray_equals_reference'] else '**no**'}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "sweep.json", results)
    text = markdown(results)
    atomic_write_text(args.out / "sweep.md", text)
    print(text)


if __name__ == "__main__":
    main()
