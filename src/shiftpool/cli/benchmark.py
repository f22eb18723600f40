"""``shiftpool benchmark``: the operator benchmark shipped in :mod:`shiftpool.benchmarks`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


# -- benchmark --------------------------------------------------------------------------------


def add_benchmark(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "benchmark", help="time every downsampling operator against max pooling",
        description="Run the operator benchmark shipped with shiftpool "
        "(shiftpool.benchmarks.downsample; nothing is loaded from the current folder). "
        "Arguments after the command go to it unchanged; `shiftpool benchmark -- --help` lists "
        "them (e.g. --quick, --device cuda, --op blur, --out FOLDER).")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments of the benchmark")
    parser.set_defaults(handler=_cmd_benchmark)


def _cmd_benchmark(args: argparse.Namespace) -> int:
    return run_benchmark(args.bench_args)


def run_benchmark(argv: Sequence[str]) -> int:
    """Run :mod:`shiftpool.benchmarks.downsample` (installed code only) with ``argv``; a leading
    ``--`` is dropped. Its own parser checks the arguments (one line each)."""
    from shiftpool.benchmarks import downsample

    arguments = list(argv)
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    return int(downsample.main(arguments) or 0)
