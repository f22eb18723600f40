"""``shiftpool evaluate``: accuracy and shift invariance of a checkpoint (a classifier under an
invariance protocol; a segmentation model by mIoU, pixel accuracy, mASSC, equivariance error
and MSB)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from shiftpool.cli.checks import (
    NUM_THREADS,
    check_device,
    check_input_dir,
    check_output_file,
    set_threads,
    threads_used,
)
from shiftpool.cli.options import (
    ROBUSTNESS_OPTIONS,
    Option,
    add_config_file,
    add_options,
    bool_value,
    choice_value,
    int_value,
    merge_settings,
    metric_names_value,
    robustness_settings,
)
from shiftpool.core.errors import InputError
from shiftpool.train.config import (
    FIELD_CHOICES,
    TrainConfig,
)

if TYPE_CHECKING:
    from torch import nn

    from shiftpool.harness.evaluation import SegmentationEvaluation
    from shiftpool.metrics import EvaluationResult

#: Options that only a classifier's evaluation takes.
CLASSIFICATION_ONLY = ("metrics", "protocol", "eps", "corruptions")


# -- evaluate ---------------------------------------------------------------------------------


def _evaluate_options() -> tuple[Option, ...]:
    from shiftpool.metrics import DEFAULT_METRICS, list_protocols

    return (
        Option("task", "the checkpoint's task, checked against it: classification or "
               "segmentation", choice_value(lambda: FIELD_CHOICES["task"]), shown="the run's"),
        Option("metrics", "comma-separated metrics, or 'all' for every one", metric_names_value,
               default=tuple(DEFAULT_METRICS), shown=",".join(DEFAULT_METRICS),
               metavar="A,B,..."),
        Option("protocol", f"protocol: {', '.join(list_protocols())}", choice_value(list_protocols),
               shown="the run's"),
        Option("max_shift", "override the protocol's largest shift, >= 1 (segmentation: the "
               "largest shift of mASSC and equivariance error, default 8)",
               int_value(minimum=1), metavar="N"),
        Option("max_images", "evaluate a seeded random subset of N test images, >= 1",
               int_value(minimum=1), shown="every test image", metavar="N"),
        Option("batch_size", "evaluation batch size, >= 1", int_value(minimum=1),
               shown="the run's eval_batch_size", metavar="N"),
        Option("device", "cpu, cuda or auto", choice_value(lambda: FIELD_CHOICES["device"]),
               shown="the run's"),
        Option("data_dir", "data root", shown="$SHIFTPOOL_DATA, else a cache", metavar="DIR"),
        Option("seed", "seed of the images and shifts", int_value(), shown="the run's",
               metavar="N"),
        Option("output", "JSON file", shown="evaluation-PROTOCOL.json (segmentation: "
               "evaluation-segmentation.json) beside the checkpoint",
               metavar="FILE"),
        *ROBUSTNESS_OPTIONS,
        Option("progress", "progress bar", bool_value, default=True, switch=True),
        NUM_THREADS,
    )


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate", help="accuracy and shift invariance of a checkpoint",
        description="Evaluate a trained checkpoint with shiftpool.metrics. The metrics default "
        "to accuracy, consistency and fidelity whatever the run was trained with. A "
        "segmentation checkpoint gets mIoU and pixel accuracy (bootstrap intervals), mASSC "
        "under circular, zero, reflect and crop shifts, the equivariance error under circular "
        "shifts and MSB.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint from train")
    add_config_file(parser)
    add_options(parser, _evaluate_options())
    parser.set_defaults(handler=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from shiftpool.core.io import atomic_write_json
    from shiftpool.harness.evaluation import evaluate_model
    from shiftpool.metrics import get_protocol
    from shiftpool.train.checkpoint import load_trained_model

    opts = merge_settings(args, _evaluate_options())
    device, data_dir, output = opts.text("device"), opts.text("data_dir"), opts.text("output")
    max_images, max_shift = opts.integer("max_images"), opts.integer("max_shift")
    if device is not None:
        check_device(device)
    check_input_dir(data_dir, "--data-dir")
    if output is not None:
        check_output_file(output, "--output")
    model, config, _ = load_trained_model(args.checkpoint)
    task = opts.text("task") or config.task
    if task != config.task:
        raise InputError(f"--task {task}: checkpoint {args.checkpoint!r} is a {config.task} "
                         f"run ({config.model}); leave --task out or give --task {config.task}")
    if task == "segmentation":
        given = [name for name in CLASSIFICATION_ONLY
                 if hasattr(args, name) or (name != "metrics" and opts[name] is not None)]
        if given:
            raise InputError(f"--{given[0]} applies to classification checkpoints; "
                             f"{args.checkpoint!r} is a segmentation run")
    changes: dict[str, object] = {"progress": opts.switch("progress"),
                                  "eval_max_images": max_images}
    changes.update({key: opts[key] for key in ("device", "data_dir", "seed")
                    if opts[key] is not None})
    if opts["batch_size"] is not None:
        changes["eval_batch_size"] = opts["batch_size"]
    config = config.replace(**changes)  # checked like any run's settings
    check_device(config.device)
    if task == "segmentation":
        return _evaluate_segmentation(args.checkpoint, model, config, output, max_shift,
                                      opts.integer("num_threads"))
    protocol = opts.text("protocol") or config.eval_protocol
    overrides = {} if max_shift is None else {"max_shift": max_shift}
    get_protocol(protocol, **overrides)  # the protocol and its overrides, before any data
    robustness = robustness_settings(opts)  # checked before any data
    target = check_output_file(
        output or Path(args.checkpoint).with_name(f"evaluation-{protocol}.json"), "--output")
    set_threads(opts.integer("num_threads"))
    result = evaluate_model(model, config, metrics=opts["metrics"], protocol=protocol,
                            max_images=max_images, **robustness, **overrides)
    run = {"checkpoint": str(args.checkpoint), "device": config.device,
           "num_threads": threads_used()}
    atomic_write_json(target, {**result.to_dict(), "run": run})
    print(_summary_table(result))
    print(f"saved {target}")
    return 0


def _evaluate_segmentation(checkpoint: str, model: nn.Module, config: TrainConfig,
                           output: str | None, max_shift: int | None,
                           num_threads: int | None) -> int:
    from shiftpool.core.io import atomic_write_json
    from shiftpool.harness.evaluation import SEGMENTATION_MAX_SHIFT, evaluate_segmentation

    target = check_output_file(
        output or Path(checkpoint).with_name("evaluation-segmentation.json"), "--output")
    set_threads(num_threads)
    result = evaluate_segmentation(model, config, max_shift=max_shift or SEGMENTATION_MAX_SHIFT)
    run = {"checkpoint": str(checkpoint), "device": config.device,
           "num_threads": threads_used()}
    atomic_write_json(target, {**result.to_dict(), "run": run})
    print(_segmentation_table(result))
    print(f"saved {target}")
    return 0


def _segmentation_table(result: SegmentationEvaluation) -> str:
    lines = [f"{result.n} images, segmentation, shifts up to {result.max_shift} pixels"]
    named = {"miou": result.miou, "pixel_acc": result.pixel_accuracy,
             **{f"massc_{m}": e for m, e in result.massc.items()},
             "label_change": result.label_change, "msb": result.msb}
    for key, e in named.items():
        if e is not None:
            lines.append(f"  {key:<15} {100 * e.value:7.2f}  [{100 * e.low:.2f}, "
                         f"{100 * e.high:.2f}]")
    if result.logit_error is not None:
        lines.append(f"  {'equiv_error':<15} {result.logit_error.value:.3g} (mean |f(Tx) - Tf(x)|"
                     " over logits)")
    return "\n".join(lines)


def _summary_table(result: EvaluationResult) -> str:
    lines = [f"{result.n} images, protocol {result.protocol.name}"]
    lines += [f"  {key:<12} {100 * value:7.2f}" for key, value in result.summary().items()]
    return "\n".join(lines)
