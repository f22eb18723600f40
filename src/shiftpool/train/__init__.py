"""Training, evaluation and comparison of downsampling methods.

Example:
    >>> from shiftpool.train import TrainConfig, train
    >>> config = TrainConfig(model="simple_cnn", downsample="blur", dataset="mnist", epochs=2)
    >>> result = train(config)  # doctest: +SKIP
    >>> result.test_acc  # doctest: +SKIP
    0.98
"""

from shiftpool.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_trained_model,
    model_signature,
)
from shiftpool.train.config import TrainConfig
from shiftpool.train.loop import (
    Callback,
    StepInfo,
    TrainingDiverged,
    TrainingInterrupted,
    TrainResult,
    train,
)

__all__ = [
    "Callback",
    "CheckpointError",
    "StepInfo",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "TrainingInterrupted",
    "load_checkpoint",
    "load_trained_model",
    "model_signature",
    "train",
]
