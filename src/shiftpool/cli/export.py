"""``shiftpool export``: a checkpoint's model as ONNX or TorchScript."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from shiftpool.cli.checks import NUM_THREADS, check_output_file, set_threads
from shiftpool.cli.options import (
    Option,
    add_config_file,
    add_options,
    bool_value,
    choice_value,
    int_value,
    merge_settings,
)
from shiftpool.core.errors import InputError

if TYPE_CHECKING:
    pass


# -- export -----------------------------------------------------------------------------------


def _export_options() -> tuple[Option, ...]:
    from shiftpool.harness.export import EXPORT_FORMATS, onnx_opset_range

    low, high = onnx_opset_range()
    return (
        Option("format", f"export format: {', '.join(EXPORT_FORMATS)} (required)",
               choice_value(lambda: EXPORT_FORMATS)),
        Option("output", "output file", shown="model.onnx or model.torchscript.pt beside the "
               "checkpoint", metavar="FILE"),
        Option("batch_size", "batch of the example input, >= 1", int_value(minimum=1), default=2,
               metavar="N"),
        Option("opset", f"ONNX opset, {low}..{high}", int_value(), shown="the exporter's",
               metavar="N"),
        Option("verify", "compare the export's outputs with the model's", bool_value, default=True,
               switch=True),
        NUM_THREADS,
    )


def add_export(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a checkpoint's model to ONNX or TorchScript",
                            description="Export the model of a checkpoint (eval mode, CPU) and "
                            "check the export's outputs against the eager model.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint from train")
    add_config_file(parser)
    add_options(parser, _export_options())
    parser.set_defaults(handler=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    import torch

    from shiftpool.harness.export import check_export_options, default_export_path, export_model
    from shiftpool.train.checkpoint import load_trained_model

    opts = merge_settings(args, _export_options())
    fmt, opset, batch = opts.text("format"), opts.integer("opset"), opts.integer("batch_size")
    if fmt is None:
        raise InputError("export needs --format onnx or torchscript (or `format:` in --config)")
    assert batch is not None
    check_export_options(fmt, opset)
    output = check_output_file(opts.text("output") or default_export_path(args.checkpoint, fmt),
                               "--output")
    model, _, checkpoint = load_trained_model(args.checkpoint)
    info = checkpoint["model_args"]
    set_threads(opts.integer("num_threads"))
    example = torch.randn(batch, info["in_channels"], *info["input_size"],
                          generator=torch.Generator().manual_seed(0))
    result = export_model(model, example, output, fmt, opset=opset,
                          verify=opts.switch("verify"))
    opset = "" if result.opset is None else f", opset {result.opset}"
    diff = "" if result.max_abs_diff is None else f"; max |diff| vs eager {result.max_abs_diff:.2e}"
    print(f"wrote {result.path} ({result.format} via {result.method}{opset}{diff})")
    return 0
