"""``shiftpool correlate``: MSB against shift invariance across finished runs (TIPS)."""

from __future__ import annotations

import argparse

from shiftpool.cli.checks import check_output_dir
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
from shiftpool.core.errors import InputError, InputTypeError
from shiftpool.core.log import stderr_log

CORRELATE_OUT_DIR = "runs/correlate"
_INTERVALS = ("bca", "percentile")


def patterns_value(value: object, what: str) -> list[str]:
    """One glob pattern (command line) or a list of them (config file).

    Example:
        >>> patterns_value("runs/*/seed*", "--glob"), patterns_value(["a/*", "b/**"], "glob")
        (['runs/*/seed*'], ['a/*', 'b/**'])
    """
    if isinstance(value, str):
        return [text_value(value, what)]
    if isinstance(value, (list, tuple)) and value:
        return [text_value(item, what) for item in value]
    raise InputTypeError(f"{what} must be a glob pattern or a list of them, got {value!r}")


CORRELATE_OPTIONS = (
    Option("glob", "also read the runs matching this pattern (quote it; ** recurses)",
           patterns_value, metavar="PATTERN"),
    Option("out_dir", "output folder: correlation.json/.csv/.md/.html and figures/",
           text_value, default=CORRELATE_OUT_DIR, metavar="DIR"),
    Option("protocol", "read the evaluations of this protocol", text_value,
           shown="the one every run has"),
    Option("metrics", "metrics to correlate with MSB, e.g. c_cons,s_cons (or C-Cons,S-Cons)",
           names_value, shown="acc, S-Cons, C-Cons, S-Fid, C-Fid where measured",
           metavar="A,B,..."),
    Option("layers", "also correlate each layer's MSB (within one architecture)", bool_value,
           default=True, switch=True),
    Option("resamples", "bootstrap resamples, >= 100", int_value(minimum=100), default=9999,
           metavar="N"),
    Option("permutations", "random pairings of the permutation test, >= 1 (exact when n! is "
           "not larger)", int_value(minimum=1), default=9999, metavar="N"),
    Option("confidence", "coverage of the intervals, in (0, 1)", float_value, default=0.95,
           metavar="P"),
    Option("interval", "bootstrap interval: bca or percentile",
           choice_value(lambda: _INTERVALS), default="bca"),
    Option("seed", "seed of the bootstrap and permutations, >= 0", int_value(minimum=0),
           default=0, metavar="N"),
    Option("figures", "draw the scatter figures (needs matplotlib)", bool_value, default=True,
           switch=True),
)


def add_correlate(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "correlate", help="correlate MSB with shift invariance across finished runs",
        description="Read every evaluated run under RUN_DIRS (compare outputs, their method or "
        "seed folders, train runs evaluated with `shiftpool evaluate`) and correlate each "
        "model's maximum-sampling bias with its accuracy, consistency and fidelity: Pearson and "
        "Spearman with bootstrap intervals and permutation p-values, over all models and per "
        "architecture and data set. Writes correlation.json/.csv/.md/.html and figures into "
        f"--out-dir (default {CORRELATE_OUT_DIR}). The runs' evaluations must include msb.")
    parser.add_argument("run_dirs", nargs="*", metavar="RUN_DIR",
                        help="folders to search for runs (recursively), or evaluation files")
    add_config_file(parser)
    add_options(parser, CORRELATE_OPTIONS)
    parser.set_defaults(handler=_cmd_correlate)


def _cmd_correlate(args: argparse.Namespace) -> int:
    from shiftpool.harness.correlate import CorrelationSettings, correlate

    opts = merge_settings(args, CORRELATE_OPTIONS)
    patterns = opts["glob"]
    if not args.run_dirs and not patterns:
        raise InputError("correlate needs run folders (RUN_DIR ...) or --glob PATTERN")
    resamples, permutations, seed = (opts.integer(k) for k in ("resamples", "permutations",
                                                                "seed"))
    assert resamples is not None and permutations is not None and seed is not None
    interval = opts.text("interval") or "bca"
    CorrelationSettings(resamples, permutations, opts.number("confidence"), interval, seed)
    out_dir = check_output_dir(opts.text("out_dir") or CORRELATE_OUT_DIR, "--out-dir")
    metrics = opts["metrics"]
    assert metrics is None or isinstance(metrics, list)
    assert patterns is None or isinstance(patterns, list)
    report = correlate(args.run_dirs, out_dir, glob=patterns, protocol=opts.text("protocol"),
                       metrics=metrics, layers=opts.switch("layers"), resamples=resamples,
                       permutations=permutations, confidence=opts.number("confidence"),
                       interval=interval, seed=seed, figures=opts.switch("figures"),
                       log=stderr_log)
    print(report.table)
    for kind, path in report.files.items():
        print(f"wrote {kind}: {path}")
    return 0

