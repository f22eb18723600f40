"""``shiftpool train``: train one model."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from shiftpool.cli.checks import check_run, set_threads
from shiftpool.cli.options import add_config_file, add_config_options, config_fields, merge_settings
from shiftpool.train.config import (
    TrainConfig,
)

if TYPE_CHECKING:
    pass


# -- train ------------------------------------------------------------------------------------


def add_train(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train one model",
                            description="Train a model with one downsampling operator; "
                            "resumes from OUT_DIR/last.pt when present. --task segmentation "
                            "trains a segmentation model (e.g. unet) on a segmentation set "
                            "(mnist-canvas) with per-pixel cross-entropy and reports mIoU.")
    add_config_file(parser)
    parser.add_argument("--fresh", action="store_true",
                        help="ignore an existing checkpoint in --out-dir and start over")
    add_config_options(parser)
    parser.set_defaults(handler=_cmd_train)


def train_settings(args: argparse.Namespace) -> TrainConfig:
    """The run ``shiftpool train`` was asked for: defaults < --config file < flags."""
    return TrainConfig.from_dict(merge_settings(args, fields=config_fields()))


def _cmd_train(args: argparse.Namespace) -> int:
    from shiftpool.train import train

    config = train_settings(args)
    check_run(config)
    set_threads(config.num_threads)
    result = train(config, resume=not args.fresh)
    if result.checkpoint is not None:
        acc = "n/a" if result.test_acc is None else f"{100 * result.test_acc:.2f}%"
        if config.task == "segmentation":
            miou = "n/a" if result.test_miou is None else f"{100 * result.test_miou:.2f}%"
            scores = f"test mIoU {miou}, pixel accuracy {acc}"
        else:
            scores = f"test accuracy {acc}"
        print(f"done: {scores}, {result.train_time_s:.1f} s of training; "
              f"checkpoint {result.checkpoint}")
    return 0
