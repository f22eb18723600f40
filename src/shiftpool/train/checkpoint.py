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
``world_size``     processes of the run; ``rank_state``: per-rank state of a mid-epoch
                   checkpoint under DDP (BatchNorm buffers, partial epoch sums)
``hashes``         ``{"algorithm": "sha256", "entries": {entry: hex digest}}``: one digest per
                   tensor (entry ``model/conv1.weight``, ``optimizer/state/0/momentum_buffer``,
                   ...: its dtype, shape and bytes) and one per top-level key for everything
                   else it holds (numbers, strings, the nesting)
=================  ==============================================================

Integrity: :func:`save_checkpoint` records the digests and :func:`load_checkpoint` recomputes
and compares them, so a flipped bit on disk or in a copy is a :class:`CheckpointError` naming
the file and the first entry that differs, never a silently different model. SHA-256 because
it is the standard content hash and CPUs accelerate it (SHA-NI): for a ResNet-50 with SGD
momentum (205 MB) hashing took 0.19 s where ``torch.save`` took 0.21 s and ``torch.load``
0.15 s (one CPU core), so it at most doubles the time of a save or load, once per epoch.
Checkpoints of format version 1 (before digests) still load, unverified, with a warning.
"""

from __future__ import annotations

import hashlib
import pickle
import random
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import shiftpool.data as sdata
from shiftpool.core.errors import InputError, MissingFileError
from shiftpool.core.io import atomic_write
from shiftpool.train.config import TrainConfig

FORMAT = "shiftpool-checkpoint"
FORMAT_VERSION = 2
LAST = "last.pt"
HASH_ALGORITHM = "sha256"
HASHES = "hashes"
UNVERIFIED_VERSIONS = (1,)  # written before digests: loaded without verification


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


def _tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (on the CPU, in row-major order)."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    digest = hashlib.sha256(f"{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(memoryview(tensor.contiguous().reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def _canonical(value: object, path: str, tensors: dict[str, str]) -> str:
    """A text form of ``value`` that survives a save/load round trip; tensors are replaced by
    a marker and their digests recorded in ``tensors`` under their path."""
    if isinstance(value, torch.Tensor):
        tensors[path] = _tensor_digest(value)
        return "<tensor>"
    if isinstance(value, Mapping):
        items = (f"{k!r}:{_canonical(v, f'{path}/{k}', tensors)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        items = (_canonical(v, f"{path}/{i}", tensors) for i, v in enumerate(value))
        return "[" + ",".join(items) + "]"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        return float.__repr__(value)
    if isinstance(value, int):
        return int.__repr__(value)
    return repr(value)


def content_hashes(checkpoint: Mapping[str, object]) -> dict[str, str]:
    """The digest of every tensor in ``checkpoint`` and of each top-level key's other content.

    Keys are entry paths: ``"model/fc.weight"`` for a tensor, ``"epoch"`` for what a top-level
    key holds besides tensors. The ``hashes`` key itself is left out.

    Example:
        >>> entries = content_hashes({"model": {"w": torch.zeros(2)}, "epoch": 3})
        >>> list(entries)
        ['model/w', 'model', 'epoch']
    """
    entries: dict[str, str] = {}
    for key, value in checkpoint.items():
        if key == HASHES:
            continue
        tensors: dict[str, str] = {}
        text = _canonical(value, str(key), tensors)
        entries.update(tensors)
        entries[str(key)] = hashlib.sha256(text.encode()).hexdigest()
    return entries


def verify_checkpoint(checkpoint: Mapping[str, object], source: str = "") -> None:
    """Raise a :class:`CheckpointError` unless every digest recorded at save time still matches.

    The message names the file and the first entry (in save order) that differs.
    """
    where = f" {source!r}" if source else ""
    recorded = checkpoint.get(HASHES)
    if (not isinstance(recorded, Mapping) or recorded.get("algorithm") != HASH_ALGORITHM
            or not isinstance(recorded.get("entries"), Mapping)):
        raise CheckpointError(
            f"shiftpool: checkpoint{where} has no {HASH_ALGORITHM} content hashes; it is "
            "incomplete or corrupt (delete it to start over)"
        )
    saved: Mapping[str, str] = recorded["entries"]
    current = content_hashes(checkpoint)
    bad = [entry for entry in saved if current.get(entry) != saved[entry]]
    bad += [entry for entry in current if entry not in saved]
    if bad:
        state = "missing" if bad[0] not in current else "added" if bad[0] not in saved else (
            "changed")
        raise CheckpointError(
            f"shiftpool: checkpoint{where} is corrupt: {bad[0]!r} {state} since it was saved "
            f"({len(bad)} of {len(saved)} entries differ from their {HASH_ALGORITHM} hashes); "
            "restore a good copy or delete it to start over"
        )


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, then rename), with the
    content hashes that :func:`load_checkpoint` verifies."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **checkpoint}
    payload.pop(HASHES, None)
    payload[HASHES] = {"algorithm": HASH_ALGORITHM, "entries": content_hashes(payload)}
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` and verify its content hashes.

    Format version 1 (written before hashes) loads without verification, with a warning.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is truncated, corrupt (a tensor or value no longer matches
            its hash), not a shiftpool checkpoint, or of a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"shiftpool: checkpoint {str(path)!r} not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile, IndexError, KeyError, TypeError, AttributeError) as error:
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
    if isinstance(version, bool) or not isinstance(version, int) or not (
            1 <= version <= FORMAT_VERSION):
        raise CheckpointError(
            f"shiftpool: checkpoint {str(path)!r} has format version {version!r}; this shiftpool "
            f"reads versions 1 to {FORMAT_VERSION} (upgrade shiftpool)"
        )
    if version in UNVERIFIED_VERSIONS:
        warnings.warn(
            f"shiftpool: checkpoint {str(path)!r} has format version {version}, written before "
            "content hashes: loaded without an integrity check",
            stacklevel=2,
        )
    else:
        verify_checkpoint(checkpoint, str(path))
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



def check_model_builds(config: TrainConfig) -> None:
    """Build ``config``'s model on the meta device (no memory, no data), so that a bad model or
    operator option (``channels='16 32 64'``, ``filter_size=0``...) is refused before any data
    is loaded or anything trains. Classes and channels come from the data set's table entry
    where it has one (10 and 3 otherwise: they do not change which options are valid)."""
    shape = {"num_classes": 10, "in_channels": 3}
    if config.task == "segmentation":
        shape["num_classes"] = sdata.segmentation_info(config.dataset).num_classes
    elif config.dataset in sdata.list_datasets():
        info = sdata.dataset_info(config.dataset)
        shape = {"num_classes": info.num_classes, "in_channels": info.channels}
    with torch.device("meta"):
        build_model(config, shape)


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
