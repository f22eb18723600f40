"""``shiftpool segment``: a small preset of ``compare --task segmentation`` (U-Nets on the
MNIST canvases, minutes on a CPU), run by
:func:`shiftpool.harness.segmentation.compare_segmentation` through the training path
(checkpoints, resume, run logs)."""

from __future__ import annotations

import argparse

from shiftpool.cli.checks import check_output_dir
from shiftpool.cli.compare import seeds_value
from shiftpool.cli.options import (
    Option,
    add_config_file,
    add_options,
    bool_value,
    choice_value,
    float_value,
    int_value,
    merge_settings,
    names_value,
    text_value,
)
from shiftpool.core.errors import InputError
from shiftpool.core.log import stderr_log
from shiftpool.train.config import FIELD_CHOICES

SEGMENT_OUT_DIR = "runs/segment"

SEGMENT_OPTIONS = (
    Option("downsample", "operators to compare, comma-separated", names_value,
           default=["max", "blur", "aps", "lps"], shown="max,blur,aps,lps", metavar="A,B,..."),
    Option("train_images", "training canvases (of 1000)", int_value(minimum=1), default=1000,
           metavar="N"),
    Option("test_images", "test canvases (of 200)", int_value(minimum=1), default=200,
           metavar="N"),
    Option("epochs", "training epochs per operator", int_value(minimum=1), default=3,
           metavar="N"),
    Option("batch_size", "batch size", int_value(minimum=1), default=32, metavar="N"),
    Option("lr", "Adam learning rate", float_value, default=0.01, metavar="LR"),
    Option("max_shift", "largest shift of consistency and equivariance", int_value(minimum=1),
           default=8, metavar="N"),
    Option("circular", "circular padding everywhere", bool_value, default=True, switch=True),
    Option("seed", "seed of the subsets, initialisation, batches and shifts",
           int_value(minimum=0), default=0, metavar="N"),
    Option("seeds", "train every operator once per seed, e.g. 0,1,2: rows are means with t "
           "intervals over seeds (default: --seed alone)", seeds_value, metavar="K,K,..."),
    Option("baseline", "an operator the others are compared with, paired on the same images "
           "and shifts (a second table)", text_value, metavar="METHOD"),
    Option("device", "cpu, cuda or auto", choice_value(lambda: FIELD_CHOICES["device"]),
           default="cpu"),
    Option("figures", "draw examples.png and consistency_vs_miou.png (needs matplotlib)",
           bool_value, default=True, switch=True),
    Option("out_dir", "output folder: one run per operator, segmentation.json/.md, figures",
           text_value, default=SEGMENT_OUT_DIR, metavar="DIR"),
)


def add_segment(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "segment", help="compare operators on segmentation (MNIST-derived set)",
        description="Train one small U-Net per operator on canvases of MNIST digits (labels: "
        "background or the digit, per pixel; no download) with Adam, and report mIoU and pixel "
        "accuracy with bootstrap intervals, mASSC under circular, zero, reflect and crop "
        "shifts, the equivariance error under circular shifts and MSB: a preset of "
        "`shiftpool compare --task segmentation`. Each run is a training run folder under "
        f"--out-dir (default {SEGMENT_OUT_DIR}; an interrupted comparison resumes); then "
        "segmentation.json/.md and figures.")
    add_config_file(parser)
    add_options(parser, SEGMENT_OPTIONS)
    parser.set_defaults(handler=_cmd_segment)


def _cmd_segment(args: argparse.Namespace) -> int:
    from shiftpool.cli.checks import check_device
    from shiftpool.harness.segmentation import SegmentationSettings, compare_segmentation

    opts = merge_settings(args, SEGMENT_OPTIONS)
    counts = {key: opts.integer(key) for key in ("train_images", "test_images", "epochs",
                                                  "batch_size", "max_shift", "seed")}
    device = opts.text("device") or "cpu"
    check_device(device)
    settings = SegmentationSettings(
        train_images=counts["train_images"] or 1, test_images=counts["test_images"] or 1,
        epochs=counts["epochs"] or 1, batch_size=counts["batch_size"] or 1,
        lr=opts.number("lr"), circular=opts.switch("circular"),
        max_shift=counts["max_shift"] or 1, seed=counts["seed"] or 0, device=device)
    out_dir = check_output_dir(opts.text("out_dir") or SEGMENT_OUT_DIR, "--out-dir")
    seeds = opts["seeds"]
    if seeds is not None and "seed" in vars(args):
        raise InputError("segment: give either --seed (one run per operator) or --seeds (one "
                         "run per operator and seed), not both")
    assert seeds is None or isinstance(seeds, list)
    result = compare_segmentation(settings.config(out_dir), opts.names("downsample"),
                                  seeds=seeds, baseline=opts.text("baseline"),
                                  max_shift=settings.max_shift, figures=opts.switch("figures"),
                                  log=stderr_log)
    print(result.table)
    for kind, path in result.files.items():
        print(f"wrote {kind}: {path}")
    return 0
