"""Checkpoints: atomic writes, format checks, clear errors for corrupt or foreign files."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch
from torch import nn

from shiftpool.train.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    build_model,
    check_compatible,
    content_hashes,
    load_checkpoint,
    load_trained_model,
    model_signature,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from shiftpool.train.config import TrainConfig

MODEL_ARGS = {"num_classes": 10, "in_channels": 1, "input_size": [28, 28], "dataset": "mnist"}


def _payload(model: nn.Module, config: TrainConfig) -> dict:
    return {"config": config.to_dict(), "model_args": MODEL_ARGS,
            "signature": model_signature(model), "model": model.state_dict()}


@pytest.fixture
def saved(tmp_path):
    config = TrainConfig(model="simple_cnn", downsample="max")
    torch.manual_seed(0)
    model = build_model(config, MODEL_ARGS)
    path = save_checkpoint(tmp_path / "last.pt", _payload(model, config))
    return path, model, config


def test_round_trip_rebuilds_the_same_model(saved) -> None:
    path, model, config = saved
    loaded, loaded_config, checkpoint = load_trained_model(path)
    assert loaded_config == config and checkpoint["format_version"] == FORMAT_VERSION
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left


def test_truncated_checkpoint_is_a_clear_error(saved) -> None:
    path = saved[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="is corrupt or not a shiftpool checkpoint"):
        load_checkpoint(path)


def test_garbage_and_foreign_files_are_rejected(tmp_path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="corrupt or not a shiftpool checkpoint"):
        load_checkpoint(garbage)
    foreign = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a shiftpool checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_newer_format_version_is_refused(tmp_path) -> None:
    path = tmp_path / "future.pt"
    torch.save({"format": "shiftpool-checkpoint", "format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match="upgrade shiftpool"):
        load_checkpoint(path)


def test_checkpoint_of_another_model_names_both(saved) -> None:
    path = saved[0]
    other = build_model(TrainConfig(model="simple_cnn", downsample="max",
                                    model_options={"channels": [8, 16]}), MODEL_ARGS)
    with pytest.raises(CheckpointError, match=r"from another model \(model 'simple_cnn' with "
                       r"downsample 'max'\); \d+ state entries differ"):
        check_compatible(load_checkpoint(path), other, str(path))


def test_signature_depends_on_layout_not_values() -> None:
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    assert model_signature(a) == model_signature(b)
    assert model_signature(a) != model_signature(nn.Linear(3, 3))


def test_rng_state_round_trip(tmp_path) -> None:
    state = rng_state()
    path = save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    expected = (torch.rand(3), random.random(), np.random.rand())
    set_rng_state(torch.load(path, weights_only=True)["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert (random.random(), np.random.rand()) == expected[1:]


def _flip_one_bit_in_file(path, tensor: torch.Tensor, bit: int = 3) -> None:
    """Flip one bit of ``tensor``'s bytes where they lie in the checkpoint file (stored raw)."""
    raw = bytearray(path.read_bytes())
    data = tensor.contiguous().view(torch.uint8).numpy().tobytes()
    start = raw.find(data)
    assert start >= 0 and raw.find(data, start + 1) < 0, "tensor bytes not found once"
    raw[start + len(data) // 2] ^= 1 << bit
    path.write_bytes(bytes(raw))


def test_a_flipped_bit_in_a_weight_on_disk_is_refused(saved) -> None:
    path, model, _ = saved
    name, weight = next((k, v) for k, v in model.state_dict().items() if v.ndim == 4)
    _flip_one_bit_in_file(path, weight)
    # torch itself reads the damaged file without complaint: the bit really is in the weights
    raw = torch.load(path, weights_only=True)
    assert not torch.equal(raw["model"][name], weight)
    message = rf"checkpoint '.*last.pt' is corrupt: 'model/{re.escape(name)}' changed"
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=message):
        load_trained_model(path)


def test_a_changed_value_rewritten_without_new_hashes_is_refused(saved) -> None:
    path = saved[0]
    checkpoint = torch.load(path, weights_only=True)
    key = next(k for k, v in checkpoint["model"].items() if v.is_floating_point())
    as_int = checkpoint["model"][key].view(torch.int32)
    as_int.view(-1)[0] ^= 1  # the lowest mantissa bit of one weight
    torch.save(checkpoint, path)  # the recorded hashes are the old ones
    with pytest.raises(CheckpointError, match=rf"'model/{re.escape(key)}' changed"):
        load_checkpoint(path)
    checkpoint["model_args"]["num_classes"] = 9  # a plain value is covered as well
    checkpoint["model"][key].view(torch.int32).view(-1)[0] ^= 1
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="'model_args' changed"):
        load_checkpoint(path)
    del checkpoint["hashes"]
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="has no sha256 content hashes"):
        load_checkpoint(path)


def test_hashes_cover_every_tensor_of_the_state(tmp_path) -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    entries = content_hashes({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "rng": rng_state()})
    tensors = [k for k in entries if "/" in k]
    assert len([k for k in tensors if k.startswith("model/")]) == len(model.state_dict())
    assert len([k for k in tensors if k.startswith("optimizer/state/")]) == 4  # momenta
    assert "rng/torch" in tensors and "rng/numpy/1" in tensors


def test_version_1_checkpoints_load_unverified_with_a_warning(saved) -> None:
    path = saved[0]
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["format_version"] = 1
    del checkpoint["hashes"]
    torch.save(checkpoint, path)
    with pytest.warns(UserWarning, match="format version 1, written before content hashes"):
        assert load_checkpoint(path)["format_version"] == 1
