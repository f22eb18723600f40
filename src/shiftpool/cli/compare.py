"""``shiftpool compare``: train and evaluate several downsampling methods, one table."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from shiftpool.cli.checks import check_run, set_threads
from shiftpool.cli.options import (
    Option,
    add_config_file,
    add_config_options,
    add_options,
    bool_value,
    config_fields,
    int_value,
    merge_settings,
    method_options_value,
    names_value,
    text_value,
)
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.train.config import (
    TrainConfig,
)

COMPARE_OUT_DIR = "runs/compare"


# -- compare ----------------------------------------------------------------------------------

def seeds_value(value: object, what: str) -> list[int]:
    """``"0,1,2"`` or a YAML list of integers >= 0 → ``[0, 1, 2]`` (repeats are refused by
    :func:`~shiftpool.harness.comparison.plan_comparison`).

    Example:
        >>> seeds_value("0, 1,2", "--seeds")
        [0, 1, 2]
    """
    if isinstance(value, str):
        items: list[object] = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise InputTypeError(f"{what} must be comma-separated integers >= 0, got {value!r}")
    try:
        return [int_value(0)(item, what) for item in items]
    except InputError:
        raise InputError(f"{what} must be comma-separated integers >= 0, got {value!r}") from None


COMPARE_EXCLUDED = ("downsample", "downsample_options")
COMPARE_OPTIONS = (
    Option("methods", "methods to compare, e.g. max,blur,aps,lps,tips,s3pool", names_value,
           metavar="A,B,...", main_flag="--downsample", flags=("--methods",)),
    Option("method_options", 'per-method operator options as JSON, e.g. '
           '\'{"blur": {"filter_size": 5}}\'', method_options_value, default={}, shown="none",
           metavar="JSON"),
    Option("seeds", "train every method once per seed, e.g. 0,1,2; the table shows the mean "
           "and a 95%% interval over seeds (default: --seed alone)", seeds_value,
           metavar="K,K,..."),
    Option("baseline", "the method the others are compared with: differences, intervals and "
           "p-values (default: the first method)", text_value, metavar="METHOD"),
    Option("figures", "draw figures (needs matplotlib)", bool_value, default=True, switch=True),
)


@dataclass(frozen=True)
class CompareSettings:
    """What ``shiftpool compare`` runs: the shared config and the comparison's own options."""

    config: TrainConfig
    methods: list[str]
    method_options: dict[str, dict[str, object]]
    figures: bool
    seeds: list[int] | None = None
    baseline: str | None = None


def add_compare(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compare", help="train and evaluate several downsampling methods, write one table",
        description="Train each method with the same seed(s) and budget, evaluate each under "
        "the same protocol, compare each with a baseline (paired tests over seeds and over "
        "the same test images), write results.json/.csv/.md and figures into --out-dir "
        f"(default {COMPARE_OUT_DIR}). An interrupted compare resumes where it stopped.")
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
    """``(shared config, methods, per-method options, figures)``: defaults < --config < flags
    (:func:`compare_run_settings` gives the seeds and the baseline too)."""
    settings = compare_run_settings(args)
    return settings.config, settings.methods, settings.method_options, settings.figures


def compare_run_settings(args: argparse.Namespace) -> CompareSettings:
    """Every setting of ``shiftpool compare``: defaults < --config < flags.

    The methods, their options, the seeds and the baseline are checked by
    :func:`shiftpool.harness.comparison.compare` itself
    (:func:`~shiftpool.harness.comparison.plan_comparison`) before anything trains.
    """
    values = merge_settings(args, COMPARE_OPTIONS, fields=config_fields(COMPARE_EXCLUDED),
                            aliases={"downsample": "methods"})
    methods = values.pop("methods")
    options = values.pop("method_options")
    figures = values.pop("figures")
    seeds = values.pop("seeds")
    baseline = values.pop("baseline")
    if seeds is not None and "seed" in values:
        raise InputError("compare: give either --seed (one run per method) or --seeds "
                         "(one run per method and seed), not both")
    values.setdefault("out_dir", COMPARE_OUT_DIR)
    config = TrainConfig.from_dict(values)
    if methods is None:
        raise InputError("compare needs --downsample METHOD,METHOD,... (or `methods:` in "
                         "--config)")
    assert isinstance(methods, list) and isinstance(options, dict)
    assert seeds is None or isinstance(seeds, list)
    assert baseline is None or isinstance(baseline, str)
    return CompareSettings(config, methods, options, bool(figures), seeds, baseline)


def _cmd_compare(args: argparse.Namespace) -> int:
    from shiftpool.harness.comparison import compare

    settings = compare_run_settings(args)
    config = settings.config
    check_run(config, check_model=False)  # compare() checks each method's model first
    set_threads(config.num_threads)  # train() sets them for training; evaluation needs them too
    result = compare(config, settings.methods, config.out_dir,
                     method_options=settings.method_options, seeds=settings.seeds,
                     baseline=settings.baseline, figures=settings.figures, fresh=args.fresh,
                     log=_stderr)
    if not result.rows:  # a torchrun process other than rank 0: it trained, rank 0 reports
        return 0
    print(result.table)
    for kind, path in result.files.items():
        print(f"wrote {kind}: {path}")
    return 0


def _stderr(text: str) -> None:
    """Progress of a comparison (which method trains, evaluates): a few lines, always shown."""
    print(text, file=sys.stderr, flush=True)
