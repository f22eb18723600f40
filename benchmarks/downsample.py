"""The operator benchmark from the source tree: ``python benchmarks/downsample.py --quick``.

A thin wrapper of :mod:`shiftpool.benchmarks.downsample` (also ``shiftpool benchmark``); results
go to ``benchmarks/results`` unless ``--out`` says otherwise.
"""

import sys

from shiftpool.benchmarks.downsample import run_script

if __name__ == "__main__":
    sys.exit(run_script())
