"""Benchmarks that ship with the package, so ``shiftpool benchmark`` runs only installed code.

:mod:`shiftpool.benchmarks.downsample` times every downsampling operator against max pooling
(``shiftpool benchmark -- --quick``). Nothing is ever loaded from the current folder.
"""
