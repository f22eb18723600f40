"""The entry point: exact invariance of an APS network, bad input, results, progress."""

from __future__ import annotations

import builtins
import json

import pytest
import torch
from torch import nn

import shiftpool
from shiftpool.metrics import METRICS, Protocol, evaluate
from shiftpool.metrics.evaluate import check_metrics
from shiftpool.metrics.shifts import draw_in_ranges
from shiftpool.metrics.stats import wilson_interval


def _circular_net(pool: str) -> nn.Sequential:
    """Circular convolutions, two shiftpool downsamplers, global average pooling."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, padding_mode="circular"),
        nn.ReLU(),
        shiftpool.create_downsample(pool, channels=16, stride=2),
        nn.Conv2d(16, 16, 3, padding=1, padding_mode="circular"),
        nn.ReLU(),
        shiftpool.create_downsample(pool, channels=16, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def _data(n: int = 200, size: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return list(zip(images.split(50), labels.split(50), strict=True))


def _require(name: str) -> None:
    if name not in shiftpool.list_downsamples():
        pytest.skip(f"downsampler {name!r} is not registered yet "
                    f"(available: {shiftpool.list_downsamples()})")


def test_aps_network_is_exactly_circularly_consistent() -> None:
    _require("aps")
    result = evaluate(_circular_net("aps"), _data(), protocol="tips", shifts=("circular",),
                      progress=False)
    assert result.consistency["circular"].value == 1.0
    assert result.fidelity["circular"].value == result.accuracy.value
    assert result.n == 200


def test_subsample_network_is_not() -> None:
    _require("subsample")
    result = evaluate(_circular_net("subsample"), _data(), protocol="tips", shifts=("circular",),
                      progress=False)
    assert result.consistency["circular"].value < 1.0


class _Tiny(nn.Module):
    def __init__(self, out_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)
        self.out_shape = out_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(self.conv(x).mean((2, 3)))
        return logits if self.out_shape is None else logits.reshape(self.out_shape)


@pytest.mark.parametrize(
    ("model", "batches", "kwargs", "error", "match"),
    [
        (_Tiny(), [], {}, ValueError, "empty"),
        (_Tiny(), [(torch.zeros(0, 3, 8, 8), torch.zeros(0, dtype=torch.long))], {}, ValueError,
         "empty"),
        (_Tiny((-1,)), None, {}, ValueError, r"logits of shape \(4, classes\).*\(40,\)"),
        (_Tiny((4, 2, 5)), None, {}, ValueError, "logits of shape"),
        (_Tiny(), [(torch.zeros(4, 3, 8, 8), torch.tensor([0, 1, 10, 2]))], {}, ValueError,
         r"labels must lie in \[0, 10\).*\[0, 10\]"),
        (_Tiny(), [(torch.zeros(4, 3, 8, 8), torch.tensor([0, -1, 1, 2]))], {}, ValueError,
         "labels must lie"),
        (_Tiny(), [(torch.zeros(4, 3, 8, 8), torch.zeros(4))], {}, TypeError, "integer"),
        (_Tiny(), [(torch.zeros(4, 3, 8, 8), torch.zeros(5, dtype=torch.long))], {}, ValueError,
         r"shape \(4,\)"),
        (_Tiny(), None, {"max_shift": 8}, ValueError, "smaller than the image"),
        (_Tiny(), None, {"metrics": ("accuracy", "robustness")}, ValueError, "unknown metric"),
        (_Tiny(), None, {"metrics": ("sensitivity",), "layer": "fc2"}, ValueError,
         "no layer named 'fc2'"),
        (_Tiny(), None, {"device": "meta"}, ValueError, "move the model"),
        (_Tiny(), [torch.zeros(4, 3, 8, 8)], {}, ValueError, "pair"),
        (_Tiny(), [(torch.zeros(3, 8, 8), torch.zeros(3, dtype=torch.long))], {}, ValueError,
         r"\(N, C, H, W\)"),
        (_Tiny(), [(torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long)),
                   (torch.zeros(2, 3, 9, 9), torch.zeros(2, dtype=torch.long))], {}, ValueError,
         "one size"),
    ],
)
def test_bad_input_raises(model, batches, kwargs, error, match) -> None:
    if batches is None:
        batches = [(torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))]
    with pytest.raises(error, match=match):
        evaluate(model, batches, progress=False, **kwargs)


def test_all_metrics_serialise_to_json(tmp_path) -> None:
    net = _Tiny()
    net.train()
    result = evaluate(net, _data(40, 8), metrics="all", protocol="tips", grid_max_shift=1,
                      progress=False)
    assert net.training  # the model's mode is restored
    assert result.metrics == METRICS
    keys = set(result.summary())
    assert {"acc", "s_cons", "s_fid", "c_cons", "c_fid", "s_worst", "c_sens"} <= keys
    assert "msb" not in keys  # no downsampling layer in this model
    path = result.save_json(tmp_path / "out" / "result.json")
    data = json.loads(path.read_text())
    assert data["summary"] == pytest.approx(result.summary())
    assert data["offset_maps"]["zero"]["dys"] == [-1, 0, 1]
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # no temporary file left
    assert data["diagonal"]["circular"]["shifts"] == [-2, -1, 0, 1, 2]  # m = 8 // 4
    # 1 reference + per mode: 2 random shifts + 4 diagonal shifts (d = 0 is the reference)
    # + 9 grid offsets, per batch
    assert result.forward_passes == 1 * (1 + 2 * (2 + 4 + 9))
    assert result.images_forwarded == 40 * 31


def test_consistency_alone_costs_two_passes_per_batch() -> None:
    result = evaluate(_Tiny(), _data(100, 8), metrics=("consistency",), protocol="aps",
                      progress=False)
    assert result.forward_passes == 2 * 2
    assert result.accuracy is None and set(result.summary()) == {"c_cons"}


@pytest.mark.parametrize(
    ("protocol", "overrides", "keys"),
    [
        ("aps", {"shifts": ("reflect",)}, {"acc", "r_cons", "r_fid"}),
        ("zhang", {"max_shift": 2}, {"acc", "crop_cons", "crop_fid"}),
        ("tips", {}, {"acc", "s_cons", "s_fid", "c_cons", "c_fid"}),
    ],
)
def test_summary_keys_per_protocol(protocol: str, overrides: dict, keys: set) -> None:
    result = evaluate(_Tiny(), _data(20, 8), protocol=protocol, progress=False, **overrides)
    assert set(result.summary()) == keys
    if protocol == "zhang":
        assert result.crop_size == (6, 6)


def test_seeded_and_reproducible() -> None:
    torch.manual_seed(1)
    net = _Tiny()
    runs = [evaluate(net, _data(100, 8), protocol="tips", seed=s, progress=False).summary()
            for s in (3, 3)]
    assert runs[0] == runs[1]


def test_model_dtype_is_used_for_images() -> None:
    net = _Tiny().double()
    result = evaluate(net, _data(20, 8), protocol="aps", progress=False)
    assert result.n == 20


def test_progress_bar_and_plain_fallback(monkeypatch, capsys) -> None:
    evaluate(_Tiny(), _data(100, 8), protocol="aps", progress=True)
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    evaluate(_Tiny(), _data(100, 8), protocol="aps", progress=True)
    assert "evaluate: 2/2 batches" in capsys.readouterr().err


class _TopLeftIsDark(nn.Module):
    """Class 0 when the top-left pixel is below -1, else class 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dark = (x[:, 0, 0, 0] < -1).float()
        return torch.stack([dark, 1 - dark], dim=1)


@pytest.mark.parametrize(("fill", "consistent"), [(0.0, True), (-5.0, False)])
def test_zero_shifts_bring_in_the_protocol_fill(fill: float, consistent: bool) -> None:
    images = torch.ones(64, 1, 6, 6)
    data = [(images, torch.ones(64, dtype=torch.long))]
    protocol = Protocol(name="fill", shifts=("zero",), max_shift=1, fill=fill)
    result = evaluate(_TopLeftIsDark(), data, ("consistency",), protocol, progress=False)
    assert (result.summary()["s_cons"] == 1.0) is consistent


class _RaisesInTrainMode(_Tiny):
    """Fails the test if evaluation runs it in train mode (dropout, BN batch statistics...)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise AssertionError("evaluated in train mode")
        return super().forward(x)


def test_runs_the_model_in_eval_mode_and_gives_it_back_in_train_mode() -> None:
    net = _RaisesInTrainMode().train()
    result = evaluate(net, _data(20, 8), metrics="all", protocol="aps", grid_max_shift=1,
                      progress=False)
    assert result.n == 20
    assert net.training and net.conv.training


def test_restores_the_mode_of_every_submodule() -> None:
    net = _RaisesInTrainMode().train()
    net.conv.eval()  # e.g. a frozen layer of a model being fine-tuned
    evaluate(net, _data(20, 8), protocol="aps", progress=False)
    assert net.training and net.fc.training and not net.conv.training


def test_restores_the_mode_when_evaluation_fails() -> None:
    net = _Tiny().train()
    batches = [(torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long)),
               (torch.zeros(2, 3, 9, 9), torch.zeros(2, dtype=torch.long))]
    with pytest.raises(ValueError, match="one size"):
        evaluate(net, batches, protocol="aps", progress=False)
    assert net.training


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_integer_images_are_refused(dtype: torch.dtype) -> None:
    name = str(dtype).removeprefix("torch.")
    images = torch.zeros(4, 3, 8, 8, dtype=dtype)
    with pytest.raises(shiftpool.InputError, match=rf"images are {name}; convert them to float "
                                                   r"and normalise them as the model was trained"):
        evaluate(_Tiny(), [(images, torch.zeros(4, dtype=torch.long))], progress=False)


def test_check_metrics_names_the_bad_ones() -> None:
    assert check_metrics("all") == METRICS
    assert check_metrics(["msb", "accuracy", "msb"]) == ("msb", "accuracy")
    for bad, named in (([], "none given"), (",", "','"), (["accuracy", 3], "3")):
        with pytest.raises(shiftpool.InputError, match=rf"unknown metric\(s\) {named}; allowed: "
                                                       r"accuracy, .* or 'all'"):
            check_metrics(bad)


def _offsets(result, mode: str) -> torch.Tensor:
    return torch.from_numpy(result.per_image.offsets[mode]).long()


def test_aps_offsets_are_drawn_exactly_from_minus_3_to_2() -> None:
    result = evaluate(_Tiny(), _data(400, 8), ("consistency",), protocol="aps", per_image=True,
                      progress=False)
    offsets = _offsets(result, "circular")  # (400, 2 views, 2 axes)
    for view in (0, 1):
        for axis in (0, 1):
            values = offsets[:, view, axis]
            assert set(values.tolist()) == {-3, -2, -1, 0, 1, 2}  # both ends reached, no 3
    # 1,600 draws uniform on six values: each count within its 99.9% Wilson interval of 1/6
    counts = torch.bincount(offsets.flatten() + 3, minlength=6)
    for count in counts.tolist():
        interval = wilson_interval(count, 1600, 0.999)
        assert interval.low <= 1 / 6 <= interval.high
    assert result.offsets == {"circular": ((-3, 2), (-3, 2))}


def test_reference_mode_draws_one_offset_per_batch_and_view() -> None:
    data = _data(200, 8)  # 4 batches of 50
    result = evaluate(_Tiny(), data, ("consistency",), protocol="tips", reference=True,
                      per_image=True, progress=False)
    assert result.details["draw"].startswith("one offset per batch")
    for mode in ("zero", "circular"):
        per_batch = _offsets(result, mode).view(4, 50, 2, 2)
        assert torch.equal(per_batch, per_batch[:, :1].expand(4, 50, 2, 2))  # one per batch
        assert per_batch.abs().max() <= 2
    # draws follow one seeded generator: per batch, per mode, view 1 then view 2
    g = torch.Generator().manual_seed(0)
    for batch in range(4):
        for mode in ("zero", "circular"):
            for view in (0, 1):
                drawn = draw_in_ranges(1, ((-2, 2), (-2, 2)), g)[0]
                assert torch.equal(_offsets(result, mode)[batch * 50, view], drawn)
    per_image = evaluate(_Tiny(), data, ("consistency",), protocol="tips", per_image=True,
                         progress=False)
    assert len({tuple(o) for o in _offsets(per_image, "zero")[:, 0].tolist()}) > 4


def test_black_fill_needs_and_uses_the_data_statistics() -> None:
    images = torch.ones(64, 1, 6, 6)
    data = [(images, torch.ones(64, dtype=torch.long))]
    protocol = Protocol(name="fill", shifts=("zero",), max_shift=1, fill="black")
    with pytest.raises(shiftpool.InputError, match="fill='black' needs the data's mean and std"):
        evaluate(_TopLeftIsDark(), data, ("consistency",), protocol, progress=False)
    # black = -mean / std = -0.5 / 0.2 = -2.5 < -1: a dark pixel moves in at the top left
    result = evaluate(_TopLeftIsDark(), data, ("consistency",), protocol, progress=False,
                      normalization=([0.5], [0.2]))
    assert result.fill == (-2.5,)
    assert result.summary()["s_cons"] < 1.0
    mean = evaluate(_TopLeftIsDark(), data, ("consistency",), protocol, progress=False,
                    fill="mean")
    assert mean.fill == 0.0 and mean.summary()["s_cons"] == 1.0


def test_metrics_default_to_the_protocols() -> None:
    result = evaluate(_Tiny(), _data(20, 8), protocol="aps", progress=False)
    assert result.metrics == ("accuracy", "consistency", "fidelity", "diagonal")
    narrow = evaluate(_Tiny(), _data(20, 8), protocol="aps", metrics=("accuracy",),
                      progress=False)
    assert narrow.metrics == ("accuracy",) and narrow.diagonal == {}
    custom = Protocol("mine", ("circular",), max_shift=1, metrics=("consistency",))
    assert evaluate(_Tiny(), _data(20, 8), protocol=custom, progress=False).metrics == (
        "consistency",)
