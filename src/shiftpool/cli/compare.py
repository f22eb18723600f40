"""``shiftpool compare``: train and evaluate several downsampling methods, one table."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from shiftpool.cli.checks import check_run, set_threads
from shiftpool.cli.options import (
    Option,
    add_config_file,
    add_config_options,
    add_options,
    bool_value,
    config_fields,
    merge_settings,
    method_options_value,
    names_value,
)
from shiftpool.core.errors import InputError
from shiftpool.train.config import (
    TrainConfig,
)

if TYPE_CHECKING:
    pass


COMPARE_OUT_DIR = "runs/compare"


# -- compare ----------------------------------------------------------------------------------

COMPARE_EXCLUDED = ("downsample", "downsample_options")
COMPARE_OPTIONS = (
    Option("methods", "methods to compare, e.g. max,blur,aps,lps,tips,s3pool", names_value,
           metavar="A,B,...", main_flag="--downsample", flags=("--methods",)),
    Option("method_options", 'per-method operator options as JSON, e.g. '
           '\'{"blur": {"filter_size": 5}}\'', method_options_value, default={}, shown="none",
           metavar="JSON"),
    Option("figures", "draw figures (needs matplotlib)", bool_value, default=True, switch=True),
)


def add_compare(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compare", help="train and evaluate several downsampling methods, write one table",
        description="Train each method with the same seed and budget, evaluate each under the "
        "same protocol, write results.json/.csv/.md and figures into --out-dir (default "
        f"{COMPARE_OUT_DIR}). An interrupted compare resumes where it stopped.")
    add_config_file(parser)
    parser.add_argument("--fresh", action="store_true",
                        help="train and evaluate every method again, ignoring earlier results")
    add_options(parser, COMPARE_OPTIONS, "comparison options (also as keys of --config; "
                "`downsample:` may name the methods in a file)")
    add_config_options(parser, exclude=COMPARE_EXCLUDED, defaults={"out_dir": COMPARE_OUT_DIR})
    parser.set_defaults(handler=_cmd_compare)


def compare_settings(
    args: argparse.Namespace,
) -> tuple[TrainConfig, list[str], dict[str, dict[str, object]], bool]:
    """``(shared config, methods, per-method options, figures)``: defaults < --config < flags.

    The methods and their options are checked by :func:`shiftpool.harness.comparison.compare`
    itself (:func:`~shiftpool.harness.comparison.plan_comparison`) before anything trains.
    """
    values = merge_settings(args, COMPARE_OPTIONS, fields=config_fields(COMPARE_EXCLUDED),
                            aliases={"downsample": "methods"})
    methods = values.pop("methods")
    options = values.pop("method_options")
    figures = values.pop("figures")
    values.setdefault("out_dir", COMPARE_OUT_DIR)
    config = TrainConfig.from_dict(values)
    if methods is None:
        raise InputError("compare needs --downsample METHOD,METHOD,... (or `methods:` in "
                         "--config)")
    assert isinstance(methods, list) and isinstance(options, dict)
    return config, methods, options, bool(figures)


def _cmd_compare(args: argparse.Namespace) -> int:
    from shiftpool.harness.comparison import compare

    config, methods, options, figures = compare_settings(args)
    check_run(config, check_model=False)  # compare() checks each method's model first
    set_threads(config.num_threads)  # train() sets them for training; evaluation needs them too
    result = compare(config, methods, config.out_dir, method_options=options, figures=figures,
                     fresh=args.fresh, log=_stderr)
    if not result.rows:  # a torchrun process other than rank 0: it trained, rank 0 reports
        return 0
    print(result.table)
    for kind, path in result.files.items():
        print(f"wrote {kind}: {path}")
    return 0


def _stderr(text: str) -> None:
    """Progress of a comparison (which method trains, evaluates): a few lines, always shown."""
    print(text, file=sys.stderr, flush=True)
