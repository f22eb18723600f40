"""One way to merge settings for every subcommand: defaults < --config file < flags.

Each test replaces the command's work (training, comparing, evaluating, exporting, measuring)
by a recorder and checks the values it was called with.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import shiftpool.harness.comparison as hcompare
import shiftpool.harness.evaluation as hevaluation
import shiftpool.harness.export as hexport
import shiftpool.harness.homogeneity as hhomogeneity
import shiftpool.train as strain

METRICS_DEFAULT = ("accuracy", "consistency", "fidelity", "diagonal")


class Recorder:
    """Stands in for a function: records its arguments and the torch threads when called."""

    def __init__(self, result: Any = None) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.threads: list[int] = []
        self.result = result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        self.threads.append(torch.get_num_threads())
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result

    @property
    def args(self) -> tuple[Any, ...]:
        return self.calls[-1][0]

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.calls[-1][1]


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def yaml_file(no_work: Path):
    def write(text: str) -> str:
        path = no_work / "settings.yaml"
        path.write_text(text)
        return str(path)

    return write


class FakeEvaluation:
    """Enough of an EvaluationResult for the command to print and save."""

    n = 3

    protocol = SimpleNamespace(name="aps")

    def summary(self) -> dict[str, float]:
        return {"acc": 0.5}

    def to_dict(self) -> dict[str, object]:
        return {"n": 3, "summary": {"acc": 0.5}}


def test_train_defaults_then_file_then_flags(monkeypatch, yaml_file, run) -> None:
    recorder = Recorder(SimpleNamespace(checkpoint=None))
    monkeypatch.setattr(strain, "train", recorder)
    config = yaml_file("model: simple_cnn\nepochs: 5\nbatch-size: 32\nlr: 0.2\n"
                       "model_options: {channels: [16, 32, 64]}\n")
    status, _, err = run("train", "--config", config, "--epochs", "2", "--dataset", "mnist5k",
                         "--num-threads", "1")
    assert status == 0, err
    chosen = recorder.args[0]
    assert (chosen.model, chosen.epochs, chosen.batch_size, chosen.lr) == ("simple_cnn", 2, 32, 0.2)
    assert chosen.model_options == {"channels": [16, 32, 64]}
    assert chosen.weight_decay == strain.TrainConfig().weight_decay  # the default
    assert chosen.num_threads == 1 and recorder.kwargs == {"resume": True}


@pytest.mark.parametrize("spelling", ["channels=[16,32,64]", '{"channels": [16, 32, 64]}'])
def test_model_options_take_a_list(spelling, monkeypatch, no_work, run) -> None:
    recorder = Recorder(hcompare.Comparison([]))
    monkeypatch.setattr(hcompare, "compare", recorder)
    status, _, err = run("compare", "--downsample", "max,blur", "--model", "simple_cnn",
                         "--dataset", "mnist5k", "--model-options", spelling)
    assert status == 0, err
    assert recorder.args[0].model_options == {"channels": [16, 32, 64]}


def test_a_channel_list_as_text_is_refused_by_the_model(run, no_work) -> None:
    status, _, err = run("train", "--model", "simple_cnn", "--dataset", "mnist5k",
                         "--model-options", "channels='16 32 64'")
    assert status == 2 and "channels" in err and "16 32 64" in err


def test_compare_defaults_then_file_then_flags(monkeypatch, yaml_file, run) -> None:
    recorder = Recorder(hcompare.Comparison([]))
    monkeypatch.setattr(hcompare, "compare", recorder)
    config = yaml_file("downsample: [max, tips]\nepochs: 3\nmodel: simple_cnn\n"
                       "dataset: mnist5k\nmethod_options: {max: {kernel_size: 3}}\n"
                       "figures: false\n")
    status, _, err = run("compare", "--config", config, "--seed", "4", "--no-progress")
    assert status == 0, err
    shared, methods = recorder.args[0], recorder.args[1]
    assert methods == ["max", "tips"] and (shared.epochs, shared.seed) == (3, 4)
    assert recorder.args[2] == "runs/compare" == shared.out_dir  # compare's own default
    assert recorder.kwargs["method_options"] == {"max": {"kernel_size": 3}}
    assert recorder.kwargs["figures"] is False and recorder.kwargs["fresh"] is False
    status, _, err = run("compare", "--config", config, "--methods", "blur", "--figures",
                         "--method-options", "{}", "--fresh", "--out-dir", "elsewhere")
    assert status == 0, err
    assert recorder.args[1] == ["blur"] and recorder.args[2] == "elsewhere"
    assert recorder.kwargs["figures"] is True and recorder.kwargs["method_options"] == {}
    assert recorder.kwargs["fresh"] is True


def test_compare_seed_and_seeds_a_flag_overrides_the_file(monkeypatch, yaml_file, run) -> None:
    recorder = Recorder(hcompare.Comparison([]))
    monkeypatch.setattr(hcompare, "compare", recorder)
    base = "downsample: [max]\nmodel: simple_cnn\ndataset: mnist5k\nfigures: false\n"
    status, _, err = run("compare", "--config", yaml_file(base + "seed: 0\n"), "--seeds", "3,4",
                         "--no-progress")
    assert status == 0, err
    assert recorder.kwargs["seeds"] == [3, 4]
    status, _, err = run("compare", "--config", yaml_file(base + "seeds: [3, 4]\n"), "--seed",
                         "5", "--no-progress")
    assert status == 0, err
    assert recorder.kwargs.get("seeds") is None and recorder.args[0].seed == 5
    status, _, err = run("compare", "--config", yaml_file(base + "seed: 1\nseeds: [3, 4]\n"),
                         "--no-progress")
    assert status == 2 and "give either --seed" in err


def test_compare_evaluates_with_the_threads_asked_for(monkeypatch, no_work, run) -> None:
    recorder = Recorder(hcompare.Comparison([]))
    monkeypatch.setattr(hcompare, "compare", recorder)
    status, _, err = run("compare", "--downsample", "max", "--model", "simple_cnn",
                         "--dataset", "mnist5k", "--num-threads", "2")
    assert status == 0, err
    assert recorder.args[0].num_threads == 2 and recorder.threads == [2]


def test_compare_says_which_method_runs_even_without_progress(monkeypatch, no_work, run) -> None:
    def fake_compare(config, methods, out_dir, *, log, **kwargs):
        log(f"[{methods[0]}] training")
        return hcompare.Comparison([])

    monkeypatch.setattr(hcompare, "compare", fake_compare)
    status, _, err = run("compare", "--downsample", "max", "--model", "simple_cnn",
                         "--dataset", "mnist5k", "--no-progress")
    assert status == 0 and err == "[max] training\n"


def test_evaluate_defaults_then_file_then_flags(monkeypatch, checkpoint, yaml_file, run) -> None:
    recorder = Recorder(FakeEvaluation())
    monkeypatch.setattr(hevaluation, "evaluate_model", recorder)
    status, _, err = run("evaluate", str(checkpoint), "--output", "a.json")
    assert status == 0, err
    assert recorder.kwargs["metrics"] == METRICS_DEFAULT  # the documented default
    assert recorder.kwargs["protocol"] == "tips"  # the run's
    assert recorder.kwargs["max_images"] is None  # every test image
    assert recorder.args[1].eval_max_images is None
    config = yaml_file("metrics: [accuracy]\nprotocol: aps\nmax_images: 9\nbatch_size: 4\n"
                       "max_shift: 2\nseed: 5\nnum_threads: 2\n")
    status, _, err = run("evaluate", str(checkpoint), "--config", config, "--max-images", "7",
                         "--metrics", "all", "--output", "b.json")
    assert status == 0, err
    run_config = recorder.args[1]
    assert recorder.kwargs["metrics"] == "all" and recorder.kwargs["protocol"] == "aps"
    assert recorder.kwargs["max_images"] == 7 and recorder.kwargs["max_shift"] == 2
    assert (run_config.eval_batch_size, run_config.seed) == (4, 5)
    assert recorder.threads[-1] == 2  # applied before the work (this session runs 1)


def test_evaluate_help_gives_the_default_metrics(run, capsys) -> None:
    with pytest.raises(SystemExit):
        run("evaluate", "--help")
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default: accuracy,consistency,fidelity,diagonal)" in help_text


def test_homogeneity_defaults_then_file_then_flags(monkeypatch, yaml_file, run) -> None:
    recorder = Recorder([])
    monkeypatch.setattr(hhomogeneity, "homogeneity_rows", recorder)
    status, _, err = run("homogeneity")
    assert status == 0, err
    assert recorder.args[0] == ["mnist", "fashionmnist", "cifar10"]
    assert recorder.kwargs == {"split": "test", "window": 2, "eps": 0.05, "max_images": None,
                               "data_dir": None, "download": True}
    config = yaml_file("dataset: [mnist5k]\nwindow: 3\neps: 0.1\nmax_images: 50\n"
                       "download: false\nnum_threads: 2\n")
    status, _, err = run("homogeneity", "--config", config, "--eps", "0.2", "--split", "train")
    assert status == 0, err
    assert recorder.args[0] == ["mnist5k"]
    assert recorder.kwargs == {"split": "train", "window": 3, "eps": 0.2, "max_images": 50,
                               "data_dir": None, "download": False}
    assert recorder.threads[-1] == 2  # applied before the work (this session runs 1)


def test_export_defaults_then_file_then_flags(monkeypatch, checkpoint, yaml_file, run) -> None:
    recorder = Recorder(hexport.ExportResult(Path("m.onnx"), "onnx", "dynamo", None))
    monkeypatch.setattr(hexport, "export_model", recorder)
    status, _, err = run("export", str(checkpoint), "--format", "onnx")
    assert status == 0, err
    _, example, output, fmt = recorder.args
    assert example.shape == (2, 1, 28, 28) and fmt == "onnx"
    assert output == checkpoint.with_name("model.onnx")
    assert recorder.kwargs == {"opset": None, "verify": True}
    config = yaml_file("format: onnx\nopset: 17\nbatch_size: 3\nverify: false\n"
                       "num_threads: 2\n")
    status, _, err = run("export", str(checkpoint), "--config", config, "--batch-size", "5",
                         "--output", "x.onnx")
    assert status == 0, err
    assert recorder.args[1].shape[0] == 5 and recorder.args[2] == Path("x.onnx")
    assert recorder.kwargs == {"opset": 17, "verify": False}
    assert recorder.threads[-1] == 2  # applied before the work (this session runs 1)


@pytest.mark.parametrize(("command", "valid"), [
    ("train", "epochs"), ("compare", "methods"), ("evaluate", "max_images"),
    ("homogeneity", "window"), ("export", "opset"),
])
def test_unknown_keys_are_refused_listing_the_valid_ones(command, valid, yaml_file, checkpoint,
                                                         run) -> None:
    config = yaml_file("epochz: 3\n")
    argv = [command, str(checkpoint)] if command in ("evaluate", "export") else [command]
    status, _, err = run(*argv, "--config", config)
    assert status == 2 and "epochz" in err and "valid" in err and valid in err, err


def test_duplicate_keys_name_the_key_and_line(yaml_file, run) -> None:
    config = yaml_file("model: simple_cnn\nepochs: 2\nlr: 0.1\nepochs: 5\n")
    status, _, err = run("train", "--config", config)
    assert status == 2 and "'epochs'" in err and "line 4" in err, err


def test_an_unsafe_yaml_tag_never_runs(yaml_file, no_work, run) -> None:
    planted = no_work / "planted"
    config = yaml_file(f"model: !!python/object/apply:os.system ['touch {planted}']\n")
    status, _, err = run("train", "--config", config)
    assert status == 2 and "python/object/apply:os.system" in err
    assert not planted.exists()


def test_unrecognised_options_are_the_subcommand_s_error(run, no_work) -> None:
    status, _, err = run("homogeneity", "--epochs", "3")
    assert status == 2 and err.startswith("shiftpool homogeneity: error: unrecognized")
    status, _, err = run("train", "--max-im", "3")  # no abbreviations
    assert status == 2 and "--max-im" in err


def test_compare_help_gives_its_own_out_dir(run, capsys) -> None:
    with pytest.raises(SystemExit):
        run("compare", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: runs/compare)" in text and "runs/train" not in text
