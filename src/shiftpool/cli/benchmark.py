"""``shiftpool benchmark``: the operator benchmark shipped in :mod:`shiftpool.benchmarks`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


# -- benchmark --------------------------------------------------------------------------------


#: The benchmarks ``shiftpool benchmark NAME`` runs, by name (the first is the default).
BENCHMARKS: tuple[str, ...] = ("downsample", "robustness")


def add_benchmark(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "benchmark", help="time every downsampling operator against max pooling (or the "
        "robustness metrics: `shiftpool benchmark robustness`)",
        description="Run a benchmark shipped with shiftpool (shiftpool.benchmarks; nothing is "
        "loaded from the current folder): the operator benchmark (downsample, the default) or "
        "the cost of the robustness metrics (`shiftpool benchmark robustness ...`: PGD-k "
        "against k forward+backward passes, corruption throughput and share of an "
        "evaluation). Arguments after the command (and the name) go to it unchanged; "
        "`shiftpool benchmark -- --help` and `shiftpool benchmark robustness --help` list "
        "them (e.g. --quick, --device cuda, --op blur, --out FOLDER).")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments of the benchmark")
    parser.set_defaults(handler=_cmd_benchmark)


def _cmd_benchmark(args: argparse.Namespace) -> int:
    return run_benchmark(args.bench_args)


def run_benchmark(argv: Sequence[str]) -> int:
    """Run a benchmark of :mod:`shiftpool.benchmarks` (installed code only) with ``argv``: the
    one a leading name of :data:`BENCHMARKS` picks, else the operator benchmark; a leading
    ``--`` (before or after the name) is dropped. Its own parser checks the arguments (one line
    each)."""
    from shiftpool.benchmarks import downsample, robustness

    arguments = list(argv)
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    name = "downsample"
    if arguments[:1] and arguments[0] in BENCHMARKS:
        name, arguments = arguments[0], arguments[1:]
        if arguments[:1] == ["--"]:
            arguments = arguments[1:]
    module = robustness if name == "robustness" else downsample
    return int(module.main(arguments) or 0)
