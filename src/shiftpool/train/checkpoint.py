"""Training checkpoints: written atomically, versioned, checked against the model on load.

A checkpoint is a dict saved with ``torch.save`` and readable with ``weights_only=True``:

=================  ==============================================================
``format``         ``"shiftpool-checkpoint"``
``format_version`` :data:`FORMAT_VERSION`
``config``         the :class:`~shiftpool.train.config.TrainConfig` as a dict
``model_args``     ``num_classes``, ``in_channels``, ``input_size`` of the data
``signature``      :func:`model_signature` of the model
``model``          the model's ``state_dict``
``optimizer``      / ``scheduler`` / ``scaler``: their ``state_dict`` (scaler may be None)
``epoch``          epochs completed; ``step_in_epoch`` batches done of the next one
``loader``         the batch loader's seed and position (its batches are keyed by seed,
                   epoch and rank, so these replay them exactly)
``global_step``    optimiser steps taken
``rng``            per-rank random states (torch, CUDA, Python, NumPy)
``history``        one dict per finished epoch; ``train_time_s`` seconds spent training
``finished``       True once every epoch is done
=================  ==============================================================
"""

from __future__ import annotations

import hashlib
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shiftpool.core.errors import InputError, MissingFileError
from shiftpool.core.io import atomic_write
from shiftpool.train.config import TrainConfig

FORMAT = "shiftpool-checkpoint"
FORMAT_VERSION = 1
LAST = "last.pt"


class CheckpointError(InputError):
    """A checkpoint that cannot be used: corrupt, of another format, or of another model."""


def model_signature(model: nn.Module) -> str:
    """A short hash of the model's state_dict layout (names, shapes, dtypes), not its values.

    Example:
        >>> model_signature(nn.Linear(2, 3)) == model_signature(nn.Linear(2, 3))
        True
    """
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(f"{key}:{tuple(value.shape)}:{value.dtype};".encode())
    return digest.hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    """Every random state the training loop draws from, in a ``weights_only``-loadable form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (from any device a checkpoint was mapped to)."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    random.setstate(_as_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples; a round trip may have turned them into lists."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, then rename)."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **checkpoint}
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is truncated, corrupt, not a shiftpool checkpoint, or of a
            newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"shiftpool: checkpoint {str(path)!r} not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"shiftpool: checkpoint {str(path)!r} is corrupt or not a shiftpool checkpoint "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
            "delete it to start over"
        ) from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(
            f"shiftpool: {str(path)!r} is not a shiftpool checkpoint (no '{FORMAT}' marker)"
        )
    version = checkpoint.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"shiftpool: checkpoint {str(path)!r} has format version {version!r}; this shiftpool "
            f"reads versions up to {FORMAT_VERSION} (upgrade shiftpool)"
        )
    missing = [k for k in ("config", "model", "signature", "model_args") if k not in checkpoint]
    if missing:
        raise CheckpointError(
            f"shiftpool: checkpoint {str(path)!r} is incomplete (missing {', '.join(missing)})"
        )
    return checkpoint


def _describe(config: dict[str, Any]) -> str:
    return f"model {config.get('model')!r} with downsample {config.get('downsample')!r}"


def check_compatible(checkpoint: dict[str, Any], model: nn.Module, source: str = "") -> None:
    """Raise a :class:`CheckpointError` unless ``checkpoint`` was saved from a model like ``model``.

    The message names both models and the first differing entries of their state_dicts.
    """
    if checkpoint["signature"] == model_signature(model):
        return
    saved = {k: tuple(v.shape) for k, v in checkpoint["model"].items()}
    current = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    differing = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
    details = ", ".join(
        f"{k}: saved {saved.get(k, 'absent')}, model {current.get(k, 'absent')}"
        for k in differing[:3]
    )
    where = f" {str(source)!r}" if source else ""
    raise CheckpointError(
        f"shiftpool: checkpoint{where} is from another model ({_describe(checkpoint['config'])}); "
        f"{len(differing)} state entries differ, e.g. {details}"
    )


def check_same_run(checkpoint: dict[str, Any], config: TrainConfig, source: str = "") -> None:
    """Raise unless ``config`` would train the same weights as the run in ``checkpoint``."""
    saved = TrainConfig.from_dict(checkpoint["config"]).result_fields()
    differing = {k: (saved[k], v) for k, v in config.result_fields().items() if saved.get(k) != v}
    if differing:
        details = ", ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in differing.items())
        raise CheckpointError(
            f"shiftpool: cannot resume from {str(source)!r}: it was trained with other settings "
            f"({details}); use another out_dir or delete the checkpoint"
        )


def build_model(config: TrainConfig, model_args: dict[str, Any]) -> nn.Module:
    """The model ``config`` describes, for data with ``model_args`` (num_classes, in_channels)."""
    from shiftpool.models import create_model

    return create_model(
        config.model,
        downsample=config.downsample,
        downsample_options=dict(config.downsample_options) or None,
        num_classes=model_args["num_classes"],
        in_channels=model_args["in_channels"],
        circular=config.circular,
        **config.model_options,
    )


def load_trained_model(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """Rebuild the model saved in the checkpoint at ``path``, with its weights, in eval mode.

    Returns:
        ``(model, config, checkpoint)``.

    Example:
        >>> model, config, ckpt = load_trained_model("runs/train/last.pt")  # doctest: +SKIP
    """
    checkpoint = load_checkpoint(path, map_location)
    config = TrainConfig.from_dict(checkpoint["config"])
    model = build_model(config, checkpoint["model_args"])
    check_compatible(checkpoint, model, str(path))
    model.load_state_dict(checkpoint["model"])
    return model.eval(), config, checkpoint
