"""The training loop on real data: learning, exact resume after a kill or Ctrl-C, files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import shiftpool.downsample as sds
from shiftpool.train import (
    Callback,
    CheckpointError,
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    load_checkpoint,
    train,
)
from shiftpool.train.checkpoint import LAST, save_checkpoint


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


class StopAt(Callback):
    """Raise KeyboardInterrupt (as Ctrl-C would) after step ``step`` of epoch ``epoch``."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_step_end(self, info) -> None:
        if (info.epoch, info.step_in_epoch) == (self.epoch, self.step):
            raise KeyboardInterrupt


class CountSteps(Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, info) -> None:
        self.steps += 1


@pytest.mark.slow
def test_small_cnn_learns_real_mnist(mnist_root, tmp_path) -> None:
    config = TrainConfig(model="simple_cnn", model_options={"channels": [8, 16, 32]},
                         dataset="mnist", data_dir=str(mnist_root), download=False,
                         train_subset=9600, epochs=1, batch_size=32, lr=0.05, amp="off",
                         num_threads=1, progress=False, tensorboard=False,
                         eval_batch_size=1000, out_dir=str(tmp_path / "mnist"))
    counter = CountSteps()
    result = train(config, callbacks=[counter])
    assert counter.steps == 300
    # 10,000 held-out digits; chance is 10%.
    assert result.test_acc > 0.9, result.history


def test_run_writes_its_files_and_a_finished_run_returns_at_once(tiny_config) -> None:
    result = train(tiny_config.replace(epochs=1))
    out = result.out_dir
    assert {p.name for p in out.iterdir()} >= {"config.yaml", LAST, "log.csv", "result.json"}
    log = (out / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,train_loss,train_acc") and len(log) == 2
    saved = json.loads((out / "result.json").read_text())
    assert saved["test_acc"] == result.test_acc and saved["params"] == result.params
    assert load_checkpoint(out / LAST)["finished"] is True
    counter = CountSteps()
    again = train(tiny_config.replace(epochs=1), callbacks=[counter])
    assert counter.steps == 0 and again.history == result.history
    assert_same_weights(again.model.state_dict(), result.model.state_dict())


@pytest.mark.parametrize("downsample", ["max", "s3pool"])
def test_ctrl_c_mid_epoch_then_resume_is_bitwise_identical(tiny_config, tmp_path,
                                                           downsample) -> None:
    base = tiny_config.replace(downsample=downsample)
    expected = train(base).model.state_dict()
    interrupted = base.replace(out_dir=str(tmp_path / "interrupted"))
    with pytest.raises(TrainingInterrupted) as info:
        train(interrupted, callbacks=[StopAt(epoch=0, step=5)])
    checkpoint = load_checkpoint(info.value.checkpoint)
    assert (checkpoint["epoch"], checkpoint["step_in_epoch"]) == (0, 5)
    assert not checkpoint["finished"]
    assert_same_weights(train(interrupted).model.state_dict(), expected)


KILL_AFTER_FIRST_EPOCH = textwrap.dedent("""
    import os, signal, sys
    from shiftpool.train import Callback, TrainConfig, train

    class Kill(Callback):
        def on_epoch_end(self, info, row):
            os.kill(os.getpid(), signal.SIGKILL)

    train(TrainConfig.from_yaml(sys.argv[1]), callbacks=[Kill()])
""")


def test_resume_after_kill_in_a_new_process_is_bitwise_identical(tiny_config, tmp_path) -> None:
    config = tiny_config.replace(downsample="s3pool")
    expected = train(config).model.state_dict()
    killed = config.replace(out_dir=str(tmp_path / "killed"))
    path = tmp_path / "killed.yaml"
    killed.to_yaml(path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_EPOCH, str(path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert load_checkpoint(tmp_path / "killed" / LAST)["epoch"] == 1
    assert_same_weights(train(killed).model.state_dict(), expected)


def test_resume_with_other_settings_is_refused(tiny_config) -> None:
    with pytest.raises(TrainingInterrupted):
        train(tiny_config, callbacks=[StopAt(epoch=0, step=2)])
    with pytest.raises(CheckpointError, match=r"other settings \(lr: checkpoint 0.05, now 0.1\)"):
        train(tiny_config.replace(lr=0.1))
    assert train(tiny_config.replace(lr=0.1), resume=False).history[-1]["epoch"] == 2


def test_tips_objective_and_lps_temperature_are_wired(tiny_config, tmp_path, monkeypatch) -> None:
    calls = []
    real = sds.TipsObjective

    class Recording(real):
        def __call__(self, ce_loss, model, epoch):
            calls.append(epoch)
            return super().__call__(ce_loss, model, epoch)

    monkeypatch.setattr(sds, "TipsObjective", Recording)
    tips = train(tiny_config.replace(downsample="tips", out_dir=str(tmp_path / "tips")))
    assert calls == [0] * 12 + [1] * 12  # 600 images / 50 per batch, two epochs
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in tips.history)

    weights = []

    class Weights(real):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            weights.append(self.fm_weight)

    monkeypatch.setattr(sds, "TipsObjective", Weights)
    train(tiny_config.replace(downsample="tips", tips_fm_weight=0.0, epochs=1,
                              out_dir=str(tmp_path / "tips-no-fm")))
    assert weights == [0.0]

    lps = train(tiny_config.replace(downsample="lps", lps_tau_start=1.0, lps_tau_end=0.25,
                                    out_dir=str(tmp_path / "lps")))
    assert [r["lps_tau"] for r in lps.history] == [1.0, 0.25]
    temperatures = {float(m.temperature) for m in lps.model.modules() if hasattr(m, "temperature")}
    assert temperatures == {0.25}


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN for bf16")
def test_bf16_and_channels_last_run(tiny_config) -> None:
    result = train(tiny_config.replace(epochs=1, amp="bf16", channels_last=True, train_subset=200))
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss"]))
    conv = next(p for p in result.model.parameters() if p.ndim == 4)
    assert conv.dtype == torch.float32
    assert conv.is_contiguous(memory_format=torch.channels_last)


class PoisonAt(Callback):
    """Set one weight to NaN after step ``step`` (1-based) of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_step_end(self, info) -> None:
        if (info.epoch, info.step_in_epoch) == (self.epoch, self.step):
            with torch.no_grad():
                next(info.model.parameters()).view(-1)[0] = float("nan")


class StopAfterEpoch(Callback):
    """Raise KeyboardInterrupt once epoch ``epoch`` (0-based) is done: an end-of-epoch save."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, info, row) -> None:
        if info.epoch == self.epoch:
            raise KeyboardInterrupt


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_config) -> None:
    with pytest.raises(TrainingInterrupted) as stopped:
        train(tiny_config, callbacks=[StopAfterEpoch(0)])
    path = stopped.value.checkpoint
    good = path.read_bytes()
    with pytest.raises(TrainingDiverged, match=r"training diverged: the loss is nan at epoch "
                       r"2/2, step 4/12; the last good checkpoint '.*last.pt' is kept") as info:
        train(tiny_config, callbacks=[PoisonAt(epoch=1, step=3)])
    assert isinstance(info.value, RuntimeError)
    assert (info.value.epoch, info.value.step, info.value.checkpoint) == (2, 4, path)
    assert path.read_bytes() == good  # untouched
    checkpoint = load_checkpoint(path)
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())


def test_nan_weights_at_the_end_of_an_epoch_are_never_saved(tiny_config) -> None:
    with pytest.raises(TrainingDiverged, match=r"model .* is not finite at the end of epoch "
                       r"1/2; no checkpoint was written yet") as info:
        train(tiny_config, callbacks=[PoisonAt(epoch=0, step=12)])  # after the last step
    assert info.value.checkpoint is None and (info.value.epoch, info.value.step) == (1, 0)
    assert not (Path(tiny_config.out_dir) / LAST).exists()


def test_a_real_divergence_is_caught(tiny_config) -> None:
    with pytest.raises(TrainingDiverged, match=r"the loss is (nan|inf) at epoch 1/2, step \d+/12"):
        train(tiny_config.replace(lr=1e4, schedule="constant"))


def test_resume_refuses_a_checkpoint_with_a_flipped_bit(tiny_config) -> None:
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_config, callbacks=[StopAt(epoch=1, step=2)])
    path = info.value.checkpoint
    name, value = next((k, v) for k, v in load_checkpoint(path)["model"].items() if v.ndim == 4)
    raw = bytearray(path.read_bytes())
    start = raw.find(value.contiguous().view(torch.uint8).numpy().tobytes())
    raw[start + 5] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=rf"last.pt' is corrupt: 'model/{name}' changed"):
        train(tiny_config)


def _resave(path: Path, **changes) -> None:
    """Rewrite a checkpoint with ``changes`` (and new hashes), as another run would have."""
    checkpoint = torch.load(path, weights_only=True)
    checkpoint.update(changes)
    save_checkpoint(path, checkpoint)


def test_mid_epoch_checkpoint_of_another_world_size_is_refused(tiny_config) -> None:
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_config, callbacks=[StopAt(epoch=0, step=3)])
    checkpoint = torch.load(info.value.checkpoint, weights_only=True)
    _resave(info.value.checkpoint, world_size=2, rng=checkpoint["rng"] * 2)
    with pytest.raises(CheckpointError, match=r"cannot resume '.*last.pt' with 1 process\(es\): "
                       r"it was saved mid-epoch \(epoch 1, after step 3\) by 2 process\(es\)"):
        train(tiny_config)


def test_end_of_epoch_checkpoint_of_another_world_size_continues(tiny_config, tmp_path) -> None:
    config = tiny_config.replace(epochs=3)
    expected = train(config.replace(out_dir=str(tmp_path / "expected")))
    with pytest.raises(TrainingInterrupted) as info:
        train(config, callbacks=[StopAfterEpoch(0)])
    checkpoint = torch.load(info.value.checkpoint, weights_only=True)
    # as 2 processes leave it after epoch 1: 6 steps per epoch, an 18-step schedule
    scheduler = checkpoint["scheduler"]
    scheduler["last_epoch"], scheduler["_step_count"] = 6, 7
    scheduler["lr_lambdas"][0].update(total_steps=18, rise_steps=4)
    _resave(info.value.checkpoint, world_size=2, global_step=6, scheduler=scheduler,
            rng=checkpoint["rng"] * 2, rng_epoch_start=checkpoint["rng_epoch_start"] * 2)
    result = train(config)
    # epochs 2 and 3 followed this run's 36-step schedule (the 18-step one ends at step 18)
    assert [r["lr"] for r in result.history[1:]] == [r["lr"] for r in expected.history[1:]]
    assert result.history[1]["lr"] > 100 * result.history[2]["lr"] > 0
