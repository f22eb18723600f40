"""Per-image outcomes: they add up to the estimates, and the same seed pairs every method."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import shiftpool
from shiftpool.metrics import evaluate
from shiftpool.metrics.result import PerImage
from shiftpool.metrics.shifts import BLOCK, OffsetStream


class PixelReader(nn.Module):
    """Class 0 if pixel (0, 0) of channel 0 is above 0.5, else class 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, 0, 0, 0]
        return torch.stack([v - 0.5, 0.5 - v], dim=1)


def _data(n: int, batch: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 1, 6, 6, generator=g) > 0.5).float()
    labels = torch.randint(0, 2, (n,), generator=g)
    return list(zip(images.split(batch), labels.split(batch), strict=True))


def _linear(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 2))


def test_outcomes_are_the_hand_count_and_add_up_to_the_estimates() -> None:
    data = _data(300, 64)
    result = evaluate(PixelReader(), data, protocol="tips", max_shift=2, per_image=True,
                      progress=False)
    outcomes = result.per_image
    images = torch.cat([x for x, _ in data])[:, 0]
    labels = torch.cat([y for _, y in data])
    assert np.array_equal(outcomes.labels, labels.numpy()) and outcomes.n == 300
    predicted = (images[:, 0, 0] <= 0.5).long()  # class 1 unless the pixel is on
    assert np.array_equal(outcomes.correct, (predicted == labels).numpy())
    for mode in ("zero", "circular"):
        offsets = torch.from_numpy(outcomes.offsets[mode]).long()
        assert offsets.shape == (300, 2, 2) and offsets.abs().max() <= 2
        # what the reader sees after T_δ: the pixel at (-dy, -dx), wrapped or filled with 0
        rows, cols = -offsets[..., 0], -offsets[..., 1]
        pixel = images[torch.arange(300)[:, None], rows % 6, cols % 6]
        if mode == "zero":
            pixel = torch.where((rows >= 0) & (cols >= 0), pixel, torch.zeros(()))
        shifted = (pixel <= 0.5).long()  # (N, 2) predictions of the two views
        consistent = shifted[:, 0] == shifted[:, 1]
        faithful = consistent & (shifted[:, 0] == predicted) & (predicted == labels)
        assert np.array_equal(outcomes.consistent[mode], consistent.numpy())
        assert np.array_equal(outcomes.faithful[mode], faithful.numpy())
        assert result.consistency[mode].value == consistent.sum().item() / 300
        assert result.fidelity[mode].value == faithful.sum().item() / 300
    assert result.accuracy.value == outcomes.correct.sum() / 300


def test_same_seed_same_offsets_for_every_model_and_batch_size() -> None:
    runs = [
        evaluate(_linear(0), _data(200, 50), protocol="tips", seed=5, per_image=True,
                 progress=False).per_image,
        evaluate(_linear(1), _data(200, 7), protocol="tips", seed=5, per_image=True,
                 progress=False).per_image,
        evaluate(PixelReader(), _data(200, 200), protocol="tips", seed=5, per_image=True,
                 progress=False).per_image,
    ]
    for other in runs[1:]:
        runs[0].check_paired(other)
        for mode in ("zero", "circular"):
            assert np.array_equal(runs[0].offsets[mode], other.offsets[mode])
    other_seed = evaluate(_linear(0), _data(200, 50), protocol="tips", seed=6, per_image=True,
                          progress=False).per_image
    with pytest.raises(shiftpool.InputError, match="'circular' offsets differ"):
        runs[0].check_paired(other_seed)
    with pytest.raises(shiftpool.InputError, match="labels differ"):
        runs[0].check_paired(evaluate(_linear(0), _data(100, 50), protocol="tips", seed=5,
                                      per_image=True, progress=False).per_image)


def test_offset_stream_is_the_same_across_block_boundaries() -> None:
    ranges = ((-3, 2), (0, 4))
    whole = OffsetStream(1, "pair/zero", ranges).at(BLOCK - 5, 12)
    stream = OffsetStream(1, "pair/zero", ranges)
    stream.take(BLOCK - 5)
    pieces = torch.cat([stream.take(3), stream.take(9)])
    assert torch.equal(whole, pieces)
    assert whole.shape == (12, 2, 2)
    # different names give different offsets
    assert not torch.equal(whole, OffsetStream(1, "pair/circular", ranges).at(BLOCK - 5, 12))


def test_save_and_load_round_trip(tmp_path) -> None:
    result = evaluate(_linear(0), _data(2000, 500), protocol="tips", per_image=True,
                      metrics=("accuracy", "consistency", "fidelity"), progress=False)
    path = result.save_per_image(tmp_path / "per_image.npz")
    back = PerImage.load(path)
    assert back.to_dict() == result.per_image.to_dict()
    assert back.offsets["zero"].dtype == np.int8 and back.consistent["zero"].dtype == bool
    assert result.to_dict(per_image=True)["per_image"]["labels"] == back.labels.tolist()
    assert "per_image" not in result.to_dict()
    # compact: two modes, each with two offsets in [-8, 8]² (16 bits of entropy) and two
    # outcomes per image, in under 6 bytes per image
    assert path.stat().st_size < 2000 * 6


def test_without_per_image_there_is_nothing_to_save(tmp_path) -> None:
    result = evaluate(_linear(0), _data(20, 20), protocol="aps", progress=False)
    assert result.per_image is None
    with pytest.raises(shiftpool.InputError, match="evaluate with per_image=True"):
        result.save_per_image(tmp_path / "x.npz")


def test_only_what_was_measured_is_kept() -> None:
    result = evaluate(_linear(0), _data(20, 20), metrics=("consistency",), protocol="aps",
                      per_image=True, progress=False)
    outcomes = result.per_image
    assert outcomes.correct is None and outcomes.faithful == {}
    assert set(outcomes.consistent) == {"circular"}
    assert outcomes.consistent["circular"].shape == (20,)
