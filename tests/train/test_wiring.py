"""Each TrainConfig option reaches the loop: observe its effect, not the flag.

Every test here fails if the option's wire is cut (the option ignored).
"""

from __future__ import annotations

import copy
import csv
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import shiftpool.data as sdata
from shiftpool.train import Callback, TrainConfig, inputs, runlog, train
from shiftpool.train import checkpoint as ckpt
from shiftpool.train.loop import evaluate_accuracy
from shiftpool.train.runtime import Runtime

CPU = Runtime(torch.device("cpu"))


class Recorder:
    """Wraps ``build_model``: keeps the initial weights and the inputs of training forwards."""

    def __init__(self) -> None:
        self.initial: nn.Module | None = None
        self.batches: list[torch.Tensor] = []

    def __call__(self, config: TrainConfig, model_args: dict) -> nn.Module:
        model = REAL_BUILD(config, model_args)
        self.initial = copy.deepcopy(model)

        def record(module: nn.Module, args: tuple) -> None:
            if module.training:
                self.batches.append(args[0].detach().clone())

        model.register_forward_pre_hook(record)
        return model


REAL_BUILD = ckpt.build_model


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(ckpt, "build_model", rec)
    return rec


class FirstLoss(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_step_end(self, info) -> None:
        self.losses.append(float(info.loss))


def _one_step(config: TrainConfig) -> TrainConfig:
    """One optimiser step of 50 images at a constant learning rate, no weight decay."""
    return config.replace(epochs=1, train_subset=50, schedule="constant", weight_decay=0.0,
                          eval_every=0)


def _first_batch(config: TrainConfig, augment: sdata.Augment | None = None):
    train_set = inputs.subset(inputs.load_split(config, "train"), config.train_subset,
                              config.seed)
    loader = sdata.BatchLoader(train_set, config.batch_size, shuffle=True, augment=augment,
                               seed=config.seed, drop_last=True,
                               channels_last=config.channels_last, prefetch=0)
    return next(iter(loader))


def _step_size(before: nn.Module, after: nn.Module) -> float:
    names = [name for name, _ in before.named_parameters()]
    old, new = before.state_dict(), after.state_dict()
    return float(torch.cat([(new[n] - old[n]).flatten() for n in names]).norm())


def test_grad_clip_bounds_the_first_step(tiny_config, recorder, tmp_path) -> None:
    base = _one_step(tiny_config)
    free = train(base.replace(out_dir=str(tmp_path / "free")))
    free_step = _step_size(recorder.initial, free.model)
    clip = 1e-3
    clipped = train(base.replace(grad_clip=clip, out_dir=str(tmp_path / "clip")))
    # SGD with Nesterov momentum 0.9, first step: lr * 1.9 * (gradient clipped to norm `clip`)
    expected = base.lr * (1 + base.momentum) * clip
    assert _step_size(recorder.initial, clipped.model) == pytest.approx(expected, rel=1e-3)
    assert free_step > 100 * expected


def test_label_smoothing_gives_the_smoothed_cross_entropy(tiny_config, recorder, tmp_path) -> None:
    config = _one_step(tiny_config).replace(label_smoothing=0.2)
    first = FirstLoss()
    train(config, callbacks=[first])
    images, labels = _first_batch(config)
    assert torch.equal(recorder.batches[0], images)
    logits = recorder.initial.train()(images)
    smoothed = F.cross_entropy(logits, labels, label_smoothing=0.2).item()
    plain = F.cross_entropy(logits, labels).item()
    assert first.losses[0] == pytest.approx(smoothed, rel=1e-5)
    assert abs(smoothed - plain) > 1e-2


def test_augment_changes_the_batches_the_model_sees(tiny_config, recorder, tmp_path) -> None:
    config = _one_step(tiny_config)
    train(config.replace(out_dir=str(tmp_path / "plain")))
    plain = recorder.batches[0]
    assert torch.equal(plain, _first_batch(config)[0])
    augment = {"crop_padding": 3, "flip": True}
    train(config.replace(augment=augment, out_dir=str(tmp_path / "augmented")))
    augmented = recorder.batches[-1]
    assert not torch.equal(augmented, plain)
    assert torch.equal(augmented, _first_batch(config, sdata.Augment(**augment))[0])


@pytest.mark.parametrize(("eval_every", "evaluated"), [(2, [2, 3]), (1, [1, 2, 3]), (0, [])])
def test_eval_every_decides_which_epochs_have_test_accuracy(tiny_config, eval_every,
                                                           evaluated) -> None:
    result = train(tiny_config.replace(epochs=3, train_subset=100, eval_every=eval_every))
    assert [r["epoch"] for r in result.history if "test_acc" in r] == evaluated
    assert (result.test_acc is None) == (not evaluated)


def test_compile_runs_the_steps_through_torch_compile(tiny_config, monkeypatch) -> None:
    calls: list[nn.Module] = []

    class Counted(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner, self.forwards = inner, 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.forwards += 1
            return self.inner(x)

    def fake_compile(model: nn.Module, *args, **kwargs) -> nn.Module:
        calls.append(Counted(model))
        return calls[-1]

    monkeypatch.setattr(torch, "compile", fake_compile)
    result = train(tiny_config.replace(compile=True, epochs=1, train_subset=150))
    assert len(calls) == 1 and calls[0].inner is result.model
    assert calls[0].forwards == 3  # every training step went through the compiled module
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("compile=False compiled"))
    train(tiny_config.replace(epochs=1, train_subset=50, out_dir=tiny_config.out_dir + "-plain"))


class FakeWriter:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []
        self.closed = False

    def add_scalar(self, key: str, value: float, step: int) -> None:
        self.scalars.append((key, value, step))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_tensorboard_option_decides_whether_scalars_are_logged(tiny_config, monkeypatch) -> None:
    writers: list[FakeWriter] = []
    monkeypatch.setattr(runlog, "_tensorboard_writer",
                        lambda out_dir: writers.append(FakeWriter()) or writers[-1])
    result = train(tiny_config.replace(tensorboard=True, train_subset=100))
    assert len(writers) == 1 and writers[0].closed
    losses = [(step, value) for key, value, step in writers[0].scalars if key == "train_loss"]
    assert losses == [(r["epoch"], r["train_loss"]) for r in result.history]
    train(tiny_config.replace(tensorboard=False, train_subset=100,
                              out_dir=tiny_config.out_dir + "-off"))
    assert len(writers) == 1


def test_tensorboard_event_files_only_when_asked(tiny_config) -> None:
    pytest.importorskip("tensorboard")
    on = train(tiny_config.replace(tensorboard=True, epochs=1, train_subset=50))
    assert list((on.out_dir / "tensorboard").glob("events.out.tfevents.*"))
    off = train(tiny_config.replace(tensorboard=False, epochs=1, train_subset=50,
                                    out_dir=tiny_config.out_dir + "-off"))
    assert not list(off.out_dir.rglob("events.out.tfevents.*"))


def test_tensorboard_false_writes_no_event_files(tiny_config) -> None:
    result = train(tiny_config.replace(tensorboard=False, epochs=1, train_subset=50))
    assert not (result.out_dir / "tensorboard").exists()
    assert not list(result.out_dir.rglob("events.out.tfevents.*"))


def test_threads_used_are_recorded_and_restored(tiny_config) -> None:
    before = torch.get_num_threads()
    threads = 1 if before != 1 else 2
    result = train(tiny_config.replace(num_threads=threads, epochs=1, train_subset=50))
    assert torch.get_num_threads() == before
    saved = json.loads((result.out_dir / "result.json").read_text())
    assert saved["num_threads"] == result.num_threads == threads
    with open(result.out_dir / "log.csv") as handle:
        assert [int(row["num_threads"]) for row in csv.DictReader(handle)] == [threads]


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN for bf16")
def test_test_accuracy_is_the_fp32_one_even_when_training_in_bf16(tiny_config) -> None:
    result = train(tiny_config.replace(amp="bf16", epochs=1))
    test_set = inputs.load_split(result.config, "test")
    loader = inputs.eval_loader(test_set, result.config, CPU, sharded=False)
    logits = torch.cat([result.model(images) for images, _ in loader])
    labels = test_set.labels
    with torch.no_grad():
        loss = F.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).double().mean().item()
    row = result.history[-1]
    assert result.test_acc == accuracy
    assert row["test_loss"] == pytest.approx(loss, rel=1e-6)  # summed per batch, in float64
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what bf16 evaluation would report
        bf16 = F.cross_entropy(torch.cat([result.model(x) for x, _ in loader]).float(),
                               labels).item()
    assert bf16 != pytest.approx(loss, rel=1e-6)  # about 3e-5 apart


def test_evaluation_runs_the_model_in_eval_mode() -> None:
    class RefusesTraining(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training:
                raise AssertionError("evaluated in train mode")
            return torch.zeros(x.shape[0], 2)

    model = RefusesTraining().train()
    batches = [(torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 0, 0]))]
    loss, accuracy = evaluate_accuracy(model, batches, CPU)
    assert accuracy == 0.75 and loss == pytest.approx(float(torch.log(torch.tensor(2.0))))
    assert model.training  # its mode is restored
