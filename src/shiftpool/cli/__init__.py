"""The ``shiftpool`` command: train, evaluate and compare downsampling methods.

``train``, ``evaluate``, ``compare``, ``homogeneity`` and ``export`` take ``--config FILE.yaml``
(keys are the long option names, with ``_`` or ``-``). Every one of them merges its settings
the same way: defaults < config file < options on the command line; a key the command does not
know is refused with the list of valid ones. ``shiftpool <command> --help`` lists each command's
options and defaults.

Every input is checked before any work starts (no data set is loaded, no model trained): a bad
one is one line on stderr naming it and what is allowed, and exit status 2.

Example::

    shiftpool compare --downsample max,blur,aps,tips --model simple_cnn --dataset mnist --epochs 3
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence

from shiftpool.cli.benchmark import add_benchmark, run_benchmark
from shiftpool.cli.compare import add_compare, compare_settings
from shiftpool.cli.correlate import add_correlate
from shiftpool.cli.evaluate import add_evaluate
from shiftpool.cli.export import add_export
from shiftpool.cli.homogeneity import add_homogeneity
from shiftpool.cli.listing import add_list
from shiftpool.cli.options import OneLineParser, UsageError
from shiftpool.cli.segment import add_segment
from shiftpool.cli.study import add_study
from shiftpool.cli.train import add_train, train_settings
from shiftpool.core.allocator import configure_malloc
from shiftpool.core.errors import InputError
from shiftpool.train import TrainingDiverged

__all__ = ["build_parser", "compare_settings", "main", "train_settings"]

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


# -- main -------------------------------------------------------------------------------------

_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_train, add_evaluate, add_compare, add_homogeneity, add_benchmark, add_export,
    add_list, add_correlate, add_study, add_segment,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``shiftpool`` argument parser with every subcommand."""
    from shiftpool import __version__

    parser = OneLineParser(
        prog="shiftpool", allow_abbrev=False,
        description="Shift-aware downsampling for CNNs: train, evaluate and compare methods.")
    parser.add_argument("--version", action="version", version=f"shiftpool {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub)
    for choice in sub.choices.values():
        choice.allow_abbrev = False  # `--max` must not silently mean `--max-images`
    return parser


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """:func:`build_parser`, built once per process (parsing leaves it unchanged)."""
    return build_parser()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split("\n")).strip() or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``shiftpool`` command; returns the exit status.

    Exit status:
        0: done.
        1: a sweep (``compare``, ``study``) ended with runs that failed after their retries;
           each is listed with the end of its log, the finished ones are kept.
        2: bad input — an unknown name, a value out of range, a malformed config file, a
           missing or corrupt file, an output path that cannot be written, a device that is
           not there. One line on stderr names it and what is allowed; nothing was computed.
        3: training diverged (a NaN or infinite loss); the line names where, and the last good
           checkpoint is kept.
        130: interrupted (Ctrl-C); training saves a checkpoint first, and the same command
           resumes.

    ``--help`` exits with 0. Set ``SHIFTPOOL_DEBUG=1`` for tracebacks of input errors.
    """
    command = "shiftpool"
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if arguments[:1] == ["benchmark"]:  # every argument after it is the benchmark's
            command = "shiftpool benchmark"
            return run_benchmark(arguments[1:])
        configure_malloc()  # glibc keeps large tensors mapped; SHIFTPOOL_MALLOC=default opts out
        args, unknown = _parser().parse_known_args(arguments)
        command = f"shiftpool {args.command}"
        if unknown:
            raise UsageError(command, f"unrecognized arguments: {' '.join(unknown)}")
        return int(args.handler(args))
    except KeyboardInterrupt as stop:  # TrainingInterrupted is a KeyboardInterrupt
        checkpoint = getattr(stop, "checkpoint", None)
        if checkpoint is not None:
            print(f"{command}: interrupted; checkpoint {checkpoint}. Run the same command again "
                  "to resume.", file=sys.stderr)
        else:
            print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as error:
        if os.environ.get("SHIFTPOOL_DEBUG"):
            raise
        print(f"{error.prog}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except InputError as error:
        if os.environ.get("SHIFTPOOL_DEBUG"):
            raise
        print(f"{command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except TrainingDiverged as error:
        if os.environ.get("SHIFTPOOL_DEBUG"):
            raise
        message = _one_line(error)
        if "diverged" not in message:
            message = f"training diverged: {message}"
        if error.checkpoint is not None and str(error.checkpoint) not in message:
            message += f"; last good checkpoint {error.checkpoint}"
        print(f"{command}: {message}", file=sys.stderr)
        return EXIT_DIVERGED

